use super::args::Threads;
use anyhow::{bail, Context};
use ebm::eval::draw;
use ebm::train::checkpoint::{self, Weights};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    pub ckpt: PathBuf,
    /// Which weights: the moving average (`[ema]`) when the checkpoint has one (auto), or the
    /// average (ema) or the trained weights (raw) explicitly.
    #[arg(long, value_enum, default_value_t = Weights::Auto)]
    pub weights: Weights,
    /// Output file; its extension decides the format (any other is an error). `.npy`: the samples as a float32 array
    /// [N, ...shape] (images [N, C, H, W] in model space, points [N, D]), readable by
    /// `ebm data npy:FILE` and numpy. `.png`: a grid for images, a scatter plot for 2-D points.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of samples (unconditional).
    #[arg(long, default_value_t = 64)]
    pub n: i64,
    /// Sampler steps per chain (default: the training config's sgld.steps). Formerly --steps.
    #[arg(long = "sgld-steps", alias = "steps", value_name = "K")]
    pub sgld_steps: Option<usize>,
    /// Draw N samples of each class, one row per class (conditional: E(x|y) = -f(x)[y]); in a
    /// .npy, rows k*N..(k+1)*N are class k.
    #[arg(long)]
    pub per_class: Option<i64>,
    /// Start the chains from the checkpoint's replay buffer or from uniform noise U(-r, r).
    #[arg(long, default_value = "buffer", value_parser = ["buffer", "noise"])]
    pub from: String,
    /// Half-width r of the box [-r, r] that fresh chains (--from noise) start in and clamped
    /// samplers keep to. Default: the trainer's value, 1 for images; for points the training
    /// data's largest |value| + 10% (at least 1), recomputed from the checkpoint's data.spec; if
    /// that data cannot be loaded, the replay buffer's largest |value| (at least 1), else 1.
    #[arg(long, value_name = "R")]
    pub init_range: Option<f64>,
    /// Where the chains run: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub threads: Threads,
    /// Seed of libtorch's generator: starting points, chain noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --per-class: an independent classifier checkpoint (trained with cross-entropy alone
    /// on the same data) that judges the samples: the share it assigns to the class they were
    /// drawn for (conditional sample accuracy), beside its accuracy on real images (--data).
    #[arg(long, value_name = "CKPT")]
    pub judge: Option<PathBuf>,
    /// Real labelled images for --judge: the judge's accuracy on them and the sampled model's
    /// mean energy of them, against its samples'. Default: the checkpoint's data.test_spec, else
    /// its data.spec.
    #[arg(long, value_name = "SPEC")]
    pub data: Option<String>,
    #[command(flatten)]
    pub resize: super::args::Resize,
    /// Print one JSON object (what was written, and the judge's verdict) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `--out` asks for, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Npy,
}

fn out_format(out: &Path) -> anyhow::Result<Format> {
    let ext = out.extension().map(|e| e.to_string_lossy().to_lowercase());
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("npy") => Ok(Format::Npy),
        Some(e) => bail!(
            "{}: unknown output extension `.{e}`: use .png (an image grid, or a scatter plot of 2-D points) or .npy (the samples as a float32 array)",
            out.display()
        ),
        None => bail!(
            "{}: the output has no extension: use .png (an image grid, or a scatter plot of 2-D points) or .npy (the samples as a float32 array)",
            out.display()
        ),
    }
}

/// Writes `x` as a float32 `.npy` of its shape.
fn write_npy(x: &Tensor, path: &Path) -> anyhow::Result<()> {
    let x = x.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    let mut values = vec![0f32; numel];
    x.copy_data(&mut values, numel);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    ebm::data::npy::write(path, "<f4", &shape, &bytes)
}

/// Writes the samples `x` in `format` to `--out`; says what was written.
fn save(
    format: Format,
    x: &Tensor,
    y: Option<&Tensor>,
    is_image: bool,
    a: &SampleArgs,
    range: f64,
    title: &str,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Npy => {
            write_npy(x, &a.out)?;
            format!("a float32 array {:?}", x.size())
        }
        Format::Png if is_image => {
            ebm::eval::grid::save_grid(x, a.per_class.unwrap_or(0) as usize, &a.out)?;
            "a grid".to_string()
        }
        Format::Png => {
            let n = x.size()[0] as usize;
            let xs = x.to_device(Device::Cpu).to_kind(Kind::Double).contiguous();
            let mut flat = vec![0f64; 2 * n];
            xs.copy_data(&mut flat, 2 * n);
            let points: Vec<[f64; 2]> = flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
            let labels: Option<Vec<i64>> =
                y.map(|y| Vec::<i64>::try_from(y.to_device(Device::Cpu)).unwrap_or_default());
            ebm::eval::plots::scatter_plot(&points, labels.as_deref(), range, title, &a.out)?;
            "a scatter plot".to_string()
        }
    })
}

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    let format = out_format(&a.out)?;
    let device = ebm::device::parse_device(&a.device)?;
    tch::manual_seed(a.seed as i64);
    let m = checkpoint::load_model_weights(&a.ckpt, device, a.weights)?;
    let shape = m.net.input_shape();
    let is_image = shape.len() == 3;
    if format == Format::Png && !is_image && shape != [2] {
        bail!(
            "{}: the model takes points of shape {shape:?}; a PNG scatter plot needs 2-D points: use --out FILE.npy",
            m.dir.display()
        );
    }
    a.threads.apply((!is_image).then_some(1));
    let model =
        draw::Model { net: &m.net, config: &m.config, buffer: m.buffer.as_ref(), name: m.dir.display().to_string() };
    let (range, range_from, note) = draw::chain_range(&model, a.init_range)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let steps = a.sgld_steps.unwrap_or(m.config.sampler.steps);
    let labels = match a.per_class {
        Some(k) if k <= 0 => bail!("--n and --per-class must be positive"),
        Some(k) => {
            if !m.config.model.is_conditional() {
                bail!("{}: --per-class needs a classifier model", m.dir.display());
            }
            Some(draw::per_class_labels(m.config.model.num_classes, k as usize))
        }
        None => None,
    };
    if a.judge.is_some() && labels.is_none() {
        bail!("--judge needs --per-class N: the judge checks that each class's samples are of that class");
    }
    let n = labels.as_ref().map_or(a.n, |l| l.len() as i64);
    if n <= 0 {
        bail!("--n and --per-class must be positive");
    }
    let start = draw::Start::parse(&a.from)?;
    let plan = draw::Plan::new(&model, start, steps, range, n as usize, labels)?;
    let chains = draw::draw(&model, &plan, 0..plan.len(), device);
    let y = plan.labels.as_ref().map(|l| Tensor::from_slice(l).to_device(device));
    let x = chains.x;
    let accepted = chains.acceptance.map(|a| format!(", acceptance rate {:.3}", a.double_value(&[])));
    let sampler = ebm::sampling::from_config(&m.config.sampler, (-range, range));
    let title = format!("{n} samples: {steps} {} steps from {}", sampler.name(), a.from);
    let what = save(format, &x, y.as_ref(), is_image, &a, range, &title)?;
    let non_finite = tch::no_grad(|| x.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]));
    let e = tch::no_grad(|| m.net.energy(&x, false).mean(Kind::Float).double_value(&[]));
    let wrote = format!(
        "wrote {} samples ({} {} steps from {}, chains' range [-{range:.4}, {range:.4}] from {range_from}) as {what} to {}; mean energy {e:.4}{}{}",
        n,
        steps,
        sampler.name(),
        a.from,
        a.out.display(),
        accepted.unwrap_or_default(),
        if non_finite > 0 { format!("; {non_finite} values are not finite") } else { String::new() }
    );
    let verdict = match (&a.judge, &y) {
        (Some(judge), Some(y)) => Some(judge_samples(judge, &m, &x, y, &a, device)?),
        _ => None,
    };
    if a.json {
        let mut j = serde_json::json!({"out": a.out, "n": n, "steps": steps, "from": a.from, "mean_energy": e});
        if let Some((v, real)) = &verdict {
            j["judge"] = serde_json::to_value(v)?;
            j["data"] = serde_json::to_value(real)?;
        }
        println!("{j}");
        return Ok(());
    }
    println!("{wrote}");
    if let Some((v, real)) = verdict {
        println!("{}", describe_verdict(&v, &real, e));
    }
    Ok(())
}

/// What the judge's verdict is measured against: the real images and the sampled model's mean
/// energy of them.
#[derive(Debug, serde::Serialize)]
struct RealSet {
    spec: String,
    mean_energy: f64,
    classes: Vec<String>,
}

/// The `--judge` checkpoint's verdict on per-class samples `x` drawn for `y`, and the real set.
fn judge_samples(
    judge: &Path,
    m: &checkpoint::Loaded,
    x: &Tensor,
    y: &Tensor,
    a: &SampleArgs,
    device: Device,
) -> anyhow::Result<(ebm::eval::judge::Verdict, RealSet)> {
    let j = checkpoint::load_model_weights(judge, device, Weights::Auto).context("--judge")?;
    let spec = a.data.clone().or_else(|| m.config.data.test_spec.clone()).unwrap_or_else(|| m.config.data.spec.clone());
    let ds = ebm::data::load(&spec, &a.resize.options(m.config.data.resize))?;
    let verdict = ebm::eval::judge::judge(&j.net, x, y, Some(&ds), j.config.data.noise_sigma, device)
        .with_context(|| format!("--judge {}", judge.display()))?;
    let out = ebm::eval::classify::run_model(&m.net, &ds, 256, device, m.config.data.noise_sigma)?;
    Ok((verdict, RealSet { spec, mean_energy: f64::try_from(out.energy.mean(Kind::Double))?, classes: ds.classes }))
}

fn describe_verdict(v: &ebm::eval::judge::Verdict, real: &RealSet, e: f64) -> String {
    let classes = &real.classes;
    let per: Vec<String> = v
        .per_class
        .iter()
        .enumerate()
        .map(|(k, a)| format!("{} {:.0}%", classes.get(k).cloned().unwrap_or_else(|| k.to_string()), 100.0 * a))
        .collect();
    format!(
        "conditional sample accuracy {:.1}% (chance {:.0}%; the judge's accuracy on {} is {:.1}%); per class: {}\nmean energy: samples {e:.4}, real images {:.4}",
        100.0 * v.sample_accuracy,
        100.0 * v.chance,
        real.spec,
        100.0 * v.judge_test_accuracy.unwrap_or(f64::NAN),
        per.join(", "),
        real.mean_energy
    )
}
