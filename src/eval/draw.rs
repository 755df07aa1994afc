//! Samples of a trained model, as `ebm sample`, `ebm fid` and the trainer's FID log draw them:
//! chains started from the replay buffer (the persistent chains as training left them) or from
//! uniform noise U(-r, r), then K transitions of the model's configured sampler targeting
//! p(x) ∝ exp(-E(x)), or p(x|y) ∝ exp(-E(x|y)) = exp(f(x)[y]) for class-conditional draws.
//! Buffer chains are distinct rows while the buffer (or the class's block of a per-class buffer)
//! has enough of them, drawn with replacement beyond that. Draws of many chains run in chunks.
use crate::config::TrainConfig;
use crate::models::EnergyNet;
use crate::sampling::buffer::uniform;
use crate::sampling::Chains;
use anyhow::bail;
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// Where chains start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Stored chains of the replay buffer.
    Buffer,
    /// Fresh chains from U(-r, r).
    Noise,
}

impl Start {
    /// `buffer` or `noise`, as the CLI writes it.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "buffer" => Ok(Start::Buffer),
            "noise" => Ok(Start::Noise),
            _ => bail!("unknown chain start `{s}` (expected buffer or noise)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Start::Buffer => "buffer",
            Start::Noise => "noise",
        }
    }
}

/// A trained model as draws need it: the network, its config and its replay buffer.
pub struct Model<'a> {
    pub net: &'a EnergyNet,
    pub config: &'a TrainConfig,
    pub buffer: Option<&'a Tensor>,
    /// The checkpoint or run it comes from, for messages.
    pub name: String,
}

/// What to draw: `n` chains from `start` (with labels for class-conditional draws), `steps`
/// sampler transitions, fresh chains in [-range, range].
#[derive(Debug, Clone)]
pub struct Plan {
    pub start: Start,
    pub steps: usize,
    pub range: f64,
    pub labels: Option<Vec<i64>>,
    n: usize,
    /// The buffer row each chain starts from (`Start::Buffer`).
    rows: Vec<i64>,
}

/// Labels of `per_class` chains of each of `classes` classes: rows k*N..(k+1)*N are class k.
pub fn per_class_labels(classes: usize, per_class: usize) -> Vec<i64> {
    (0..classes as i64).flat_map(|c| std::iter::repeat_n(c, per_class)).collect()
}

/// `count` offsets in 0..size: distinct (a random permutation's prefix) when count <= size.
fn offsets(size: i64, count: usize) -> Vec<i64> {
    let t = if count as i64 <= size {
        Tensor::randperm(size, (Kind::Int64, Device::Cpu)).narrow(0, 0, count as i64)
    } else {
        Tensor::randint(size, [count as i64], (Kind::Int64, Device::Cpu))
    };
    Vec::try_from(&t).expect("int64 offsets")
}

impl Plan {
    /// Checks the request against the model and picks the buffer rows (from libtorch's generator).
    pub fn new(
        model: &Model,
        start: Start,
        steps: usize,
        range: f64,
        n: usize,
        labels: Option<Vec<i64>>,
    ) -> crate::Result<Self> {
        if n == 0 {
            bail!("the number of samples must be positive");
        }
        if let Some(l) = &labels {
            if !model.config.model.is_conditional() {
                bail!("{}: class-conditional samples need a classifier model", model.name);
            }
            let classes = model.config.model.num_classes as i64;
            if l.len() != n || l.iter().any(|&c| c < 0 || c >= classes) {
                bail!("{}: {} labels for {n} chains, each in 0..{classes} expected", model.name, l.len());
            }
        }
        let rows = match (start, model.buffer) {
            (Start::Noise, _) => Vec::new(),
            (Start::Buffer, None) => bail!("{}: the checkpoint has no replay buffer; use --from noise", model.name),
            (Start::Buffer, Some(buf)) => {
                let size = buf.size()[0];
                match (&labels, model.config.buffer.per_class) {
                    (Some(l), true) => {
                        // Class c's chains live in rows c*block..(c+1)*block.
                        let block = size / model.config.model.num_classes as i64;
                        let mut rows = vec![0; n];
                        for c in 0..model.config.model.num_classes as i64 {
                            let at: Vec<usize> = (0..n).filter(|&i| l[i] == c).collect();
                            for (&i, o) in at.iter().zip(offsets(block, at.len())) {
                                rows[i] = c * block + o;
                            }
                        }
                        rows
                    }
                    _ => offsets(size, n),
                }
            }
        };
        Ok(Plan { start, steps, range, labels, n, rows })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// What the samples are, for reports: "buffer (replay-buffer chains, K more steps)" or
    /// "noise (fresh chains, K steps)".
    pub fn describe(&self) -> String {
        match self.start {
            Start::Buffer => format!("buffer (replay-buffer chains, {} more steps)", self.steps),
            Start::Noise => format!("noise (fresh chains, {} steps)", self.steps),
        }
    }
}

/// Chains `which` (a range of 0..plan.len()) of the plan, run on `device`.
pub fn draw(model: &Model, plan: &Plan, which: Range<usize>, device: Device) -> Chains {
    let k = which.len() as i64;
    let x0 = match plan.start {
        Start::Buffer => {
            let buf = model.buffer.expect("checked by Plan::new");
            let rows = Tensor::from_slice(&plan.rows[which.clone()]).to_device(buf.device());
            buf.index_select(0, &rows).to_device(device)
        }
        Start::Noise => {
            let mut dims = vec![k];
            dims.extend(model.net.input_shape());
            uniform(&dims, plan.range, device)
        }
    };
    if plan.steps == 0 {
        return Chains { x: x0, acceptance: None };
    }
    let sampler = crate::sampling::from_config(&model.config.sampler, (-plan.range, plan.range));
    match &plan.labels {
        None => sampler.sample_energy(crate::sampling::Energy::Net(model.net), &x0, plan.steps),
        Some(l) => {
            let y = Tensor::from_slice(&l[which]).to_device(device);
            sampler.sample(&|x: &Tensor| model.net.conditional_energy(x, &y, false), &x0, plan.steps)
        }
    }
}

/// The half-width r of the box [-r, r] fresh chains start in and clamped samplers keep to, with
/// where it came from and, when the training data could not give it, a note saying so:
/// `init_range` when given; 1 for images; for points the training data's largest |value| + 10%
/// (at least 1), recomputed from the config's `data.spec`, else the replay buffer's largest
/// |value| (at least 1), else 1.
pub fn chain_range(model: &Model, init_range: Option<f64>) -> crate::Result<(f64, String, Option<String>)> {
    if let Some(r) = init_range {
        if !(r.is_finite() && r > 0.0) {
            bail!("--init-range must be a positive number, not {r}");
        }
        return Ok((r, "--init-range".into(), None));
    }
    if model.net.input_shape().len() == 3 {
        return Ok((1.0, "images".into(), None));
    }
    let spec = &model.config.data.spec;
    let data_err = match crate::data::load(spec, &crate::data::LoadOptions::default()) {
        Ok(ds) if ds.shape == model.config.model.input_shape => {
            return Ok((ds.chain_range(), format!("the training data {spec}"), None))
        }
        Ok(ds) => format!("its examples have shape {:?}", ds.shape),
        Err(e) => format!("{e:#}"),
    };
    let (r, from) = match model.buffer {
        Some(buf) => {
            let max = tch::no_grad(|| buf.abs().max().to_kind(Kind::Double).double_value(&[]));
            (if max.is_finite() { max.max(1.0) } else { 1.0 }, "the replay buffer's extent")
        }
        None => (1.0, "the default, the checkpoint having no replay buffer"),
    };
    let note = format!(
        "note: cannot recompute the chains' range from the training data {spec} ({data_err}); using {r:.4} from {from} (set --init-range to choose)"
    );
    Ok((r, from.into(), Some(note)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    fn config(extra: &str) -> TrainConfig {
        TrainConfig::parse(&format!("[model]\npreset = \"convnet-small\"\nwidth = 4\n{extra}"), &[]).unwrap()
    }

    #[test]
    fn buffer_rows_are_distinct_and_per_class_rows_stay_in_their_block() {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let cfg = config("[buffer]\nsize = 40\nper_class = true\n");
        let net = EnergyNet::new(&vs.root(), &cfg.model);
        // Row r holds the value r, so a chain's start tells its row.
        let buf = Tensor::arange(40, (Kind::Float, Device::Cpu)).view([40, 1, 1, 1]).repeat([1, 3, 32, 32]);
        let model = Model { net: &net, config: &cfg, buffer: Some(&buf), name: "m".into() };
        let rows = |p: &Plan| -> Vec<i64> {
            let x = draw(&model, p, 0..p.len(), Device::Cpu).x;
            Vec::<f32>::try_from(x.select(1, 0).select(1, 0).select(1, 0)).unwrap().iter().map(|&v| v as i64).collect()
        };
        let plan = Plan::new(&model, Start::Buffer, 0, 1.0, 40, None).unwrap();
        let mut r = rows(&plan);
        r.sort();
        assert_eq!(r, (0..40).collect::<Vec<_>>(), "all 40 rows once");
        // 10 classes of 4 rows: 3 chains per class, each from its own block, none twice.
        let plan = Plan::new(&model, Start::Buffer, 0, 1.0, 30, Some(per_class_labels(10, 3))).unwrap();
        let r = rows(&plan);
        for (c, block) in r.chunks(3).enumerate() {
            assert!(block.iter().all(|&v| v / 4 == c as i64), "class {c}: {block:?}");
            assert!(block[0] != block[1] && block[1] != block[2] && block[0] != block[2], "{block:?}");
        }
        assert_eq!(plan.describe(), "buffer (replay-buffer chains, 0 more steps)");
        let fresh = Plan::new(&model, Start::Noise, 3, 1.0, 5, None).unwrap();
        assert_eq!(fresh.describe(), "noise (fresh chains, 3 steps)");
        let x = draw(&model, &fresh, 0..2, Device::Cpu).x;
        assert_eq!(x.size(), [2, 3, 32, 32]);
        assert!(x.isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn impossible_draws_are_refused() {
        let vs = VarStore::new(Device::Cpu);
        let cfg = config("");
        let net = EnergyNet::new(&vs.root(), &cfg.model);
        let model = Model { net: &net, config: &cfg, buffer: None, name: "ckpt".into() };
        let e = Plan::new(&model, Start::Buffer, 0, 1.0, 4, None).unwrap_err().to_string();
        assert!(e.contains("ckpt") && e.contains("no replay buffer"), "{e}");
        let e = Plan::new(&model, Start::Noise, 0, 1.0, 2, Some(vec![0, 10])).unwrap_err().to_string();
        assert!(e.contains("0..10"), "{e}");
        let e = Plan::new(&model, Start::Noise, 0, 1.0, 0, None).unwrap_err().to_string();
        assert!(e.contains("positive"), "{e}");
    }
}
