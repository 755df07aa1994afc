use super::args::{Resize, Threads};
use anyhow::{bail, Context};
use ebm::bench::compare::{self, Case, CaseComparison, SideRun};
use ebm::bench::TrainBench;
use ebm::config::{FastMode, ModelConfig, TrainConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Time the training step of this config (default: JEM's settings on the network of --preset,
    /// or of the device when no network is given: see --preset).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config key, as `ebm train --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Network preset (wrn-28-10, wrn-28-2, wrn-16-2, convnet-small) or a TOML file. Default:
    /// the config's network; with no config and no network flag, one that finishes on the device
    /// at hand: JEM's WRN-28-10 at batch 64 on CUDA, WRN-10-2 at batch 16 on the CPU (said on
    /// stderr).
    #[arg(long)]
    pub preset: Option<String>,
    /// Override the WRN depth.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Override the WRN widen factor (or ConvNet width).
    #[arg(long)]
    pub width: Option<usize>,
    /// Training batch size (data.batch_size; default: the config's, else 64 on CUDA and 16 on the
    /// CPU).
    #[arg(long)]
    pub batch: Option<i64>,
    /// Sampler steps per chain draw (sgld.steps; default: the config's, else 20; the sampler2d
    /// case: 1000 per timed run). Formerly --sampler-steps for the sampler2d case.
    #[arg(long = "sgld-steps", alias = "sampler-steps", value_name = "K")]
    pub sgld_steps: Option<usize>,
    /// Timed iterations (after --warmup untimed ones).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed iterations before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[command(flatten)]
    pub threads: Threads,
    /// Where to time: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also measure the data loader on this spec (augmented images per second).
    #[arg(long)]
    pub loader: Option<String>,
    #[command(flatten)]
    pub resize: Resize,
    /// Precision: `both` times float32 and the fast mode (each in its own process, so peak
    /// memory is per mode) and prints their ratio; `on`, `off` or `auto` time one.
    #[arg(long, default_value = "both", value_name = "both|on|off|auto")]
    pub fast: String,
    /// Instead of timing: compare one JEM step (without its random parts) on --device, in float32
    /// and in the fast mode, against float32 on the CPU from the same weights and inputs
    /// (relative errors of energy, input gradient, parameter gradients; batch at most 16).
    #[arg(long)]
    pub agreement: bool,
    /// Time one case as --compare-pytorch does (float32; the median of per-iteration times):
    /// `jem`, the training step of the config above, or `sampler2d`, the sampler of
    /// configs/toy2d.toml (mlp-2d, textbook ULA, step 0.01) alone, --sgld-steps steps on
    /// --points points; with --compare-pytorch also `both` (default there: jem).
    #[arg(long, value_name = "jem|sampler2d|both")]
    pub case: Option<String>,
    /// Run ebm and the plain-PyTorch reference (scripts/pytorch_reference.py, with the
    /// repository's .venv/bin/python) alternately, each run in its own process, at equal settings
    /// (config, threads, device, iterations), --rounds times; print each side's min/median/max
    /// s per iteration, peak memory and the ebm/PyTorch ratios.
    #[arg(long)]
    pub compare_pytorch: bool,
    /// Rounds of --compare-pytorch (one ebm run and one PyTorch run each).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// With --compare-pytorch: run the reference's network, data and buffer in torch.channels_last
    /// (JEM's code, and the reference by default, run NCHW; ebm's layout is train.channels_last)
    #[arg(long)]
    pub pytorch_channels_last: bool,
    /// Points of the sampler2d case.
    #[arg(long, default_value_t = 1000)]
    pub points: usize,
    /// The Python of the reference (default: .venv/bin/python of the repository).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Data-parallel scaling on N local ranks (c10d's Gloo, as `ebm train --nproc-per-node N`):
    /// the step's seconds at 1 process with batch B (--batch) and at N ranks with B per rank
    /// (global N x B), each on the CPU's threads split N ways (or --threads) for both; the
    /// all-reduce seconds per step (the gradient reducer's clock, mean over ranks) and the
    /// weak-scaling efficiency t1 / tN (1: N ranks step as fast as one alone). Float32 unless
    /// --fast on or auto.
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

/// The training config the bench times: the config file (or JEM's defaults on the preset) with
/// the flags and `--set` overrides applied, in the order given.
fn bench_config(a: &BenchArgs) -> anyhow::Result<TrainConfig> {
    let base = match &a.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?
        }
        None => "[model]\npreset = \"wrn-28-10\"\n".to_string(),
    };
    let mut set = Vec::new();
    if let Some(p) = &a.preset {
        set.push(format!("model.preset=\"{p}\""));
    }
    let flags = [("model.depth", a.depth.map(|v| v as i64)), ("model.width", a.width.map(|v| v as i64))];
    let flags = flags.into_iter().chain([("data.batch_size", a.batch), ("sgld.steps", a.sgld_steps.map(|v| v as i64))]);
    set.extend(flags.filter_map(|(k, v)| v.map(|v| format!("{k}={v}"))));
    set.extend(a.set.iter().cloned());
    let origin = a.config.as_ref().map_or("the bench config".to_string(), |p| p.display().to_string());
    TrainConfig::parse(&base, &set).with_context(|| format!("{origin}: invalid config"))
}

/// Steps per timed run of the sampler2d case when --sgld-steps is not given.
const SAMPLER2D_STEPS: usize = 1000;

/// With no network chosen (no --config, --preset, --depth or --width, no `--set model.*`), picks
/// one that finishes on `device` and returns the note that says so (printed on stderr once the
/// flags are known good): JEM's WRN-28-10 at batch 64 on CUDA; on the CPU, where one WRN-28-10 step
/// of batch 64 with 20 SGLD steps takes minutes (WRN-16-2 alone takes 11 s, BENCHMARKS.md),
/// WRN-10-2 at batch 16, the network of `make bench-compare`. The choice is written into the
/// flags, so the bench's child processes time the same network.
fn choose_network(a: &mut BenchArgs, device: tch::Device) -> Option<String> {
    let chosen = a.config.is_some()
        || a.preset.is_some()
        || a.depth.is_some()
        || a.width.is_some()
        || a.set.iter().any(|s| s.trim_start().starts_with("model."));
    if chosen || a.case.as_deref().map(str::trim) == Some("sampler2d") {
        return None;
    }
    a.preset = Some("wrn-28-10".into());
    let why = if device.is_cuda() {
        format!("JEM's WRN-28-10 at batch {}", a.batch.get_or_insert(64))
    } else {
        (a.depth, a.width) = (Some(10), Some(2));
        format!(
            "WRN-10-2 at batch {} (on a CPU one step of JEM's WRN-28-10 takes minutes; --preset wrn-28-10 times it anyway)",
            a.batch.get_or_insert(16)
        )
    };
    Some(format!("bench: no network given; on {} timing {why}", ebm::device::device_name(device)))
}

/// Prints the note of [`choose_network`], if any.
fn say(note: Option<&str>) {
    if let Some(n) = note {
        eprintln!("{n}");
    }
}

/// `ebm bench --agreement`: the CPU/device agreement table.
fn agreement(a: &BenchArgs, model: &ModelConfig, batch: i64, device: tch::Device) -> anyhow::Result<()> {
    use ebm::models::Precision;
    let rows = [Precision::FLOAT32, Precision::fast(device)]
        .into_iter()
        .map(|p| ebm::bench::agreement::step_agreement(model, tch::Device::Cpu, device, p, batch.clamp(1, 16)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        println!("{}", serde_json::json!({ "agreement": rows }));
    } else {
        println!("{} on {} against float32 on the CPU (relative errors)", model.label(), rows[0].device);
        println!(
            "{:<10} {:>12} {:>12} {:>12} {:>10} {:>10}  result",
            "precision", "energy", "dE/dx", "param grads", "tol E", "tol grads"
        );
        for r in &rows {
            println!(
                "{:<10} {:>12.3e} {:>12.3e} {:>12.3e} {:>10.0e} {:>10.0e}  {}",
                r.precision,
                r.energy,
                r.input_grad,
                r.param_grad,
                r.tolerance.energy,
                r.tolerance.grad,
                if r.pass { "pass" } else { "FAIL" }
            );
        }
    }
    if rows.iter().any(|r| !r.pass) {
        bail!("{} does not agree with the CPU within tolerance", rows[0].device);
    }
    Ok(())
}

/// Runs `ebm bench ARGS --json` in a child process, passing on `a`'s --config, --set and (with
/// `network`) its network and batch flags; `what` names the run in errors. Returns its stdout.
fn bench_child(a: &BenchArgs, args: &[&str], network: bool, what: &str) -> anyhow::Result<Vec<u8>> {
    let exe = std::env::current_exe().context("cannot find the ebm executable")?;
    let mut cmd = std::process::Command::new(exe);
    bench_args(&mut cmd, a, args, network);
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("cannot run the bench process")?;
    if !out.status.success() {
        bail!("the `{what}` bench process failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// `bench ARGS --json` and `a`'s --config, --set and (with `network`) network and batch flags.
fn bench_args(cmd: &mut std::process::Command, a: &BenchArgs, args: &[&str], network: bool) {
    cmd.arg("bench").args(args).arg("--json");
    if let Some(c) = &a.config {
        cmd.arg("--config").arg(c);
    }
    let flags = [
        ("--preset", a.preset.clone()),
        ("--depth", a.depth.map(|v| v.to_string())),
        ("--width", a.width.map(|v| v.to_string())),
        ("--batch", a.batch.map(|v| v.to_string())),
        ("--sgld-steps", a.sgld_steps.map(|v| v.to_string())),
    ];
    for (flag, v) in flags.into_iter().filter(|_| network) {
        if let Some(v) = v {
            cmd.args([flag, &v]);
        }
    }
    for s in &a.set {
        cmd.args(["--set", s]);
    }
}

/// `ebm bench --nproc-per-node N`: one process at batch B, then N ranks at B each (workers of
/// this program with torchrun's variables), at the same threads per process; the scaling table.
fn scaling(a: &BenchArgs, n: usize, note: Option<&str>) -> anyhow::Result<()> {
    use ebm::bench::scaling::{RankBench, Scaling};
    if n == 0 {
        bail!("--nproc-per-node 0: give at least 1");
    }
    bench_config(a)?; // the flags are known good before any process starts
    say(note);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = a.threads.get().map_or((cores / n).max(1), |t| t).to_string();
    let mode = if a.fast.trim() == "both" { "off" } else { a.fast.as_str() };
    let (iters, warmup) = (a.iters.max(1).to_string(), a.warmup.to_string());
    let args = ["--iters", &iters, "--warmup", &warmup, "--device", &a.device, "--fast", mode, "--threads", &threads];
    let one: TrainBench = json_field(&bench_child(a, &args, true, "one process")?, "train")?;
    let port = ebm::dist::launch::free_port()?;
    let mut workers = Vec::new();
    for r in 0..n {
        let mut cmd = ebm::dist::launch::worker_command(r, n, port)?;
        bench_args(&mut cmd, a, &args, true);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit());
        workers.push(cmd.spawn().with_context(|| format!("cannot start bench rank {r}"))?);
    }
    let outputs: Vec<std::process::Output> =
        workers.into_iter().map(|w| w.wait_with_output()).collect::<Result<_, _>>()?;
    if let Some((r, o)) = outputs.iter().enumerate().find(|(_, o)| !o.status.success()) {
        bail!("bench rank {r} of {n} failed ({})", o.status);
    }
    let ranks: RankBench = json_field(&outputs[0].stdout, "rank").context("rank 0")?;
    let s = Scaling::new(one.seconds_per_iter, &ranks);
    if a.json {
        println!("{}", serde_json::json!({"scaling": s, "one_process": one}));
        return Ok(());
    }
    let b = s.batch_per_rank;
    println!("model              {} ({} parameters), {}", one.model, one.parameters, one.precision);
    println!("device             {}, {} thread(s) per process", one.device, s.threads_per_rank);
    println!("{:<19}{:<22}{n} ranks (c10d)", "", "1 process");
    println!("{:<19}{:<22}{b} per rank, {} in all", "batch", b, b * n);
    let how = if s.overlap {
        "all-reduce overlapped with the backward pass (c10d's Reducer)"
    } else {
        "all-reduce after the backward pass"
    };
    println!("{:<19}{:<22.4}{:.4} ({how})", "s per step", s.one_rank_seconds_per_iter, s.seconds_per_iter);
    println!(
        "{:<19}{:<22.1}{:.1}",
        "images per s",
        b as f64 / s.one_rank_seconds_per_iter,
        (b * n) as f64 / s.seconds_per_iter
    );
    println!(
        "{:<19}{:<22}{:.4} s per step with the all-reduce after the backward pass, which took {:.4} ({:.1}%)",
        "after the pass",
        "-",
        s.after_pass_seconds_per_iter,
        s.reduce_seconds_per_iter,
        100.0 * s.reduce_seconds_per_iter / s.after_pass_seconds_per_iter
    );
    println!("weak scaling       efficiency t1/tN = {:.3}, speed-up N t1/tN = {:.2} (of {n})", s.efficiency, s.speedup);
    if one.diverged + ranks.diverged > 0 {
        println!("                   (the guard discarded some timed steps on the random data: their time counts)");
    }
    Ok(())
}

/// Runs `ebm bench` again in a child process with `--fast MODE --json` and reads its result, so
/// each precision starts from a fresh allocator (tch cannot empty the CUDA cache) and its peak
/// memory is its own.
fn bench_in_child(a: &BenchArgs, mode: &str) -> anyhow::Result<TrainBench> {
    let (iters, warmup) = (a.iters.to_string(), a.warmup.to_string());
    let mut args = vec!["--iters", &iters, "--warmup", &warmup, "--device", &a.device, "--fast", mode];
    let threads = a.threads.get().map(|t| t.to_string());
    if let Some(t) = &threads {
        args.extend(["--threads", t]);
    }
    json_field(&bench_child(a, &args, true, &format!("--fast {mode}"))?, "train")
}

/// The object under `key` of a bench child's JSON output.
fn json_field<T: serde::de::DeserializeOwned>(stdout: &[u8], key: &str) -> anyhow::Result<T> {
    let v: serde_json::Value = serde_json::from_slice(stdout).context("unreadable bench output")?;
    serde_json::from_value(v[key].clone()).with_context(|| format!("unreadable bench output: no `{key}` result"))
}

fn gpu_memory_text(t: &TrainBench) -> String {
    match &t.gpu_memory {
        Some(m) => format!("{:.0} (before: {:.0})", m.peak_mib, m.before_mib),
        None => "unavailable".into(),
    }
}

/// The config of one case: `bench_config` for jem; for sampler2d configs/toy2d.toml (or
/// --config) with --points, --sampler-steps and the `--set` overrides.
fn case_config(a: &BenchArgs, case: Case) -> anyhow::Result<TrainConfig> {
    if case == Case::Jem {
        return bench_config(a);
    }
    let jem_flags = a.preset.is_some() || a.depth.is_some() || a.width.is_some();
    if a.case.as_deref().map(str::trim) == Some("sampler2d") && (jem_flags || a.batch.is_some()) {
        bail!("--preset, --depth, --width and --batch set the jem case; sampler2d takes --points and --sgld-steps");
    }
    let (base, origin) = match &a.config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read config", p.display()))?,
            p.display().to_string(),
        ),
        None => (compare::SAMPLER2D_CONFIG.to_string(), "configs/toy2d.toml".to_string()),
    };
    let steps = a.sgld_steps.unwrap_or(SAMPLER2D_STEPS);
    let mut set = vec![format!("data.batch_size={}", a.points), format!("sgld.steps={steps}")];
    set.extend(a.set.iter().cloned());
    TrainConfig::parse(&base, &set).with_context(|| format!("{origin}: invalid config"))
}

/// libtorch's CPU threads for `cfg`: --threads, else the config's train.threads, else the default.
fn threads_for(a: &BenchArgs, cfg: &TrainConfig) -> i32 {
    match (a.threads.get(), cfg.train.threads) {
        (Some(n), _) => n as i32,
        (_, n) if n > 0 => n as i32,
        _ => tch::get_num_threads(),
    }
}

/// `ebm bench --case C`: one side of the comparison, in this process.
fn one_case(a: &BenchArgs, case: Case, device: tch::Device, note: Option<&str>) -> anyhow::Result<()> {
    let cfg = case_config(a, case)?;
    say(note);
    tch::set_num_threads(threads_for(a, &cfg));
    let r = match case {
        Case::Jem => compare::time_jem(&cfg, a.iters.max(1), a.warmup, device)?,
        Case::Sampler2d => compare::time_sampler(&cfg, a.iters.max(1), a.warmup, device)?,
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "case               {}: {} ({} parameters), float32, {}",
        case.name(),
        compare::describe(case, &cfg),
        r.parameters,
        r.layout
    );
    println!("device             {} ({} threads)", r.device, r.threads);
    println!(
        "s per iteration    {:.4} (median of {}; mean {:.4})",
        r.seconds_per_iter, r.iters, r.seconds_per_iter_mean
    );
    if let Some(m) = r.peak_rss_mib {
        println!("peak RSS (MiB)     {m:.0}");
    }
    if let Some(m) = r.gpu_peak_mib {
        println!("peak GPU MiB       {m:.0} (NVML, device-wide; before: {:.0})", r.gpu_before_mib.unwrap_or(f64::NAN));
    }
    if r.diverged > 0 {
        println!("                   ({} timed steps diverged on the random data: their time counts)", r.diverged);
    }
    Ok(())
}

/// Runs `ebm bench --case C --json` in a child process at `threads` and reads its result.
fn case_in_child(a: &BenchArgs, case: Case, device: tch::Device, threads: i32) -> anyhow::Result<SideRun> {
    let device = ebm::device::device_name(device);
    let (iters, warmup, threads) = (a.iters.max(1).to_string(), a.warmup.to_string(), threads.to_string());
    let mut args = vec!["--case", case.name(), "--iters", &iters, "--warmup", &warmup];
    args.extend(["--device", &device, "--threads", &threads]);
    let (points, steps) = (a.points.to_string(), a.sgld_steps.unwrap_or(SAMPLER2D_STEPS).to_string());
    if case == Case::Sampler2d {
        args.extend(["--points", &points, "--sgld-steps", &steps]);
    }
    let stdout = bench_child(a, &args, case == Case::Jem, &format!("--case {}", case.name()))?;
    serde_json::from_slice(&stdout).context("unreadable bench output")
}

/// The largest peak memory of a side's runs, as text: RSS on the CPU, NVML on CUDA (with
/// PyTorch's allocator maxima where known).
fn memory_text(runs: &[SideRun]) -> String {
    let max = |f: &dyn Fn(&SideRun) -> Option<f64>| runs.iter().filter_map(f).reduce(f64::max);
    let mut text = match (max(&|r| r.gpu_peak_mib), max(&|r| r.peak_rss_mib)) {
        (Some(g), _) => format!("GPU {g:.0}"),
        (None, Some(m)) => format!("RSS {m:.0}"),
        (None, None) => "unavailable".into(),
    };
    if let (Some(al), Some(re)) = (max(&|r| r.cuda_max_allocated_mib), max(&|r| r.cuda_max_reserved_mib)) {
        text += &format!(" (allocated {al:.0}, reserved {re:.0})");
    }
    text
}

/// `ebm bench --compare-pytorch`.
fn compare_pytorch(a: &BenchArgs, device: tch::Device, note: Option<&str>) -> anyhow::Result<()> {
    let cases = Case::parse_list(a.case.as_deref().unwrap_or("jem"))?;
    if cases.len() > 1 && (a.config.is_some() || !a.set.is_empty() || a.sgld_steps.is_some()) {
        bail!("--config, --set and --sgld-steps apply to one case: run --case jem and --case sampler2d separately");
    }
    if a.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let (python, script) = compare::find_reference(a.python.as_deref())?;
    let mut results = Vec::new();
    let mut note = note;
    for case in cases {
        let cfg = case_config(a, case)?;
        say(note.take());
        let threads = threads_for(a, &cfg);
        let args =
            compare::reference_args(case, &cfg, a.iters.max(1), a.warmup, threads, device, a.pytorch_channels_last)?;
        let settings = format!("{}, {threads} threads", compare::describe(case, &cfg));
        eprintln!("bench: {} ({settings}): {} rounds of ebm and PyTorch, alternating", case.name(), a.rounds);
        let (ebm_runs, torch_runs) = compare::alternate(
            a.rounds,
            || case_in_child(a, case, device, threads),
            || compare::run_reference(&python, &script, &args),
        )?;
        results.push(CaseComparison::new(case, settings, ebm_runs, torch_runs));
    }
    let torch = results[0].pytorch[0].torch.clone().unwrap_or_else(|| "?".into());
    if a.json {
        let v = serde_json::json!({
            "rounds": a.rounds,
            "iters": a.iters.max(1),
            "warmup": a.warmup,
            "device": ebm::device::device_name(device),
            "torch": torch,
            "python": python,
            "script": script,
            "cases": results,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "ebm against plain PyTorch {torch} ({}), {}, float32: {} rounds, sides alternating",
        compare::SCRIPT,
        ebm::device::device_name(device),
        a.rounds
    );
    println!("s per iteration: each run's median of {} timed iterations (after {} untimed)", a.iters.max(1), a.warmup);
    for c in &results {
        println!();
        println!("{}: {} ({} parameters)", c.case, c.settings, c.ebm[0].parameters);
        println!("layout: ebm {}, PyTorch {}", c.ebm[0].layout, c.pytorch[0].layout);
        println!("{:<17}{:>10}{:>10}{:>10}   peak memory MiB", "", "min", "median", "max");
        for (name, s, runs) in
            [("ebm s/iter", &c.ebm_seconds, &c.ebm), ("PyTorch s/iter", &c.pytorch_seconds, &c.pytorch)]
        {
            println!("{name:<17}{:>10.4}{:>10.4}{:>10.4}   {}", s.min, s.median, s.max, memory_text(runs));
        }
        let verdict = if c.meets_target { "met" } else { "not met" };
        let r = &c.ratio;
        println!(
            "{:<17}{:>10.3}{:>10.3}{:>10.3}   target <= {:.2}: {verdict}",
            "ebm / PyTorch", r.min, r.median, r.max, c.target
        );
        let per_round: Vec<String> = c.ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!("ratio per round  {}", per_round.join(" "));
        if c.ebm.iter().chain(&c.pytorch).any(|r| r.diverged > 0) {
            println!("                 (some timed steps diverged on the random data: their time counts)");
        }
    }
    Ok(())
}

/// The bench's table: one column per precision run, their ratio when there are two.
fn print_table(runs: &[TrainBench], loader: Option<&ebm::bench::LoaderBench>) {
    let t = &runs[0];
    let ratio = (runs.len() == 2).then(|| runs[1].seconds_per_iter / runs[0].seconds_per_iter);
    println!("model              {} ({} parameters)", t.model, t.parameters);
    println!("device             {} ({} threads)", t.device, t.threads);
    println!("batch / SGLD steps {} / {}", t.batch, t.sgld_steps);
    let row = |name: &str, f: &dyn Fn(&TrainBench) -> String, ratio: Option<f64>| {
        let mut line = format!("{name:<19}");
        for r in runs {
            line += &format!("{:<28}", f(r));
        }
        if let Some(x) = ratio {
            line += &format!("{x:.3}");
        }
        println!("{}", line.trim_end());
    };
    let ratio_of = |f: &dyn Fn(&TrainBench) -> f64| ratio.map(|_| f(&runs[1]) / f(&runs[0]));
    let mut header = format!("{:<19}", "");
    for r in runs {
        header += &format!("{:<28}", if r.fast { format!("fast ({})", r.precision) } else { r.precision.clone() });
    }
    if ratio.is_some() {
        header += "fast / float32";
    }
    println!("{}", header.trim_end());
    row("s per iteration", &|r| format!("{:.4}", r.seconds_per_iter), ratio);
    if runs.iter().all(|r| r.sgld_steps_per_second.is_some()) {
        let rate = |r: &TrainBench| r.sgld_steps_per_second.unwrap_or(f64::NAN);
        row("SGLD steps per s", &|r| format!("{:.2}", rate(r)), ratio_of(&rate));
    }
    row("images per s", &|r| format!("{:.1}", r.images_per_second), ratio_of(&|r| r.images_per_second));
    if t.peak_rss_mib.is_some() {
        row("peak RSS (MiB)", &|r| r.peak_rss_mib.map_or("unavailable".into(), |m| format!("{m:.0}")), None);
    }
    row("peak GPU MiB", &|r| gpu_memory_text(r), None);
    if runs.iter().any(|r| r.gpu_memory.is_some()) {
        println!("                   (NVML, device-wide: includes the CUDA context, the allocator's cache and other processes)");
    } else if let Some(why) = &t.gpu_memory_unavailable {
        println!("                   (no NVML reading: {why})");
    }
    if runs.iter().any(|r| r.diverged > 0) {
        println!("                   (the guard discarded some timed steps on the random data: their time counts)");
    }
    if let Some(l) = loader {
        println!("loader             {:.0} augmented images/s ({}, batch {})", l.images_per_second, l.spec, l.batch);
    }
}

pub fn run(mut a: BenchArgs) -> anyhow::Result<()> {
    let device = ebm::device::parse_device(&a.device)?;
    let note = choose_network(&mut a, device);
    let note = note.as_deref();
    if a.compare_pytorch {
        return compare_pytorch(&a, device, note);
    }
    if let Some(case) = &a.case {
        match Case::parse_list(case)?.as_slice() {
            [one] => return one_case(&a, *one, device, note),
            _ => bail!("--case both needs --compare-pytorch"),
        }
    }
    let mut cfg = bench_config(&a)?;
    // None: both precisions, each in a child process.
    let mode = if a.fast.trim() == "both" {
        None
    } else {
        Some(FastMode::parse(&a.fast).with_context(|| format!("--fast `{}`: expected both, on, off or auto", a.fast))?)
    };
    tch::set_num_threads(threads_for(&a, &cfg));
    if let Some(env) = ebm::dist::Env::from_process()? {
        // A rank of `--nproc-per-node` (or of torchrun): its agreed measure, as JSON.
        let Some(mode) = mode else {
            bail!("a bench rank (WORLD_SIZE is set) times one precision: give --fast on, off or auto")
        };
        cfg.train.fast = if mode.resolve(device) { FastMode::On } else { FastMode::Off };
        let r = ebm::bench::scaling::rank_iterations(&cfg, a.iters.max(1), a.warmup, device, &env)?;
        println!("{}", serde_json::json!({ "rank": r }));
        return Ok(());
    }
    if let Some(n) = a.nproc_per_node {
        return scaling(&a, n, note);
    }
    let batch = cfg.data.batch_size;
    if a.agreement {
        say(note);
        return agreement(&a, &cfg.model, batch as i64, device);
    }
    let opts = a.resize.options(None);
    let loader = a.loader.as_deref().map(|spec| ebm::bench::loader_throughput(spec, &opts, batch, 200)).transpose()?;
    say(note);
    let runs: Vec<TrainBench> = match mode {
        None => vec![bench_in_child(&a, "off")?, bench_in_child(&a, "on")?],
        Some(mode) => {
            cfg.train.fast = if mode.resolve(device) { FastMode::On } else { FastMode::Off };
            vec![ebm::bench::train_iterations(&cfg, a.iters.max(1), a.warmup, device)?]
        }
    };
    let t = &runs[0];
    let ratio = (runs.len() == 2).then(|| runs[1].seconds_per_iter / runs[0].seconds_per_iter);
    if a.json {
        let v = match ratio {
            Some(r) => {
                serde_json::json!({"float32": runs[0], "fast": runs[1], "fast_over_float32_seconds_per_iter": r, "loader": loader})
            }
            None => serde_json::json!({"train": t, "loader": loader}),
        };
        println!("{v}");
        return Ok(());
    }
    print_table(&runs, loader.as_ref());
    Ok(())
}
