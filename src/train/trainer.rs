//! The training loop, top to bottom: data -> SGLD negatives -> objective -> optimiser, with
//! logging, sample grids, validation, checkpoints and exact resume.
//!
//! Exactness: libtorch's generator is reseeded from (run seed, step) before every step and the
//! loader's batches are a pure function of (seed, epoch, index), so the random stream depends on
//! the step alone; a checkpoint stores weights, optimiser moments, the buffer and the position.
use super::checkpoint::{self, Contents, TrainState};
use super::metrics::MetricsLog;
use super::optim::{learning_rate, Optimizer};
use crate::config::TrainConfig;
use crate::data::loader::{mix_seed, train_valid_split, BatchPlan, Loader};
use crate::data::{self, Dataset, LoadOptions};
use crate::eval::{classify, grid};
use crate::models::{EnergyNet, Precision};
use crate::objectives::{self, Negatives};
use crate::sampling::{self, ReplayBuffer};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Where and how to run, besides the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out: PathBuf,
    /// A checkpoint (or run folder) to continue from.
    pub resume: Option<PathBuf>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Set (by a signal handler) to stop at the next step boundary with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub steps: u64,
    pub epochs_completed: u64,
    pub seconds: f64,
    pub train_acc: Option<f64>,
    pub valid_acc: Option<f64>,
    pub test_acc: Option<f64>,
    pub e_data: Option<f64>,
    pub e_samples: Option<f64>,
    pub images_per_second: f64,
    pub last_checkpoint: PathBuf,
    pub out: PathBuf,
    /// The run was stopped by a signal before its end (a checkpoint was written).
    pub interrupted: bool,
}

/// The model, its optimiser and the negative-phase sampler, as training holds them.
struct Model {
    vs: VarStore,
    net: EnergyNet,
    objective: Box<dyn objectives::Objective>,
    opt: Optimizer,
    negatives: Negatives,
}

/// Loads a data set and checks it fits the model.
fn load_data(spec: &str, cfg: &TrainConfig) -> crate::Result<Dataset> {
    let ds = data::load(spec, &LoadOptions::default())?;
    if ds.shape != cfg.model.input_shape {
        bail!("{spec}: examples of shape {:?}, but model.input_shape is {:?}", ds.shape, cfg.model.input_shape);
    }
    if cfg.model.is_conditional() {
        if ds.labels.is_none() {
            bail!("{spec}: unlabelled, but the model has a classifier head (use model.head = \"energy\")");
        }
        if ds.num_classes() > cfg.model.num_classes {
            bail!("{spec}: {} classes, but model.num_classes is {}", ds.num_classes(), cfg.model.num_classes);
        }
    }
    Ok(ds)
}

/// Range of fresh SGLD chains and of IGEBM's clamp: [-1, 1] for images, the data's extent for points.
fn data_range(ds: &Dataset) -> f64 {
    if ds.is_image() {
        1.0
    } else {
        let (lo, hi) = ds.value_range();
        (lo.abs().max(hi.abs()) as f64 * 1.1).max(1.0)
    }
}

fn build_model(cfg: &TrainConfig, device: Device, range: f64) -> Model {
    let vs = VarStore::new(device);
    let precision = Precision::for_fast(cfg.train.fast.resolve(device), device);
    let net = EnergyNet::new(&vs.root(), &cfg.model).with_precision(precision);
    // The objective's own parameters (if any) exist before the optimiser collects them.
    let objective = objectives::build(cfg, &vs.root());
    let opt = Optimizer::new(&vs, &cfg.optim);
    let shape = net.input_shape();
    // CD-k starts its chains at the data and score matching and NCE draw none: no buffer.
    let kind = cfg.objective.name;
    let buffer = (cfg.buffer.enabled && kind.uses_chains() && kind != crate::config::ObjectiveKind::Cd).then(|| {
        let classes = cfg.buffer.per_class.then_some(cfg.model.num_classes as i64);
        // PCD's chains are never restarted.
        let reinit =
            if cfg.objective.name == crate::config::ObjectiveKind::Pcd { 0.0 } else { cfg.buffer.reinit_fraction };
        ReplayBuffer::new(cfg.buffer.size as i64, &shape, reinit, classes, range, device)
    });
    let sampler = sampling::from_config(&cfg.sampler, (-range, range));
    let negatives = Negatives::new(sampler, cfg.sampler.steps, buffer, shape, range, device);
    Model { vs, net, objective, opt, negatives }
}

/// Loads weights, optimiser moments, buffer and position from a checkpoint into `m`.
fn restore(m: &mut Model, dir: &Path, cfg: &TrainConfig) -> crate::Result<TrainState> {
    let manifest = checkpoint::read_manifest(dir)?;
    checkpoint::load_weights(&mut m.vs, dir)?;
    m.opt.load(&dir.join(checkpoint::OPTIM_FILE), manifest.state.optimizer_steps)?;
    if let (Some(b), Some(saved)) = (&mut m.negatives.buffer, checkpoint::load_buffer(dir)?) {
        if saved.size() != b.data.size() {
            bail!("{}: buffer of shape {:?}, the config needs {:?}", dir.display(), saved.size(), b.data.size());
        }
        tch::no_grad(|| b.data.copy_(&saved));
    }
    let st = manifest.state;
    m.negatives.steps = if st.sgld_steps > 0 { st.sgld_steps } else { cfg.sampler.steps };
    Ok(st)
}

/// Why a step counts as diverged, if it does: non-finite values, or energies, their gap or the
/// samples beyond the guard's bounds. `v` = [loss, grad norm, E(data), E(samples), max |sample|]
/// (the last three NaN-free placeholders when absent).
fn divergence(v: &[f64], g: &crate::config::GuardConfig) -> Option<String> {
    let names = ["loss", "gradient norm", "mean E(data)", "mean E(samples)", "largest |sample|"];
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Some(format!("non-finite {}", names[i]));
    }
    let (ed, es, xs) = (v[2], v[3], v[4]);
    if ed.abs() > g.max_energy || es.abs() > g.max_energy {
        return Some(format!("energy beyond {} (E(data) {ed:.3e}, E(samples) {es:.3e})", g.max_energy));
    }
    if (ed - es).abs() > g.max_gap {
        return Some(format!("energy gap {:.3e} beyond {}", ed - es, g.max_gap));
    }
    if xs > g.max_sample {
        return Some(format!("SGLD samples left the range (|x| up to {xs:.3e})"));
    }
    None
}

fn save_checkpoint(root: &Path, name: &str, m: &Model, st: &TrainState, cfg: &TrainConfig) -> crate::Result<PathBuf> {
    checkpoint::save(
        root,
        name,
        &Contents {
            vs: &m.vs,
            optimizer: Some(&m.opt),
            buffer: m.negatives.buffer.as_ref().map(|b| &b.data),
            state: st,
            config: cfg,
        },
    )
}

/// The step's samples as a grid, and with a per-class buffer a conditional grid with one row per
/// class (the first 8 chains of each class block; no extra sampling).
fn save_sample_grids(m: &Model, samples: &Option<Tensor>, dir: &Path, step: u64) -> crate::Result<()> {
    let Some(s) = samples.as_ref().filter(|s| s.dim() == 4) else { return Ok(()) };
    let n = s.size()[0].min(64);
    grid::save_grid(&s.narrow(0, 0, n), 0, &dir.join(format!("step-{step:08}.png")))?;
    if let Some(b) = m.negatives.buffer.as_ref() {
        if let Some(k) = b.classes {
            let block = b.size() / k;
            let per = block.min(8);
            let idx: Vec<i64> = (0..k).flat_map(|c| (0..per).map(move |i| c * block + i)).collect();
            let rows = b.data.index_select(0, &Tensor::from_slice(&idx).to_device(b.data.device()));
            grid::save_grid(&rows, per as usize, &dir.join(format!("step-{step:08}-per-class.png")))?;
        }
    }
    Ok(())
}

/// Removes step checkpoints beyond the newest `keep`.
fn prune(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut steps: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    steps.sort();
    let n = steps.len();
    for p in steps.into_iter().take(n.saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Validation accuracy on a held-out set (with the run's data noise, as JEM).
fn accuracy(m: &Model, ds: &Dataset, cfg: &TrainConfig, device: Device) -> crate::Result<Option<f64>> {
    if !cfg.model.is_conditional() || ds.is_empty() {
        return Ok(None);
    }
    let out = classify::run_model(&m.net, ds, 256, device, cfg.data.noise_sigma)?;
    Ok(match (&out.logits, &out.labels) {
        (Some(l), Some(y)) => Some(classify::accuracy_nll(l, y).0),
        _ => None,
    })
}

/// Refuses to start a new run in a folder that already holds one.
fn check_out_dir(out: &Path, resuming: bool) -> crate::Result<()> {
    if !resuming && out.join("metrics.jsonl").exists() {
        bail!(
            "{}: already holds a run (metrics.jsonl); continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        );
    }
    std::fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let probe = out.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| format!("{}: output folder is not writable", out.display()))?;
    std::fs::remove_file(&probe)?;
    Ok(())
}

/// Trains a model as configured; returns what it reached.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> crate::Result<Summary> {
    let device = crate::device::parse_device(&cfg.train.device)?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if device.is_cuda() {
        // cuDNN autotuning picks algorithms by timing, which changes results between runs.
        tch::Cuda::cudnn_set_benchmark(!cfg.train.deterministic);
    }
    let resume_dir = opts.resume.as_deref().map(checkpoint::resolve).transpose()?;
    let full = Arc::new(load_data(&cfg.data.spec, cfg)?);
    let (train_idx, valid_idx) = train_valid_split(full.len(), cfg.data.valid_fraction);
    if train_idx.len() < cfg.data.batch_size {
        bail!(
            "{}: {} training examples, fewer than one batch of {}",
            cfg.data.spec,
            train_idx.len(),
            cfg.data.batch_size
        );
    }
    let valid = full.subset(&valid_idx);
    let test = cfg.data.test_spec.as_deref().map(|s| load_data(s, cfg)).transpose()?;
    // Only now, with config and data known good, is anything written.
    check_out_dir(&opts.out, resume_dir.is_some())?;

    tch::manual_seed(mix_seed(&[cfg.train.seed, 0]) as i64 & i64::MAX);
    let range = data_range(&full);
    let mut m = build_model(cfg, device, range);
    let mut st = TrainState::default();
    if let Some(dir) = &resume_dir {
        st = restore(&mut m, dir, cfg)?;
    }
    m.negatives.steps = if st.sgld_steps > 0 { st.sgld_steps } else { cfg.sampler.steps };
    let ckpt_root = opts.out.join("checkpoints");
    // A full disk is known now, not at the first checkpoint after hours of training.
    let estimate = checkpoint::estimate_bytes(&Contents {
        vs: &m.vs,
        optimizer: Some(&m.opt),
        buffer: m.negatives.buffer.as_ref().map(|b| &b.data),
        state: &st,
        config: cfg,
    });
    checkpoint::check_space(&ckpt_root, estimate)?;
    std::fs::write(opts.out.join("config.json"), serde_json::to_vec_pretty(&cfg.to_json())?)
        .with_context(|| format!("{}: cannot write config.json", opts.out.display()))?;
    let metrics = MetricsLog::open(&opts.out, resume_dir.as_ref().map(|_| st.step))?;
    checkpoint::recover_interrupted_writes(&ckpt_root);

    let plan = BatchPlan {
        seed: cfg.train.seed,
        batch_size: cfg.data.batch_size,
        indices: Arc::new(train_idx),
        augment: cfg.data.augment && full.is_image(),
        noise_sigma: if full.is_image() { cfg.data.noise_sigma as f32 } else { 0.0 },
    };
    let per_epoch = plan.batches_per_epoch();
    let mut total = cfg.train.epochs * per_epoch;
    if cfg.train.max_steps > 0 {
        total = if total == 0 { cfg.train.max_steps } else { total.min(cfg.train.max_steps) };
    }
    let mut loader = Loader::start(full.clone(), plan.clone(), st.epoch, st.index, cfg.data.prefetch, device.is_cuda());
    if resume_dir.is_none() && cfg.guard.enabled {
        // Something to roll back to before the first periodic checkpoint.
        save_checkpoint(&ckpt_root, &format!("step-{:08}", st.step), &m, &st, cfg)?;
    }

    let bar = if opts.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(st.step);
    let say = |s: String| {
        if !opts.quiet {
            bar.println(s);
        }
    };
    say(format!(
        "training {} ({} parameters) on {}{} with {}, {} steps of {} per epoch",
        cfg.model_label(),
        crate::models::count_parameters(&m.vs),
        crate::device::device_name(device),
        match m.net.precision {
            Precision::Float32 => "",
            Precision::Bf16 { channels_last: true } => " in fast mode (bf16, channels-last)",
            Precision::Bf16 { channels_last: false } => " in fast mode (bf16)",
        },
        m.objective.name(),
        per_epoch,
        cfg.data.batch_size
    ));

    let started = Instant::now();
    let (mut window_start, mut window_steps) = (Instant::now(), 0u64);
    let mut last_logs: Vec<(String, f64)> = Vec::new();
    let mut img_per_s = 0.0;
    let mut last_ckpt = resume_dir.clone().unwrap_or_default();
    let mut valid_acc = None;
    let start_step = st.step;
    let mut interrupted = false;
    while st.step < total {
        if opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            last_ckpt = save_checkpoint(&ckpt_root, &format!("step-{:08}", st.step), &m, &st, cfg)?;
            interrupted = true;
            break;
        }
        tch::manual_seed(mix_seed(&[cfg.train.seed, 1, st.step]) as i64 & i64::MAX);
        let batch = loader.next_batch();
        debug_assert_eq!((batch.epoch, batch.index), (st.epoch, st.index));
        let x = crate::device::to_device_async(&batch.x, device);
        let y = batch.y.map(|y| crate::device::to_device_async(&y, device));
        let lr = learning_rate(&cfg.optim, st.step, st.epoch) * st.lr_scale;

        let terms = m.objective.loss(&m.net, &x, y.as_ref(), &mut m.negatives);
        m.opt.zero_grad();
        terms.loss.backward();
        let gnorm = m.opt.grad_norm();
        // One host read per step: everything the guard needs, before the update.
        let log =
            |name: &str| terms.logs.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_kind(Kind::Float).view([1]));
        let zero = || Tensor::zeros([1], (Kind::Float, device));
        let probe = Tensor::cat(
            &[
                terms.loss.detach().to_kind(Kind::Float).view([1]),
                gnorm.to_kind(Kind::Float).view([1]),
                log("e_data").unwrap_or_else(zero),
                log("e_samples").unwrap_or_else(zero),
                terms.samples.as_ref().map(|s| s.abs().max().to_kind(Kind::Float).view([1])).unwrap_or_else(zero),
            ],
            0,
        );
        let check: Vec<f64> = Vec::try_from(&probe.to_kind(Kind::Double)).expect("five values");
        if let Some(reason) = divergence(&check, &cfg.guard) {
            m.negatives.discard();
            let give_up = !cfg.guard.enabled || st.rollbacks >= cfg.guard.max_rollbacks;
            if give_up {
                let path = save_checkpoint(&ckpt_root, &format!("step-{:08}", st.step), &m, &st, cfg)?;
                let tried =
                    if cfg.guard.enabled { format!(" after {} rollbacks", st.rollbacks) } else { String::new() };
                bail!(
                    "diverged at step {} (epoch {}): {reason}{tried}; the last good state (before this step) is saved in {} — resume from it with a lower optim.lr or more sgld.steps",
                    st.step,
                    st.epoch,
                    path.display()
                );
            }
            let target = checkpoint::resolve(&ckpt_root)?;
            let rollbacks = st.rollbacks + 1;
            let (lr_scale, steps) = (st.lr_scale * cfg.guard.lr_factor, m.negatives.steps);
            let diverged_at = st.step;
            st = restore(&mut m, &target, cfg)?;
            st.rollbacks = rollbacks;
            st.lr_scale = lr_scale;
            st.sgld_steps = ((steps as f64) * cfg.guard.sgld_steps_factor).round() as usize;
            m.negatives.steps = st.sgld_steps;
            if cfg.guard.reset_buffer {
                if let Some(b) = &mut m.negatives.buffer {
                    b.data = crate::sampling::buffer::uniform(&b.data.size(), range, device);
                }
            }
            metrics.write(&json!({"step": diverged_at, "epoch": st.epoch, "event": "rollback", "reason": reason,
                                  "to_step": st.step, "rollbacks": st.rollbacks, "lr_scale": st.lr_scale,
                                  "sgld_steps": st.sgld_steps, "buffer_reset": cfg.guard.reset_buffer}))?;
            say(format!(
                "step {diverged_at}: {reason}; rolled back to step {} (rollback {} of {}), learning rate x{}, {} SGLD steps",
                st.step, st.rollbacks, cfg.guard.max_rollbacks, st.lr_scale, st.sgld_steps
            ));
            drop(loader);
            loader = Loader::start(full.clone(), plan.clone(), st.epoch, st.index, cfg.data.prefetch, device.is_cuda());
            bar.set_position(st.step);
            continue;
        }
        if cfg.optim.clip_grad_norm > 0.0 {
            m.opt.clip_grad_norm(&gnorm, cfg.optim.clip_grad_norm);
        }
        m.opt.step(lr);
        m.negatives.commit();
        m.objective.commit();
        st.step += 1;
        st.optimizer_steps = m.opt.t;
        st.index += 1;
        let epoch_end = st.index == per_epoch;
        if epoch_end {
            st.epoch += 1;
            st.index = 0;
        }
        window_steps += 1;
        bar.set_position(st.step);

        if st.step % cfg.train.log_every == 0 || st.step == total {
            let names: Vec<&str> = terms.logs.iter().map(|(n, _)| *n).collect();
            // One host read per log step: the terms are stacked on the device first.
            let values: Vec<f64> = Vec::try_from(
                &Tensor::stack(&terms.logs.iter().map(|(_, t)| t.to_kind(Kind::Float)).collect::<Vec<_>>(), 0)
                    .to_kind(Kind::Double),
            )
            .expect("log values");
            img_per_s = (window_steps * cfg.data.batch_size as u64) as f64 / window_start.elapsed().as_secs_f64();
            (window_start, window_steps) = (Instant::now(), 0);
            last_logs = names.iter().map(|n| n.to_string()).zip(values.iter().copied()).collect();
            let mut rec = json!({"step": st.step, "epoch": st.epoch, "lr": lr, "grad_norm": check[1], "img_per_s": img_per_s,
                                 "time": started.elapsed().as_secs_f64()});
            for (n, v) in &last_logs {
                rec[n.as_str()] = json!(v);
            }
            metrics.write(&rec)?;
            let get = |k: &str| last_logs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
            let mut msg = format!("loss {:.4}", get("loss").unwrap_or(f64::NAN));
            if let Some(a) = get("acc") {
                msg += &format!(" acc {:.3}", a);
            }
            if let Some(g) = get("gap") {
                msg += &format!(" E(data)-E(samples) {:+.4}", g);
            }
            msg += &format!(" {:.0} img/s", img_per_s);
            bar.set_message(msg);
        }
        if cfg.train.sample_every > 0 && st.step % cfg.train.sample_every == 0 {
            save_sample_grids(&m, &terms.samples, &opts.out.join("samples"), st.step)?;
        }
        if epoch_end {
            valid_acc = accuracy(&m, &valid, cfg, device)?;
            if let Some(acc) = valid_acc {
                metrics.write(&json!({"step": st.step, "epoch": st.epoch, "event": "validation", "valid_acc": acc}))?;
                say(format!("epoch {} step {}: validation accuracy {:.4}", st.epoch, st.step, acc));
                if st.best_valid_acc.is_none_or(|b| acc > b) {
                    st.best_valid_acc = Some(acc);
                    save_checkpoint(&ckpt_root, "best", &m, &st, cfg)?;
                }
            }
        }
        let periodic = cfg.train.ckpt_every > 0 && st.step % cfg.train.ckpt_every == 0;
        if periodic || epoch_end || st.step == total {
            last_ckpt = save_checkpoint(&ckpt_root, &format!("step-{:08}", st.step), &m, &st, cfg)?;
            prune(&ckpt_root, cfg.train.keep_checkpoints.max(1));
        }
    }
    bar.finish_and_clear();
    drop(loader);

    let test_acc = match &test {
        Some(t) => accuracy(&m, t, cfg, device)?,
        None => None,
    };
    if let Some(acc) = test_acc {
        metrics.write(&json!({"step": st.step, "epoch": st.epoch, "event": "test", "test_acc": acc}))?;
    }
    let get = |k: &str| last_logs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let secs = started.elapsed().as_secs_f64();
    Ok(Summary {
        steps: st.step,
        epochs_completed: st.epoch,
        seconds: secs,
        train_acc: get("acc"),
        valid_acc,
        test_acc,
        e_data: get("e_data"),
        e_samples: get("e_samples"),
        images_per_second: if st.step > start_step {
            ((st.step - start_step) * cfg.data.batch_size as u64) as f64 / secs
        } else {
            img_per_s
        },
        last_checkpoint: last_ckpt,
        out: opts.out.clone(),
        interrupted,
    })
}
