use anyhow::bail;
use ebm::sampling::buffer::uniform;
use ebm::train::checkpoint;
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of samples (unconditional).
    #[arg(long, default_value_t = 64)]
    pub n: i64,
    /// SGLD steps to run (default: the training config's sgld.steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Draw N samples of each class, one row per class (conditional: E(x|y) = -f(x)[y]).
    #[arg(long)]
    pub per_class: Option<i64>,
    /// Start the chains from the checkpoint's replay buffer or from uniform noise.
    #[arg(long, default_value = "buffer", value_parser = ["buffer", "noise"])]
    pub from: String,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    let device = ebm::device::parse_device(&a.device)?;
    tch::manual_seed(a.seed as i64);
    let m = checkpoint::load_model(&a.ckpt, device)?;
    let shape = m.net.input_shape();
    if shape.len() != 3 {
        bail!("{}: the model takes points of shape {shape:?}; sample grids need images", m.dir.display());
    }
    let steps = a.steps.unwrap_or(m.config.sampler.steps);
    let sampler = ebm::sampling::from_config(&m.config.sampler, (-1.0, 1.0));
    let (n, y) = match a.per_class {
        Some(k) => {
            if !m.config.model.is_conditional() {
                bail!("{}: --per-class needs a classifier model", m.dir.display());
            }
            let classes = m.config.model.num_classes as i64;
            let y = Tensor::arange(classes, (Kind::Int64, device)).repeat_interleave_self_int(k, 0, None);
            (classes * k, Some(y))
        }
        None => (a.n, None),
    };
    if n <= 0 {
        bail!("--n and --per-class must be positive");
    }
    let x0 = match (&a.from[..], &m.buffer) {
        ("buffer", Some(buf)) => {
            let size = buf.size()[0];
            let idx = match (&y, m.config.buffer.per_class) {
                (Some(y), true) => {
                    let block = size / m.config.model.num_classes as i64;
                    y * block + Tensor::randint(block, [n], (Kind::Int64, device))
                }
                _ => Tensor::randint(size, [n], (Kind::Int64, device)),
            };
            buf.index_select(0, &idx)
        }
        ("buffer", None) => bail!("{}: the checkpoint has no replay buffer; use --from noise", m.dir.display()),
        _ => {
            let mut dims = vec![n];
            dims.extend(&shape);
            uniform(&dims, 1.0, device)
        }
    };
    let chains = match &y {
        None => sampler.sample(&|x: &Tensor| m.net.energy(x, false), &x0, steps),
        Some(y) => sampler.sample(&|x: &Tensor| m.net.conditional_energy(x, y, false), &x0, steps),
    };
    let x = chains.x;
    let accepted = chains.acceptance.map(|a| format!(", acceptance rate {:.3}", a.double_value(&[])));
    let ncol = a.per_class.unwrap_or(0) as usize;
    ebm::eval::grid::save_grid(&x, ncol, &a.out)?;
    let e = tch::no_grad(|| m.net.energy(&x, false).mean(Kind::Float).double_value(&[]));
    println!(
        "wrote {} samples ({} {} steps from {}) to {}; mean energy {e:.4}{}",
        n,
        steps,
        sampler.name(),
        a.from,
        a.out.display(),
        accepted.unwrap_or_default()
    );
    Ok(())
}
