use super::args::{Resize, Threads};
use anyhow::bail;
use ebm::config::TrainConfig;
use ebm::train::{self, RunOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// TOML config (see configs/). With --resume and no --config, the checkpoint's config is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training data spec (overrides data.spec; default synthetic:shapes).
    #[arg(long)]
    pub data: Option<String>,
    /// Test data spec, evaluated at the end (overrides data.test_spec).
    #[arg(long)]
    pub test_data: Option<String>,
    /// Output folder: config.json, metrics.jsonl, checkpoints/, samples/ (default checkpoints/run,
    /// or with --resume the run folder the checkpoint belongs to).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override any config key: --set optim.lr=3e-4 --set sgld.steps=40.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where to train: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N (overrides
    /// train.device, whose default is auto).
    #[arg(long)]
    pub device: Option<String>,
    /// Run seed: weights, batches, augmentation and chains all follow from it (overrides
    /// train.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from a checkpoint folder or a run folder (its newest checkpoint).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Reproducible run (sets train.deterministic; see the README for what CUDA still varies).
    #[arg(long)]
    pub deterministic: bool,
    /// Fast mode: bf16 conv/linear on float32 master weights, channels-last on CUDA (overrides
    /// train.fast; auto = on for CUDA, off on the CPU).
    #[arg(long, value_name = "on|off|auto")]
    pub fast: Option<String>,
    #[command(flatten)]
    pub resize: Resize,
    #[command(flatten)]
    pub threads: Threads,
    /// Print only errors and the final summary.
    #[arg(long)]
    pub quiet: bool,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Data-parallel training on N local workers (as `torchrun --standalone --nproc-per-node N`):
    /// one device each (cuda:LOCAL_RANK, or the CPU threads split), data.batch_size per worker.
    /// Rank 0's output is shown, the others' go to OUT/logs/rank-R.log; SIGINT/SIGTERM sent to
    /// this process are passed on, so every rank stops at one step with a checkpoint. Without it,
    /// `ebm train` still joins the run that torchrun's variables (RANK, WORLD_SIZE, ...) describe.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

/// `--nproc-per-node N`: N workers of this same command; SIGINT/SIGTERM sent to this process are
/// passed on to them, so they stop together at one step with a checkpoint while this one waits.
fn launch(a: &TrainArgs, n: usize) -> anyhow::Result<()> {
    let out = match (&a.out, &a.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => run_folder_of(r),
        (None, None) => PathBuf::from("checkpoints/run"),
    };
    let forward = ebm::dist::launch::forward_signals()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The workers stop by themselves within dist.timeout once one fails; then a little more.
    let timeout = match (&a.config, &a.resume) {
        (Some(path), _) => TrainConfig::load(path, &a.set)?.dist.timeout,
        _ => ebm::config::DistConfig::default().timeout,
    };
    let grace = std::time::Duration::from_secs_f64(timeout + 10.0);
    ebm::dist::launch::run(n, &ebm::dist::launch::strip_flag(&args), &out, grace, &forward)
}

/// The run folder a `--resume` path belongs to: RUN, RUN/checkpoints or RUN/checkpoints/NAME.
fn run_folder_of(resume: &std::path::Path) -> PathBuf {
    if resume.join("checkpoints").is_dir() {
        return resume.to_path_buf();
    }
    if resume.file_name().is_some_and(|n| n == "checkpoints") {
        return resume.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    }
    match resume.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => {
            p.parent().map(|q| q.to_path_buf()).unwrap_or_default()
        }
        _ => resume.to_path_buf(),
    }
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let dist = ebm::dist::Env::from_process()?;
    if let Some(n) = a.nproc_per_node {
        if dist.is_some() {
            bail!("--nproc-per-node {n}: this process is already a worker (WORLD_SIZE is set); start it either from torchrun or with --nproc-per-node, not both");
        }
        return launch(&a, n);
    }
    let mut set = a.set.clone();
    if let Some(d) = &a.data {
        set.push(format!("data.spec=\"{d}\""));
    }
    if let Some(d) = &a.test_data {
        set.push(format!("data.test_spec=\"{d}\""));
    }
    if let Some(d) = &a.device {
        set.push(format!("train.device=\"{d}\""));
    }
    if a.deterministic {
        set.push("train.deterministic=true".into());
    }
    if let Some(f) = &a.fast {
        set.push(format!("train.fast=\"{f}\""));
    }
    if let Some(s) = a.seed {
        set.push(format!("train.seed={s}"));
    }
    if let Some(n) = a.resize.resize {
        set.push(format!("data.resize={n}"));
    }
    if let Some(n) = a.threads.get() {
        set.push(format!("train.threads={n}"));
    }
    let cfg = match (&a.config, &a.resume) {
        (Some(path), _) => TrainConfig::load(path, &set)?,
        (None, Some(resume)) => {
            let dir = ebm::train::checkpoint::resolve(resume)?;
            ebm::train::checkpoint::load_config(&dir, &set)?
        }
        (None, None) => bail!("give --config FILE (see configs/) or --resume PATH"),
    };
    // SIGINT/SIGTERM: stop at the next step boundary with a checkpoint; a second one exits at once
    // (checkpoints are written under a temporary name, so nothing is corrupted).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let out = match (&a.out, &a.resume) {
        (Some(o), _) => o.clone(),
        (None, Some(r)) => run_folder_of(r),
        (None, None) => PathBuf::from("checkpoints/run"),
    };
    let opts = RunOptions { out, resume: a.resume.clone(), quiet: a.quiet, stop: Some(stop), dist };
    let summary = train::train(&cfg, &opts)?;
    if summary.interrupted {
        eprintln!(
            "interrupted at step {} (a signal, or train.max_seconds); checkpoint {}; resume with: ebm train --resume {} --out {}",
            summary.steps,
            summary.last_checkpoint.display(),
            summary.out.display(),
            summary.out.display()
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
        println!(
            "done: {} steps in {:.1} s ({:.0} img/s); train acc {}, valid acc {}, test acc {}",
            summary.steps,
            summary.seconds,
            summary.images_per_second,
            pct(summary.train_acc),
            pct(summary.valid_acc),
            pct(summary.test_acc)
        );
        if let (Some(d), Some(s)) = (summary.e_data, summary.e_samples) {
            println!("energies: E(data) {d:.4}, E(samples) {s:.4}");
        }
        println!("run folder: {} (metrics.jsonl, samples/, checkpoints/)", summary.out.display());
        println!("last checkpoint: {}", summary.last_checkpoint.display());
        if !summary.interrupted {
            println!("continue with: ebm train --resume {} --set train.epochs=N", summary.out.display());
        }
    }
    Ok(())
}
