use anyhow::{bail, Context};
use ebm::bench::TrainBench;
use ebm::config::{FastMode, ModelConfig, TrainConfig};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Time the training step of this config (default: JEM's settings on --preset).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any config key, as `ebm train --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Network preset (wrn-28-10, wrn-28-2, wrn-16-2, convnet-small) or a TOML file (default
    /// wrn-28-10, or the config's network).
    #[arg(long)]
    pub preset: Option<String>,
    /// Override the WRN depth.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Override the WRN widen factor (or ConvNet width).
    #[arg(long)]
    pub width: Option<usize>,
    /// Batch size (data.batch_size; default 64, or the config's).
    #[arg(long)]
    pub batch: Option<i64>,
    /// Sampler steps per draw (sgld.steps; default 20, or the config's).
    #[arg(long)]
    pub sgld_steps: Option<usize>,
    /// Timed iterations (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also measure the data loader on this spec (augmented images per second).
    #[arg(long)]
    pub loader: Option<String>,
    /// Precision: `both` times float32 and the fast mode (each in its own process, so peak
    /// memory is per mode) and prints their ratio; `on`, `off` or `auto` time one.
    #[arg(long, default_value = "both", value_name = "both|on|off|auto")]
    pub fast: String,
    /// Instead of timing: compare one JEM step (without its random parts) on --device, in float32
    /// and in the fast mode, against float32 on the CPU from the same weights and inputs
    /// (relative errors of energy, input gradient, parameter gradients; batch at most 16).
    #[arg(long)]
    pub agreement: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
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

/// `ebm bench --agreement`: the CPU/device agreement table.
fn agreement(a: &BenchArgs, model: &ModelConfig, batch: i64, device: tch::Device) -> anyhow::Result<()> {
    use ebm::models::Precision;
    let rows = [Precision::Float32, Precision::fast(device)]
        .into_iter()
        .map(|p| ebm::bench::agreement::step_agreement(model, tch::Device::Cpu, device, p, batch.clamp(1, 16)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.json {
        println!("{}", serde_json::json!({ "agreement": rows }));
    } else {
        println!("{} on {} against float32 on the CPU (relative errors)", model.label(), rows[0].device);
        println!(
            "{:<10} {:>12} {:>12} {:>12} {:>10}  result",
            "precision", "energy", "dE/dx", "param grads", "tolerance"
        );
        for r in &rows {
            println!(
                "{:<10} {:>12.3e} {:>12.3e} {:>12.3e} {:>10.0e}  {}",
                r.precision,
                r.energy,
                r.input_grad,
                r.param_grad,
                r.tolerance,
                if r.pass { "pass" } else { "FAIL" }
            );
        }
    }
    if rows.iter().any(|r| !r.pass) {
        bail!("{} does not agree with the CPU within tolerance", rows[0].device);
    }
    Ok(())
}

/// Runs `ebm bench` again in a child process with `--fast MODE --json` and reads its result, so
/// each precision starts from a fresh allocator (tch cannot empty the CUDA cache) and its peak
/// memory is its own.
fn bench_in_child(a: &BenchArgs, mode: &str) -> anyhow::Result<TrainBench> {
    let exe = std::env::current_exe().context("cannot find the ebm executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "--iters", &a.iters.to_string(), "--device", &a.device, "--fast", mode, "--json"]);
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
    for (flag, v) in flags {
        if let Some(v) = v {
            cmd.args([flag, &v]);
        }
    }
    for s in &a.set {
        cmd.args(["--set", s]);
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("cannot run the bench process")?;
    if !out.status.success() {
        bail!("the `--fast {mode}` bench process failed ({})", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("unreadable bench output")?;
    serde_json::from_value(v["train"].clone()).context("unreadable bench output")
}

fn gpu_memory_text(t: &TrainBench) -> String {
    match &t.gpu_memory {
        Some(m) => format!("{:.0} (before: {:.0})", m.peak_mib, m.before_mib),
        None => "unavailable".into(),
    }
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let device = ebm::device::parse_device(&a.device)?;
    let mut cfg = bench_config(&a)?;
    let batch = cfg.data.batch_size;
    if a.agreement {
        return agreement(&a, &cfg.model, batch as i64, device);
    }
    let loader = a.loader.as_deref().map(|spec| ebm::bench::loader_throughput(spec, batch, 200)).transpose()?;
    let runs: Vec<TrainBench> = if a.fast.trim() == "both" {
        vec![bench_in_child(&a, "off")?, bench_in_child(&a, "on")?]
    } else {
        let mode =
            FastMode::parse(&a.fast).with_context(|| format!("--fast `{}`: expected both, on, off or auto", a.fast))?;
        cfg.train.fast = if mode.resolve(device) { FastMode::On } else { FastMode::Off };
        vec![ebm::bench::train_iterations(&cfg, a.iters.max(1), 1, device)?]
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
    println!("model              {} ({} parameters)", t.model, t.parameters);
    println!("device             {} ({} threads)", t.device, t.threads);
    println!("batch / SGLD steps {} / {}", t.batch, t.sgld_steps);
    let row = |name: &str, f: &dyn Fn(&TrainBench) -> String, ratio: Option<f64>| {
        let mut line = format!("{name:<19}");
        for r in &runs {
            line += &format!("{:<28}", f(r));
        }
        if let Some(x) = ratio {
            line += &format!("{x:.3}");
        }
        println!("{}", line.trim_end());
    };
    let ratio_of = |f: &dyn Fn(&TrainBench) -> f64| ratio.map(|_| f(&runs[1]) / f(&runs[0]));
    let mut header = format!("{:<19}", "");
    for r in &runs {
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
    Ok(())
}
