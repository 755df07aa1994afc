use super::args::Threads;
use anyhow::{bail, Context};
use ebm::sampling::buffer::uniform;
use ebm::train::checkpoint::{self, Loaded, Weights};
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

/// The half-width of the chains' box and where it came from (see `--init-range`).
fn chain_range(a: &SampleArgs, m: &Loaded) -> anyhow::Result<(f64, String)> {
    if let Some(r) = a.init_range {
        if !(r.is_finite() && r > 0.0) {
            bail!("--init-range must be a positive number, not {r}");
        }
        return Ok((r, "--init-range".into()));
    }
    if m.net.input_shape().len() == 3 {
        return Ok((1.0, "images".into()));
    }
    let spec = &m.config.data.spec;
    let opts = ebm::data::LoadOptions { resize: m.config.data.resize, ..ebm::data::LoadOptions::default() };
    let data_err = match ebm::data::load(spec, &opts) {
        Ok(ds) if ds.shape == m.config.model.input_shape => {
            return Ok((ds.chain_range(), format!("the training data {spec}")))
        }
        Ok(ds) => format!("its examples have shape {:?}", ds.shape),
        Err(e) => format!("{e:#}"),
    };
    let (r, from) = match &m.buffer {
        Some(buf) => {
            let max = tch::no_grad(|| buf.abs().max().to_kind(Kind::Double).double_value(&[]));
            (if max.is_finite() { max.max(1.0) } else { 1.0 }, "the replay buffer's extent")
        }
        None => (1.0, "the default, the checkpoint having no replay buffer"),
    };
    eprintln!("note: cannot recompute the chains' range from the training data {spec} ({data_err}); using {r:.4} from {from} (set --init-range to choose)");
    Ok((r, from.into()))
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

/// The chains' starting points: stored chains of the checkpoint's buffer (of class `y` with a
/// per-class buffer), or U(-range, range).
fn starting_points(
    a: &SampleArgs,
    m: &Loaded,
    y: Option<&Tensor>,
    n: i64,
    range: f64,
    device: Device,
) -> anyhow::Result<Tensor> {
    Ok(match (&a.from[..], &m.buffer) {
        ("buffer", Some(buf)) => {
            let size = buf.size()[0];
            let idx = match (y, m.config.buffer.per_class) {
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
            dims.extend(m.net.input_shape());
            uniform(&dims, range, device)
        }
    })
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
    let (range, range_from) = chain_range(&a, &m)?;
    let steps = a.sgld_steps.unwrap_or(m.config.sampler.steps);
    let sampler = ebm::sampling::from_config(&m.config.sampler, (-range, range));
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
    let x0 = starting_points(&a, &m, y.as_ref(), n, range, device)?;
    let chains = match &y {
        None => sampler.sample(&|x: &Tensor| m.net.energy(x, false), &x0, steps),
        Some(y) => sampler.sample(&|x: &Tensor| m.net.conditional_energy(x, y, false), &x0, steps),
    };
    let x = chains.x;
    let accepted = chains.acceptance.map(|a| format!(", acceptance rate {:.3}", a.double_value(&[])));
    let title = format!("{n} samples: {steps} {} steps from {}", sampler.name(), a.from);
    let what = save(format, &x, y.as_ref(), is_image, &a, range, &title)?;
    let non_finite = tch::no_grad(|| x.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]));
    let e = tch::no_grad(|| m.net.energy(&x, false).mean(Kind::Float).double_value(&[]));
    println!(
        "wrote {} samples ({} {} steps from {}, chains' range [-{range:.4}, {range:.4}] from {range_from}) as {what} to {}; mean energy {e:.4}{}{}",
        n,
        steps,
        sampler.name(),
        a.from,
        a.out.display(),
        accepted.unwrap_or_default(),
        if non_finite > 0 { format!("; {non_finite} values are not finite") } else { String::new() }
    );
    Ok(())
}
