//! `ebm bench --compare-pytorch`: ebm against a plain-PyTorch reference (scripts/pytorch_reference.py,
//! run with the project's `.venv/bin/python`) at equal settings, each side in its own process,
//! the two alternating round after round. Two cases:
//! - `jem`: the trainer's own step ([`crate::train::Trainer::step`]) of a JEM config;
//! - `sampler2d`: the configured sampler of configs/toy2d.toml (the mlp-2d energy, textbook
//!   ULA with step 0.01) for `sgld.steps` steps on `data.batch_size` points.
//!
//! Both sides run float32, time every iteration on its own (synchronising a GPU) and report the
//! median, so one iteration slowed by a shared machine moves neither side.
use super::memory::{peak_rss_mib, PeakSampler};
use super::{timed, JemStep};
use crate::config::{
    Activation, Architecture, FastMode, Head, Norm, OptimizerKind, SamplerKind, SgldVariant, TrainConfig,
};
use crate::models::{count_parameters, EnergyNet};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The reference script, relative to the repository root.
pub const SCRIPT: &str = "scripts/pytorch_reference.py";
/// The Python that `make setup` installs torch into, relative to the repository root.
pub const PYTHON: &str = ".venv/bin/python";
/// The config whose sampler the 2-D case times (its `sgld.steps` and `data.batch_size` are set
/// by the bench).
pub const SAMPLER2D_CONFIG: &str = include_str!("../../configs/toy2d.toml");

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// One training step of a JEM config.
    Jem,
    /// The sampler of the 2-D config alone.
    Sampler2d,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Jem => "jem",
            Case::Sampler2d => "sampler2d",
        }
    }

    /// `jem`, `sampler2d` or `both`.
    pub fn parse_list(s: &str) -> crate::Result<Vec<Case>> {
        Ok(match s.trim() {
            "jem" => vec![Case::Jem],
            "sampler2d" => vec![Case::Sampler2d],
            "both" => vec![Case::Jem, Case::Sampler2d],
            other => bail!("case `{other}`: expected jem, sampler2d or both"),
        })
    }

    /// The issue's target: ebm's time at most this fraction of PyTorch's.
    pub fn target(self) -> f64 {
        match self {
            Case::Jem => 0.9,
            Case::Sampler2d => 0.5,
        }
    }
}

/// One side's timed run in its own process; `ebm bench --case C --json` and the reference's
/// `--json` both print this object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideRun {
    /// "ebm" or "pytorch".
    pub side: String,
    pub case: String,
    /// Median of the per-iteration times.
    pub seconds_per_iter: f64,
    pub seconds_per_iter_mean: f64,
    pub per_iter: Vec<f64>,
    pub iters: usize,
    pub parameters: i64,
    /// Timed iterations the divergence check discarded (their time counts).
    pub diverged: usize,
    pub threads: i32,
    pub device: String,
    /// Batch (jem) or points (sampler2d).
    pub batch: i64,
    /// SGLD steps per iteration (jem) or Langevin steps per run (sampler2d).
    pub sgld_steps: usize,
    /// The convolutions' memory layout: "nchw" or "channels-last" (always "nchw" without convolutions).
    #[serde(default = "nchw")]
    pub layout: String,
    /// Peak resident set of the process (VmHWM / ru_maxrss), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Peak used device memory from NVML (device-wide, with the CUDA context), MiB.
    pub gpu_peak_mib: Option<f64>,
    pub gpu_before_mib: Option<f64>,
    /// torch.cuda.max_memory_allocated / max_memory_reserved (the reference only; tch cannot read them).
    pub cuda_max_allocated_mib: Option<f64>,
    pub cuda_max_reserved_mib: Option<f64>,
    /// torch's version (the reference only).
    pub torch: Option<String>,
}

fn nchw() -> String {
    "nchw".into()
}

/// Smallest, median and largest of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// The median (the mean of the two middle values for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn spread(v: &[f64]) -> Spread {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread { min, median: median(v), max }
}

/// The rounds of one case and their summary.
#[derive(Debug, Clone, Serialize)]
pub struct CaseComparison {
    pub case: String,
    /// The settings in words.
    pub settings: String,
    pub ebm: Vec<SideRun>,
    pub pytorch: Vec<SideRun>,
    /// ebm / PyTorch median seconds per iteration, one per round.
    pub ratios: Vec<f64>,
    pub ebm_seconds: Spread,
    pub pytorch_seconds: Spread,
    pub ratio: Spread,
    /// The largest ratio the issue accepts, and whether the median ratio is within it.
    pub target: f64,
    pub meets_target: bool,
}

impl CaseComparison {
    pub fn new(case: Case, settings: String, ebm: Vec<SideRun>, pytorch: Vec<SideRun>) -> Self {
        let secs = |runs: &[SideRun]| runs.iter().map(|r| r.seconds_per_iter).collect::<Vec<_>>();
        let ratios: Vec<f64> = ebm.iter().zip(&pytorch).map(|(e, p)| e.seconds_per_iter / p.seconds_per_iter).collect();
        let ratio = spread(&ratios);
        CaseComparison {
            case: case.name().into(),
            settings,
            ebm_seconds: spread(&secs(&ebm)),
            pytorch_seconds: spread(&secs(&pytorch)),
            ebm,
            pytorch,
            ratios,
            ratio,
            target: case.target(),
            meets_target: ratio.median <= case.target(),
        }
    }
}

/// Runs `rounds` rounds of the two sides, alternating which goes first (ebm in even rounds), so a
/// drift in the machine's load falls on both alike.
pub fn alternate(
    rounds: usize,
    mut ebm: impl FnMut() -> crate::Result<SideRun>,
    mut pytorch: impl FnMut() -> crate::Result<SideRun>,
) -> crate::Result<(Vec<SideRun>, Vec<SideRun>)> {
    let (mut e, mut p) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            e.push(ebm()?);
            p.push(pytorch()?);
        } else {
            p.push(pytorch()?);
            e.push(ebm()?);
        }
    }
    Ok((e, p))
}

/// NVML's peak-memory sampler on CUDA (None elsewhere or without NVML); cuDNN autotuning on, as
/// the reference sets it.
fn gpu_peak(device: Device) -> Option<PeakSampler> {
    super::start_gpu_peak(device).0
}

#[allow(clippy::too_many_arguments)]
fn side_run(
    case: Case,
    cfg: &TrainConfig,
    times: Vec<f64>,
    diverged: usize,
    parameters: i64,
    device: Device,
    gpu: Option<PeakSampler>,
    channels_last: bool,
) -> SideRun {
    let gpu = gpu.map(PeakSampler::finish);
    SideRun {
        side: "ebm".into(),
        case: case.name().into(),
        seconds_per_iter: median(&times),
        seconds_per_iter_mean: times.iter().sum::<f64>() / times.len().max(1) as f64,
        iters: times.len(),
        per_iter: times,
        parameters,
        diverged,
        threads: tch::get_num_threads(),
        device: crate::device::device_name(device),
        batch: cfg.data.batch_size as i64,
        sgld_steps: cfg.sampler.steps,
        layout: if channels_last { "channels-last" } else { "nchw" }.into(),
        peak_rss_mib: peak_rss_mib(),
        gpu_peak_mib: gpu.as_ref().map(|m| m.peak_mib),
        gpu_before_mib: gpu.as_ref().map(|m| m.before_mib),
        cuda_max_allocated_mib: None,
        cuda_max_reserved_mib: None,
        torch: None,
    }
}

/// Times `iters` training steps ([`crate::train::Trainer::step`]) of `cfg` in float32 after `warmup` untimed
/// ones, on random data in [-1, 1] with random labels, at the config's learning rate (as
/// [`super::train_iterations`], but each step timed on its own).
pub fn time_jem(cfg: &TrainConfig, iters: usize, warmup: usize, device: Device) -> crate::Result<SideRun> {
    let mut cfg = cfg.clone();
    cfg.train.fast = FastMode::Off;
    let gpu = gpu_peak(device);
    let mut jem = JemStep::new(&cfg, device)?;
    let (times, diverged) = timed(iters, warmup, device, || jem.step());
    let parameters = count_parameters(&jem.trainer.vs);
    let channels_last = jem.trainer.net.precision.channels_last();
    Ok(side_run(Case::Jem, &cfg, times, diverged, parameters, device, gpu, channels_last))
}

/// Times `iters` runs of the configured sampler (`sampling::from_config` of `cfg.sampler`, as the
/// trainer builds it) for `sgld.steps` steps on `data.batch_size` points from U(-1, 1), with the
/// network of `cfg.model` in evaluation mode, float32.
pub fn time_sampler(cfg: &TrainConfig, iters: usize, warmup: usize, device: Device) -> crate::Result<SideRun> {
    let gpu = gpu_peak(device);
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(device);
    let net = EnergyNet::new(&vs.root(), &cfg.model);
    let sampler = crate::sampling::from_config(&cfg.sampler, (-1.0, 1.0));
    let mut dims = vec![cfg.data.batch_size as i64];
    dims.extend(net.input_shape());
    let x0 = Tensor::rand(dims.as_slice(), (Kind::Float, device)) * 2.0 - 1.0;
    let steps = cfg.sampler.steps;
    let (times, diverged) = timed(iters, warmup, device, || {
        let _ = sampler.sample_energy(crate::sampling::Energy::Net(&net), &x0, steps);
        false
    });
    Ok(side_run(Case::Sampler2d, cfg, times, diverged, count_parameters(&vs), device, gpu, false))
}

/// The settings of a case in words.
pub fn describe(case: Case, cfg: &TrainConfig) -> String {
    let s = &cfg.sampler;
    let (label, n) = (cfg.model.label(), cfg.data.batch_size);
    match case {
        Case::Jem => format!("{label}, batch {n}, {} SGLD steps", s.steps),
        Case::Sampler2d => {
            let form = match s.variant {
                SgldVariant::Textbook => "textbook (ULA)",
                SgldVariant::Jem => "JEM-form",
                SgldVariant::Igebm => "IGEBM-form",
            };
            let m = &cfg.model;
            let products = match m.input_shape[..] {
                [d] if crate::sampling::mlp_langevin::avx512_products(d, m.hidden) => "AVX-512 kernels",
                _ => "libtorch's sgemm",
            };
            format!(
                "{label}, {n} points, {} {form} Langevin steps of size {}; on the CPU the products run on {products}",
                s.steps, s.step_size
            )
        }
    }
}

/// The reference script's arguments for `case` at the settings of `cfg` (everything else as
/// given), or why the reference cannot run that config.
pub fn reference_args(
    case: Case,
    cfg: &TrainConfig,
    iters: usize,
    warmup: usize,
    threads: i32,
    device: Device,
    channels_last: bool,
) -> crate::Result<Vec<String>> {
    let m = &cfg.model;
    let s = &cfg.sampler;
    let mut unsupported = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            unsupported.push(what.to_string());
        }
    };
    need(m.norm == Norm::None, "model.norm = \"none\"");
    need(!m.spectral_norm, "model.spectral_norm = false");
    need(s.kind == SamplerKind::Langevin, "sgld.sampler = \"langevin\"");
    need(!s.clamp, "sgld.clamp = false");
    let mut args: Vec<String> = vec!["--case".into(), case.name().into()];
    let mut arg = |k: &str, v: String| args.extend([k.to_string(), v]);
    match case {
        Case::Jem => {
            let (o, b, opt) = (&cfg.objective, &cfg.buffer, &cfg.optim);
            need(m.arch == Architecture::Wrn && m.head == Head::Classifier, "a WRN with a classifier head");
            need(
                m.activation == Activation::LeakyRelu && m.dropout == 0.0,
                "model.activation = \"leaky-relu\", no dropout",
            );
            need(m.input_shape == [3, 32, 32] && m.num_classes == 10, "3x32x32 inputs and 10 classes");
            need(o.name == "jem" && o.ce_weight == 1.0, "objective.name = \"jem\" with ce_weight = 1");
            need(o.pxy_weight == 0.0 && o.alpha == 0.0, "objective.pxy_weight = 0 and alpha = 0");
            need(s.variant == SgldVariant::Jem, "sgld.variant = \"jem\"");
            need(b.enabled && !b.per_class, "a shared replay buffer");
            need(opt.name == OptimizerKind::Adam, "optim.name = \"adam\"");
            need((opt.beta1, opt.beta2, opt.eps) == (0.9, 0.999, 1e-8), "Adam's default betas and eps");
            need(opt.weight_decay == 0.0 && opt.clip_grad_norm == 0.0, "no weight decay, no clipping");
            arg("--depth", m.depth.to_string());
            arg("--width", m.width.to_string());
            arg("--buffer-size", b.size.to_string());
            arg("--reinit", b.reinit_fraction.to_string());
            arg("--lr", opt.lr.to_string());
            arg("--px-weight", o.px_weight.to_string());
        }
        Case::Sampler2d => {
            need(m.arch == Architecture::Mlp && m.head == Head::Energy, "an MLP with an energy head");
            need(m.activation == Activation::Swish && m.input_shape == [2], "swish, 2-D inputs");
            need(s.variant != SgldVariant::Igebm, "sgld.variant = \"textbook\" or \"jem\"");
            arg("--hidden", m.hidden.to_string());
            arg("--layers", m.layers.to_string());
            arg("--variant", if s.variant == SgldVariant::Jem { "jem" } else { "textbook" }.into());
        }
    }
    arg("--batch", cfg.data.batch_size.to_string());
    arg("--sgld-steps", s.steps.to_string());
    arg("--step-size", s.step_size.to_string());
    arg("--noise", s.noise.to_string());
    arg("--iters", iters.to_string());
    arg("--warmup", warmup.to_string());
    arg("--threads", threads.to_string());
    arg("--device", crate::device::device_name(device));
    if channels_last && case == Case::Jem {
        args.push("--channels-last".into());
    }
    args.push("--json".into());
    if !unsupported.is_empty() {
        bail!("the PyTorch reference runs the {} case only with {}", case.name(), unsupported.join(", "));
    }
    Ok(args)
}

/// The Python and the script of the reference: `python` if given, else `.venv/bin/python` of the
/// repository that holds the script (found above the current folder or the executable). The
/// error names the missing path.
pub fn find_reference(python: Option<&Path>) -> crate::Result<(PathBuf, PathBuf)> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let Some(root) = roots.into_iter().find(|r| r.join(SCRIPT).is_file()) else {
        bail!("cannot find {SCRIPT} above the current folder or the ebm executable: run from the repository")
    };
    let python = python.map_or_else(|| root.join(PYTHON), Path::to_path_buf);
    if !python.exists() {
        bail!("{}: not found; `make setup` installs Python with torch into .venv/", python.display());
    }
    Ok((python, root.join(SCRIPT)))
}

/// Runs the reference once and reads its result (its stderr passes through).
pub fn run_reference(python: &Path, script: &Path, args: &[String]) -> crate::Result<SideRun> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("{}: cannot run", python.display()))?;
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed ({}): {} {} {}",
            out.status,
            python.display(),
            script.display(),
            args.join(" ")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("unreadable output of the PyTorch reference: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jem_config(sets: &[&str]) -> TrainConfig {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        TrainConfig::parse("[model]\npreset = \"wrn-28-10\"\n", &sets).unwrap()
    }

    #[test]
    fn medians_spreads_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[2.0, 5.0, 1.0]), Spread { min: 1.0, median: 2.0, max: 5.0 });
        let run = |s: f64| SideRun {
            side: "x".into(),
            case: "jem".into(),
            seconds_per_iter: s,
            seconds_per_iter_mean: s,
            per_iter: vec![s],
            iters: 1,
            parameters: 1,
            diverged: 0,
            threads: 1,
            device: "cpu".into(),
            batch: 1,
            sgld_steps: 1,
            layout: "nchw".into(),
            peak_rss_mib: None,
            gpu_peak_mib: None,
            gpu_before_mib: None,
            cuda_max_allocated_mib: None,
            cuda_max_reserved_mib: None,
            torch: None,
        };
        let c = CaseComparison::new(Case::Jem, "s".into(), vec![run(0.8), run(1.2)], vec![run(1.0), run(1.0)]);
        assert_eq!(c.ratios, vec![0.8, 1.2]);
        assert!((c.ratio.median - 1.0).abs() < 1e-12 && !c.meets_target);
        let mut order = Vec::new();
        let cell = std::cell::RefCell::new(&mut order);
        let _ = alternate(
            3,
            || {
                cell.borrow_mut().push('e');
                Ok(run(1.0))
            },
            || {
                cell.borrow_mut().push('p');
                Ok(run(1.0))
            },
        )
        .unwrap();
        assert_eq!(order.iter().collect::<String>(), "eppeep");
    }

    #[test]
    fn the_reference_gets_the_configs_settings_and_refuses_what_it_cannot_run() {
        let cfg = jem_config(&["model.depth=10", "model.width=2", "data.batch_size=16", "sgld.steps=5"]);
        let args = reference_args(Case::Jem, &cfg, 3, 1, 2, Device::Cpu, false).unwrap().join(" ");
        for want in ["--case jem", "--depth 10", "--width 2", "--batch 16", "--sgld-steps 5", "--step-size 1"] {
            assert!(args.contains(want), "{want} missing in {args}");
        }
        for want in ["--noise 0.01", "--buffer-size 10000", "--reinit 0.05", "--lr 0.0001", "--threads 2"] {
            assert!(args.contains(want), "{want} missing in {args}");
        }
        let e =
            reference_args(Case::Jem, &jem_config(&["model.norm=\"batch\""]), 1, 0, 1, Device::Cpu, false).unwrap_err();
        assert!(e.to_string().contains("model.norm"), "{e}");
        let two_d = TrainConfig::parse(SAMPLER2D_CONFIG, &["sgld.steps=1000".into()]).unwrap();
        let args = reference_args(Case::Sampler2d, &two_d, 1, 0, 1, Device::Cpu, false).unwrap().join(" ");
        for want in ["--variant textbook", "--step-size 0.01", "--hidden 128", "--layers 3", "--sgld-steps 1000"] {
            assert!(args.contains(want), "{want} missing in {args}");
        }
        assert!(reference_args(Case::Jem, &two_d, 1, 0, 1, Device::Cpu, false).is_err());
        assert_eq!(Case::parse_list("both").unwrap(), vec![Case::Jem, Case::Sampler2d]);
        assert!(Case::parse_list("wrn").is_err());
    }

    #[test]
    fn the_references_json_reads_as_a_side_run() {
        let json = r#"{"side": "pytorch", "case": "sampler2d", "seconds_per_iter": 0.5, "seconds_per_iter_mean": 0.6,
            "per_iter": [0.5, 0.7], "iters": 2, "parameters": 33537, "diverged": 0, "threads": 1, "device": "cpu",
            "batch": 1000, "sgld_steps": 1000, "torch": "2.11.0", "peak_rss_mib": 497.5, "extra": 1}"#;
        let r: SideRun = serde_json::from_str(json).unwrap();
        assert_eq!((r.iters, r.batch, r.peak_rss_mib, r.gpu_peak_mib), (2, 1000, Some(497.5), None));
    }
}
