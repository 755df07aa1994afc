//! A training run, top to bottom: [`Run::start`] loads the data and builds the [`Trainer`] (or
//! restores it from a checkpoint), then [`Run::until_done`] loops over the batches, calling
//! `step`, and around it `log`, `rollback`, `end_of_epoch` and `checkpoint`.
//!
//! Exactness: libtorch's generator is reseeded from (run seed, step) before every step and the
//! loader's batches are a pure function of (seed, epoch, index), so the random stream depends on
//! the step alone; a checkpoint stores weights, optimiser moments, the buffer and the position.
use super::checkpoint::{self, TrainState};
use super::dist_run::DistRun;
use super::fid_log::FidLog;
use super::guard;
use super::metrics::MetricsLog;
use super::optim::learning_rate;
use super::output::{check_out_dir, prune, save_sample_grids};
use super::progress::Progress;
use super::reshard;
use super::run_data::RunData;
use super::trainer::{Step, Trainer};
use crate::config::TrainConfig;
use crate::data::loader::{mix_seed, Batch, Loader};
use crate::data::Dataset;
use crate::eval::classify;
use crate::models::Precision;
use crate::objectives::{Inputs, Terms};
use anyhow::{bail, Context};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    /// This process's place in a data-parallel run (torchrun's environment); None: one process.
    pub dist: Option<crate::dist::Env>,
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

pub struct Run<'a> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions,
    /// This rank's output folder: the run folder on rank 0, `logs/rank-R/` in it on the others.
    out: PathBuf,
    /// The group of a data-parallel run (None: one process).
    dist: Option<DistRun>,
    device: Device,
    trainer: Trainer,
    /// Where training stands (what a checkpoint stores besides the tensors).
    pos: TrainState,
    data: RunData,
    loader: Loader,
    /// The p(x) term's own plain loader (`data.px_batch = "plain"`).
    px_loader: Option<Loader>,
    per_epoch: u64,
    total: u64,
    ckpt_root: PathBuf,
    metrics: MetricsLog,
    progress: Progress,
    started: Instant,
    start_step: u64,
    /// Steps and start of the current throughput window (reset at each log step).
    window: (u64, Instant),
    images_per_second: f64,
    last_logs: Vec<(String, f64)>,
    last_ckpt: PathBuf,
    valid_acc: Option<f64>,
    /// FID and KID every `train.fid_every` steps (None: off).
    fid: Option<FidLog>,
}

impl<'a> Run<'a> {
    /// Checks the config, loads the data, builds or restores the trainer; writes nothing before
    /// all of that has succeeded.
    pub fn start(cfg: &'a TrainConfig, opts: &'a RunOptions) -> crate::Result<Self> {
        // The objective's own rules, before any data is loaded (Trainer::new builds it, checked).
        crate::objectives::check(cfg)?;
        let device = match (crate::device::parse_device(&cfg.train.device)?, &opts.dist) {
            // One device per rank: cuda:LOCAL_RANK.
            (Device::Cuda(_), Some(env)) => Device::Cuda(env.local_rank),
            (d, _) => d,
        };
        let mut dist = opts.dist.as_ref().map(|env| DistRun::join(env, cfg, device)).transpose()?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        } else if let Some(env) = &opts.dist {
            // The machine's cores split between its ranks.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            tch::set_num_threads((cores / env.local_world.max(1)).max(1) as i32);
        }
        if device.is_cuda() {
            // cuDNN autotuning picks algorithms by timing, which changes results between runs.
            tch::Cuda::cudnn_set_benchmark(!cfg.train.deterministic);
        }
        if cfg.train.deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
            // cuBLAS reads it when it initialises, at the first matrix product (after this).
            std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
        }
        // Ops without a deterministic implementation then fail instead of varying (CUDA; on the
        // CPU every op the trainer uses is deterministic for a given thread count).
        crate::models::fused::set_deterministic(cfg.train.deterministic);
        let resume_dir = opts.resume.as_deref().map(checkpoint::resolve).transpose()?;
        let mut data = RunData::load(cfg)?;
        let (rank, world) = dist.as_ref().map_or((0, 1), |d| (d.rank(), d.world()));
        // Global batches of world x B, of which each rank builds only its rows.
        data.scale_batches(rank, world);
        let fid = if rank == 0 { FidLog::start(cfg, &data, device)? } else { None };
        let out = match rank {
            0 => opts.out.clone(),
            r => opts.out.join("logs").join(format!("rank-{r}")),
        };
        check_out_dir(&out, resume_dir.is_some())?;

        tch::manual_seed(mix_seed(&[cfg.train.seed, 0]) as i64 & i64::MAX);
        let mut trainer = Trainer::new(cfg, device, data.range)?;
        if trainer.negatives.is_some() {
            if let Some(init) = data.chain_init(cfg, device)? {
                trainer.set_chain_init(init);
            }
        }
        if let Some(d) = &mut dist {
            d.prepare(&mut trainer, cfg)?;
        }
        let per_epoch = data.plan.batches_per_epoch();
        let (mut pos, change) = match &resume_dir {
            Some(dir) => {
                let mut pos = trainer.restore(dir)?;
                let change = reshard::carry_over(&mut pos, world, cfg.data.batch_size, per_epoch);
                (pos, change)
            }
            None => (TrainState::default(), None),
        };
        (pos.world_size, pos.global_batch) = (world, world * cfg.data.batch_size);
        let ckpt_root = opts.out.join("checkpoints");
        // A full disk is known now, not at the first checkpoint after hours of training.
        checkpoint::check_space(&ckpt_root, checkpoint::estimate_bytes(&trainer.contents(&pos)))?;
        std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&cfg.to_json())?)
            .with_context(|| format!("{}: cannot write config.json", out.display()))?;
        let metrics =
            MetricsLog::open(&out, resume_dir.as_ref().map(|_| pos.step))?.with_tensorboard(cfg.train.tensorboard)?;
        if rank == 0 {
            checkpoint::recover_interrupted_writes(&ckpt_root);
        }

        let total = last_step(&pos, per_epoch, cfg);
        let (loader, px_loader) = data.loaders(&pos, cfg.data.prefetch, device.is_cuda());
        let progress = Progress::new(total, pos.step, opts.quiet || rank > 0);
        let fresh = resume_dir.is_none();
        let mut run = Run {
            cfg,
            opts,
            out,
            dist,
            device,
            trainer,
            start_step: pos.step,
            pos,
            data,
            loader,
            px_loader,
            per_epoch,
            total,
            ckpt_root,
            metrics,
            progress,
            started: Instant::now(),
            window: (0, Instant::now()),
            images_per_second: 0.0,
            last_logs: Vec::new(),
            last_ckpt: resume_dir.unwrap_or_default(),
            valid_acc: None,
            fid,
        };
        run.progress.say(run.describe());
        if let Some(c) = change {
            run.resharded(&c)?;
        }
        if fresh && cfg.guard.enabled {
            // Something to roll back to before the first periodic checkpoint.
            run.save(&format!("step-{:08}", run.pos.step))?;
        }
        Ok(run)
    }

    /// The loop: one [`Trainer::step`] per batch until the last step, a stop signal, or a
    /// divergence the guard gives up on.
    pub fn until_done(mut self) -> crate::Result<Summary> {
        let mut interrupted = false;
        while self.pos.step < self.total {
            if self.stop_requested()? {
                self.checkpoint()?;
                interrupted = true;
                break;
            }
            let (batch, px_batch) = self.next_batch();
            let lr = learning_rate(&self.cfg.optim, self.pos.step, self.pos.epoch) * self.pos.lr_scale;
            let on_device = |t: &Tensor| crate::device::to_device_async(t, self.device);
            let (x, y, x_px) =
                (on_device(&batch.x), batch.y.as_ref().map(on_device), px_batch.map(|b| on_device(&b.x)));
            let step = self.trainer.step(&Inputs { x: &x, y: y.as_ref(), x_px: x_px.as_ref() }, lr);
            if let Some(d) = &self.dist {
                d.check()?;
            }
            match step {
                Step::Diverged { reason, lookback } => self.rollback(reason, lookback)?,
                Step::Taken { terms, grad_norm } => {
                    let epoch_end = self.advance();
                    self.log(&terms, lr, grad_norm)?;
                    self.sample_grids(&terms)?;
                    if let Some(f) = &mut self.fid {
                        f.at_step(&self.trainer, self.cfg, &self.pos, self.total, &self.metrics, &self.progress)?;
                    }
                    if epoch_end {
                        self.end_of_epoch()?;
                    }
                    let periodic =
                        self.cfg.train.ckpt_every > 0 && self.pos.step.is_multiple_of(self.cfg.train.ckpt_every);
                    if periodic || epoch_end || self.pos.step == self.total {
                        self.checkpoint()?;
                        prune(&self.ckpt_root, self.cfg.train.keep_checkpoints.max(1));
                    }
                }
            }
        }
        self.finish(interrupted)
    }

    /// A stop signal, or the end of the time budget (`train.max_seconds`), on any rank: every
    /// rank stops at the same step.
    fn stop_requested(&self) -> crate::Result<bool> {
        let budget = self.cfg.train.max_seconds;
        let here = self.opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || (budget > 0.0 && self.started.elapsed().as_secs_f64() >= budget);
        match &self.dist {
            Some(d) => d.any(here),
            None => Ok(here),
        }
    }

    /// Writes checkpoint `name` of the current position (once, in a data-parallel run).
    fn save(&self, name: &str) -> crate::Result<PathBuf> {
        match &self.dist {
            Some(d) => d.save(&self.trainer, &self.ckpt_root, name, &self.pos),
            None => self.trainer.save(&self.ckpt_root, name, &self.pos),
        }
    }

    /// The next batch (and the p(x) term's own batch, if it has one), with libtorch's generator
    /// reseeded for this step.
    fn next_batch(&mut self) -> (Batch, Option<Batch>) {
        // Each rank's own stream (its chains and restarts differ); one process: as before.
        let seed = match &self.dist {
            Some(d) if d.world() > 1 => mix_seed(&[self.cfg.train.seed, 1, self.pos.step, d.rank() as u64]),
            _ => mix_seed(&[self.cfg.train.seed, 1, self.pos.step]),
        };
        tch::manual_seed(seed as i64 & i64::MAX);
        let batch = self.loader.next_batch();
        debug_assert_eq!((batch.epoch, batch.index), (self.pos.epoch, self.pos.index));
        (batch, self.px_loader.as_mut().map(Loader::next_batch))
    }

    /// Moves the position past a taken step; true at the end of an epoch.
    fn advance(&mut self) -> bool {
        let p = &mut self.pos;
        p.step += 1;
        p.optimizer_steps = self.trainer.opt.t;
        p.index += 1;
        let epoch_end = p.index == self.per_epoch;
        if epoch_end {
            p.epoch += 1;
            p.index = 0;
        }
        self.window.0 += 1;
        self.progress.set_position(p.step);
        epoch_end
    }

    /// At log steps: one line of metrics.jsonl with every term (one host read) and the bar's text.
    fn log(&mut self, terms: &Terms, lr: f64, grad_norm: f64) -> crate::Result<()> {
        let step = self.pos.step;
        if !step.is_multiple_of(self.cfg.train.log_every) && step != self.total {
            return Ok(());
        }
        let stacked = Tensor::stack(&terms.logs.iter().map(|(_, t)| t.to_kind(Kind::Float)).collect::<Vec<_>>(), 0);
        let values: Vec<f64> = Vec::try_from(&stacked.to_kind(Kind::Double)).expect("log values");
        let (steps, since) = self.window;
        self.images_per_second = (steps * self.cfg.data.batch_size as u64) as f64 / since.elapsed().as_secs_f64();
        self.window = (0, Instant::now());
        self.last_logs = terms.logs.iter().map(|(n, _)| n.to_string()).zip(values).collect();
        let mut rec = json!({"step": step, "epoch": self.pos.epoch, "lr": lr, "grad_norm": grad_norm,
                             "img_per_s": self.images_per_second, "time": self.started.elapsed().as_secs_f64()});
        for (n, v) in &self.last_logs {
            rec[n.as_str()] = json!(v);
        }
        self.metrics.write(&rec)?;
        self.progress.show(&self.last_logs, self.images_per_second);
        Ok(())
    }

    /// Every `sample_every` steps: the step's samples (and per-class buffer rows) as PNG grids.
    fn sample_grids(&self, terms: &Terms) -> crate::Result<()> {
        let every = self.cfg.train.sample_every;
        if every == 0 || !self.pos.step.is_multiple_of(every) {
            return Ok(());
        }
        let dir = self.out.join("samples");
        save_sample_grids(terms.samples.as_ref(), self.trainer.buffer(), &dir, self.pos.step)?;
        self.metrics.sample_grids(&dir, self.pos.step);
        Ok(())
    }

    /// Validation accuracy (a line in metrics.jsonl), and the `best` checkpoint when it improves.
    fn end_of_epoch(&mut self) -> crate::Result<()> {
        self.valid_acc = accuracy(&self.trainer, &self.data.valid, self.cfg, self.device)?;
        let (Some(acc), step, epoch) = (self.valid_acc, self.pos.step, self.pos.epoch) else { return Ok(()) };
        self.metrics.write(&json!({"step": step, "epoch": epoch, "event": "validation", "valid_acc": acc}))?;
        self.progress.say(format!("epoch {epoch} step {step}: validation accuracy {acc:.4}"));
        if self.pos.best_valid_acc.is_none_or(|b| acc > b) {
            self.pos.best_valid_acc = Some(acc);
            self.save("best")?;
        }
        Ok(())
    }

    /// Writes the checkpoint of the current position, `step-NNNNNNNN`.
    fn checkpoint(&mut self) -> crate::Result<()> {
        self.last_ckpt = self.save(&format!("step-{:08}", self.pos.step))?;
        Ok(())
    }

    /// The divergence guard's answer to a diverged step: back to the newest checkpoint from before
    /// the evidence (`lookback` steps: a failing trend started earlier) with a lower learning rate
    /// (and longer chains, a fresh buffer, as configured), marking the newer checkpoints rejected;
    /// or give up, naming that last good checkpoint, which `--resume` of the run folder then takes.
    fn rollback(&mut self, reason: String, lookback: u64) -> crate::Result<()> {
        let g = &self.cfg.guard;
        let (step, epoch, rollbacks) = (self.pos.step, self.pos.epoch, self.pos.rollbacks);
        let target = self.rollback_target(step.saturating_sub(lookback), &reason);
        if guard::gives_up(g, rollbacks) {
            let tried = if g.enabled { format!(" after {rollbacks} rollbacks") } else { String::new() };
            let good = match target {
                Ok(t) => t,
                // No checkpoint before the evidence (the guard is off, so no step-0 one): the state
                // before this step is the best there is.
                Err(_) => self.save(&format!("step-{step:08}"))?,
            };
            bail!(
                "diverged at step {step} (epoch {epoch}): {reason}{tried}; the last good state is {} (newer checkpoints are marked {}) — continue from it with a lower learning rate: ebm train --resume {} --set optim.lr=<lower>",
                good.display(),
                checkpoint::REJECTED,
                self.opts.out.display()
            );
        }
        let steps = self.trainer.negatives.as_ref().map_or(self.cfg.sampler.steps, |n| n.steps);
        let (lr_scale, sgld_steps) = guard::after_rollback(g, self.pos.lr_scale, steps);
        let target = target?;
        self.pos = TrainState { rollbacks: rollbacks + 1, lr_scale, sgld_steps, ..self.trainer.restore(&target)? };
        // A checkpoint from before a change of world size counts its position in its own batches.
        let world = self.dist.as_ref().map_or(1, |d| d.world());
        let change = reshard::carry_over(&mut self.pos, world, self.cfg.data.batch_size, self.per_epoch);
        self.total = last_step(&self.pos, self.per_epoch, self.cfg);
        if let Some(c) = change {
            self.resharded(&c)?;
        }
        self.trainer.set_chain_steps(sgld_steps);
        self.trainer.forget_trend();
        if g.reset_buffer {
            if let Some(n) = &mut self.trainer.negatives {
                n.reset_buffer();
            }
        }
        let p = &self.pos;
        self.metrics.write(&json!({"step": step, "epoch": p.epoch, "event": "rollback", "reason": reason,
                                   "to_step": p.step, "rollbacks": p.rollbacks, "lr_scale": p.lr_scale,
                                   "sgld_steps": p.sgld_steps, "buffer_reset": g.reset_buffer}))?;
        self.progress.say(format!(
            "step {step}: {reason}; rolled back to step {} (rollback {} of {}), learning rate x{}, {} SGLD steps",
            p.step, p.rollbacks, g.max_rollbacks, p.lr_scale, p.sgld_steps
        ));
        (self.loader, self.px_loader) = self.data.loaders(p, self.cfg.data.prefetch, self.device.is_cuda());
        self.progress.set_position(p.step);
        Ok(())
    }

    /// The newest good checkpoint at or before `max_step`, the newer ones marked rejected; in a
    /// data-parallel run rank 0 chooses and marks, and every rank takes its choice.
    fn rollback_target(&self, max_step: u64, reason: &str) -> crate::Result<PathBuf> {
        let Some(d) = &self.dist else { return checkpoint::roll_back_to(&self.ckpt_root, max_step, reason) };
        let mine = match d.rank() {
            0 => checkpoint::roll_back_to(&self.ckpt_root, max_step, reason)
                .and_then(|p| Ok(checkpoint::read_manifest(&p)?.state.step))
                .ok(),
            _ => None,
        };
        let step = d.agree_step(mine)?;
        Ok(self.ckpt_root.join(format!("step-{step:08}")))
    }

    /// Says (rank 0: stderr and metrics.jsonl, `"event": "resharded"`) where a run resumed with
    /// another global batch goes on in the epoch.
    fn resharded(&mut self, c: &reshard::Change) -> crate::Result<()> {
        let (world, global, p) = (self.pos.world_size, self.pos.global_batch, c.to);
        if self.dist.as_ref().is_some_and(|d| d.rank() > 0) {
            return Ok(());
        }
        let buffer = if c.from_world != world { "; the replay buffer is re-sliced between the ranks" } else { "" };
        let repeated = match p.repeated {
            0 => String::new(),
            r => format!(" ({r} examples before that are seen again: {global} does not divide {})", p.examples),
        };
        eprintln!(
            "resuming a checkpoint written by {} process(es) on {world}{buffer}: {} examples into epoch {}, at {} per step, it continues at batch {} of epoch {}{repeated} (the run continues, but not bit for bit as it would have on {})",
            c.from_world, p.examples, c.from_epoch, global, p.index, p.epoch, c.from_world
        );
        self.metrics.write(&json!({"step": self.pos.step, "event": "resharded",
            "from_world_size": c.from_world, "world_size": world,
            "from_global_batch": c.from_global, "global_batch": global,
            "from_epoch": c.from_epoch, "from_index": c.from_index, "examples_into_epoch": p.examples,
            "epoch": p.epoch, "index": p.index, "repeated_examples": p.repeated, "last_step": self.total}))?;
        Ok(())
    }

    /// The run's first line: model, size, device, precision, objective and epoch shape.
    fn describe(&self) -> String {
        let precision = match self.trainer.net.precision {
            Precision::Float32 { channels_last: false } => "",
            Precision::Float32 { channels_last: true } => " (channels-last)",
            Precision::Bf16 { channels_last: true } => " in fast mode (bf16, channels-last)",
            Precision::Bf16 { channels_last: false } => " in fast mode (bf16)",
        };
        let ranks = match &self.dist {
            Some(d) => format!(
                " (rank {} of {}: global batch {} x {})",
                d.rank(),
                d.world(),
                d.world(),
                self.cfg.data.batch_size
            ),
            None => String::new(),
        };
        format!(
            "training {} ({} parameters) on {}{precision} with {}, {} steps of {} per epoch{ranks}",
            self.cfg.model_label(),
            crate::models::count_parameters(&self.trainer.vs),
            crate::device::device_name(self.device),
            self.trainer.objective.name(),
            self.per_epoch,
            self.cfg.data.batch_size
        )
    }

    /// Test accuracy (when a test set is given) and the summary of the run.
    fn finish(self, interrupted: bool) -> crate::Result<Summary> {
        self.progress.finish();
        drop(self.loader);
        drop(self.px_loader);
        let test_acc = match &self.data.test {
            Some(t) => accuracy(&self.trainer, t, self.cfg, self.device)?,
            None => None,
        };
        let p = &self.pos;
        if let Some(acc) = test_acc {
            self.metrics.write(&json!({"step": p.step, "epoch": p.epoch, "event": "test", "test_acc": acc}))?;
        }
        let get = |k: &str| self.last_logs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let secs = self.started.elapsed().as_secs_f64();
        let images_per_second = if p.step > self.start_step {
            ((p.step - self.start_step) * self.cfg.data.batch_size as u64) as f64 / secs
        } else {
            self.images_per_second
        };
        Ok(Summary {
            steps: p.step,
            epochs_completed: p.epoch,
            seconds: secs,
            train_acc: get("acc"),
            valid_acc: self.valid_acc,
            test_acc,
            e_data: get("e_data"),
            e_samples: get("e_samples"),
            images_per_second,
            last_checkpoint: self.last_ckpt.clone(),
            out: self.opts.out.clone(),
            interrupted,
        })
    }
}

/// The step at which the run ends from `pos` (see [`reshard::last_step`]).
fn last_step(pos: &TrainState, per_epoch: u64, cfg: &TrainConfig) -> u64 {
    reshard::last_step(pos.step, pos.epoch, pos.index, per_epoch, cfg.train.epochs, cfg.train.max_steps)
}

/// Accuracy on a held-out set (with the run's data noise, as JEM), for classifier models.
fn accuracy(trainer: &Trainer, ds: &Dataset, cfg: &TrainConfig, device: Device) -> crate::Result<Option<f64>> {
    if !cfg.model.is_conditional() || ds.is_empty() {
        return Ok(None);
    }
    let out = classify::run_model(&trainer.net, ds, 256, device, cfg.data.noise_sigma)?;
    Ok(match (&out.logits, &out.labels) {
        (Some(l), Some(y)) => Some(classify::accuracy_nll(l, y).0),
        _ => None,
    })
}
