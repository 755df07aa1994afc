//! One training step, and the state it acts on (built in one place, [`Trainer::new`]):
//!
//!   negatives x- ~ p_theta (the objective's chains) -> loss L(theta) -> backward -> [reduce the
//!   gradients across processes] -> guard -> [SAM: the loss and gradient again at the perturbed
//!   weights, same negatives] -> clip -> optimiser update -> [weight average] -> commit the chains.
//!
//! `ebm train` runs this step in its loop ([`super::run`]) and `ebm bench` times this same step.
use super::checkpoint::{self, Contents, TrainState};
use super::ema::Ema;
use super::guard::{self, Probe};
use super::optim::Optimizer;
use super::sam;
use crate::config::TrainConfig;
use crate::models::{EnergyNet, Precision};
use crate::objectives::{self, Inputs, Objective, Terms};
use crate::sampling::{ChainInit, ChainSpace, Negatives};
use anyhow::bail;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

/// Combines the gradients of several processes before the update (data-parallel training
/// averages them by all-reduce); a single-process run has none.
pub trait GradientReducer {
    /// Replaces each parameter's `.grad()` by the combined gradient, in place (parameters by
    /// name, in name order: the same order in every process).
    fn reduce(&mut self, params: &[(String, Tensor)]);

    /// Runs the backward pass of `loss` into the parameters' `.grad()`; a reducer may combine
    /// the gradients during it (then its [`GradientReducer::reduce`] has nothing left to do).
    fn backward(&mut self, loss: &Tensor, _params: &[(String, Tensor)]) {
        loss.backward();
    }

    /// Whether any process's step diverged, given this one's verdict: every process must take
    /// the same decision (roll back together). One process: its own verdict.
    fn any_diverged(&mut self, here: bool) -> bool {
        here
    }
}

/// The outcome of [`Trainer::step`].
pub enum Step {
    /// The update was taken: the step's loss terms and its global gradient norm (before clipping).
    Taken { terms: Terms, grad_norm: f64 },
    /// The guard found the step diverged; weights, optimiser and chains are as before it. The
    /// evidence covers the last `lookback` steps too (a failing trend), so the state to go back
    /// to is at least that old.
    Diverged { reason: String, lookback: u64 },
}

/// The network, its objective, the optimiser and the objective's chains.
pub struct Trainer {
    pub vs: VarStore,
    pub net: EnergyNet,
    pub objective: Box<dyn Objective>,
    pub opt: Optimizer,
    /// The chains of the objective's [`crate::sampling::ChainUse`] (None: it draws none).
    pub negatives: Option<Negatives>,
    /// The moving average of the weights (`[ema]`), if kept.
    pub ema: Option<Ema>,
    /// The recent steps the guard's failing-run tests look at.
    trend: guard::Trend,
    cfg: TrainConfig,
    reducer: Option<Box<dyn GradientReducer>>,
    /// This process's (rank, world) in a data-parallel run: its buffer is that slice of the whole
    /// (see [`crate::dist::shard`]). None: one process.
    shard: Option<(usize, usize)>,
}

impl Trainer {
    /// Builds the state of `cfg` on `device` from libtorch's current random state: the network
    /// (in the fast mode when `train.fast` resolves on), the objective (which may register
    /// variables of its own), the optimiser over every trainable variable, then the chains the
    /// objective declares, with fresh chains in [-range, range].
    pub fn new(cfg: &TrainConfig, device: Device, range: f64) -> crate::Result<Self> {
        let vs = VarStore::new(device);
        let precision = Precision::new(cfg.train.fast.resolve(device), cfg.train.channels_last, device);
        let net = EnergyNet::new(&vs.root(), &cfg.model).with_precision(precision);
        // The objective's own parameters (if any) exist before the optimiser collects them.
        let objective = objectives::build(cfg, &vs.root())?;
        let opt = Optimizer::new(&vs, &cfg.optim);
        let classes = cfg.model.is_conditional().then_some(cfg.model.num_classes as i64);
        let space = ChainSpace { shape: net.input_shape(), range, classes, device };
        let negatives = Negatives::for_use(objective.chain_use(), &cfg.sampler, &cfg.buffer, &space);
        let ema = cfg.ema.enabled().then(|| Ema::new(&vs, &cfg.ema));
        let trend = guard::Trend::default();
        Ok(Trainer { vs, net, objective, opt, negatives, ema, trend, cfg: cfg.clone(), reducer: None, shard: None })
    }

    /// Fresh chains (the buffer's fill and restarts, chains without a buffer) come from `init`
    /// from now on; the buffer is refilled from it.
    pub fn set_chain_init(&mut self, init: ChainInit) {
        if let Some(n) = &mut self.negatives {
            n.set_init(init);
        }
    }

    /// Sets what combines gradients across processes (none: this process's own).
    pub fn set_gradient_reducer(&mut self, reducer: Box<dyn GradientReducer>) {
        self.reducer = Some(reducer);
    }

    /// Keeps only rank `rank`'s slice of the replay buffer (of `world`), now and at every restore.
    pub fn set_shard(&mut self, rank: usize, world: usize) -> crate::Result<()> {
        self.shard = Some((rank, world));
        if let Some(b) = self.negatives.as_mut().and_then(|n| n.buffer.as_mut()) {
            b.data = crate::dist::shard::slice(&b.data, rank, world, b.classes.unwrap_or(1))?;
        }
        Ok(())
    }

    /// One training step on `batch` at learning rate `lr`. One host read: the guard's five
    /// values, before the update.
    pub fn step(&mut self, batch: &Inputs, lr: f64) -> Step {
        let terms = self.objective.loss(&self.net, batch, self.negatives.as_mut());
        self.backward(&terms.loss);
        let grad_norm = self.opt.grad_norm();
        let probe = Probe::read(&terms, &grad_norm);
        self.trend.push(&probe, &self.cfg.guard);
        let classes = self.cfg.model.is_conditional().then_some(self.cfg.model.num_classes);
        let failing = || self.trend.failing(&self.cfg.guard, classes).map(|r| (r, self.cfg.guard.window as u64));
        let mut verdict = guard::divergence(&probe, &self.cfg.guard).map(|r| (r, 0)).or_else(failing);
        let here = verdict.is_some();
        if self.reducer.as_mut().is_some_and(|r| r.any_diverged(here)) && !here {
            verdict = Some(("another process's step diverged".into(), self.cfg.guard.window as u64));
        }
        if let Some((reason, lookback)) = verdict {
            if let Some(n) = &mut self.negatives {
                n.discard();
            }
            return Step::Diverged { reason, lookback };
        }
        let sam = self.cfg.optim.sam_rho > 0.0;
        if sam {
            self.sharpness_aware(batch);
        }
        if self.cfg.optim.clip_grad_norm > 0.0 {
            let norm = if sam { self.opt.grad_norm() } else { grad_norm };
            self.opt.clip_grad_norm(&norm, self.cfg.optim.clip_grad_norm);
        }
        self.opt.step(lr);
        if let Some(e) = &mut self.ema {
            e.update(self.opt.t - 1);
        }
        if let Some(n) = &mut self.negatives {
            n.commit();
        }
        self.objective.commit();
        Step::Taken { terms, grad_norm: probe.grad_norm }
    }

    /// Gradients of `loss` in `.grad()`, combined across processes when a reducer is set.
    fn backward(&mut self, loss: &Tensor) {
        self.opt.zero_grad();
        match &mut self.reducer {
            Some(r) => {
                r.backward(loss, self.opt.parameters());
                r.reduce(self.opt.parameters());
            }
            None => loss.backward(),
        }
    }

    /// SAM's second pass ([`sam`]): the loss at w + e(w) on the same batch and the same negatives
    /// (replayed, not resampled); its gradient replaces the first; the weights go back to w and the
    /// running statistics (every untrainable variable) to what the first pass left.
    fn sharpness_aware(&mut self, batch: &Inputs) {
        let adaptive = self.cfg.optim.sam_is_adaptive();
        let e = sam::perturb(self.opt.parameters(), self.cfg.optim.sam_rho, adaptive);
        let stats: Vec<(Tensor, Tensor)> = self
            .vs
            .variables()
            .into_values()
            .filter(|t| !t.requires_grad())
            .map(|t| {
                let saved = t.detach().copy();
                (t, saved)
            })
            .collect();
        if let Some(n) = &mut self.negatives {
            n.replay();
        }
        let again = self.objective.loss(&self.net, batch, self.negatives.as_mut());
        self.backward(&again.loss);
        if let Some(n) = &mut self.negatives {
            n.end_replay();
        }
        tch::no_grad(|| {
            for (mut t, saved) in stats {
                t.copy_(&saved);
            }
        });
        sam::unperturb(self.opt.parameters(), &e);
    }

    /// Forgets the guard's memory of recent steps (a rollback restarts with other settings).
    pub fn forget_trend(&mut self) {
        self.trend.clear();
    }

    /// Sampler transitions per draw (the guard may raise it; 0 means the config's).
    pub fn set_chain_steps(&mut self, steps: usize) {
        let steps = if steps > 0 { steps } else { self.cfg.sampler.steps };
        if let Some(n) = &mut self.negatives {
            n.steps = steps;
        }
    }

    /// The replay buffer's chains, if the objective keeps a buffer.
    pub fn buffer(&self) -> Option<&crate::sampling::ReplayBuffer> {
        self.negatives.as_ref().and_then(|n| n.buffer.as_ref())
    }

    /// What a checkpoint of this state at position `state` holds.
    pub fn contents<'a>(&'a self, state: &'a TrainState) -> Contents<'a> {
        Contents {
            vs: &self.vs,
            optimizer: Some(&self.opt),
            buffer: self.buffer().map(|b| &b.data),
            ema: self.ema.as_ref(),
            state,
            config: &self.cfg,
        }
    }

    /// Writes checkpoint `name` under `root` (see [`checkpoint::save`]).
    pub fn save(&self, root: &Path, name: &str, state: &TrainState) -> crate::Result<std::path::PathBuf> {
        self.save_with_buffer(root, name, state, self.buffer().map(|b| &b.data))
    }

    /// [`Trainer::save`] with `buffer` in place of this process's own (the gathered whole of a
    /// data-parallel run).
    pub fn save_with_buffer(
        &self,
        root: &Path,
        name: &str,
        state: &TrainState,
        buffer: Option<&Tensor>,
    ) -> crate::Result<std::path::PathBuf> {
        let (recent_ce, recent_gap) = self.trend.values();
        let world_size = self.shard.map_or(1, |(_, w)| w);
        let state = TrainState { recent_ce, recent_gap, world_size, ..state.clone() };
        checkpoint::save(root, name, &Contents { buffer, ..self.contents(&state) })
    }

    /// Loads weights, optimiser moments, buffer and chain length from checkpoint `dir`; returns
    /// the position it holds.
    pub fn restore(&mut self, dir: &Path) -> crate::Result<TrainState> {
        let manifest = checkpoint::read_manifest(dir)?;
        checkpoint::load_weights(&mut self.vs, dir)?;
        self.trend.restore(&manifest.state.recent_ce, &manifest.state.recent_gap);
        self.opt.load(&dir.join(checkpoint::OPTIM_FILE), manifest.state.optimizer_steps)?;
        let buffer = self.negatives.as_mut().and_then(|n| n.buffer.as_mut());
        if let (Some(b), Some(saved)) = (buffer, checkpoint::load_buffer(dir)?) {
            let saved = match self.shard {
                Some((r, w)) => crate::dist::shard::slice(&saved, r, w, b.classes.unwrap_or(1))?,
                None => saved,
            };
            if saved.size() != b.data.size() {
                bail!("{}: buffer of shape {:?}, the config needs {:?}", dir.display(), saved.size(), b.data.size());
            }
            tch::no_grad(|| b.data.copy_(&saved));
        }
        if let Some(e) = &mut self.ema {
            match checkpoint::has_file(&manifest, checkpoint::EMA_FILE) {
                true => e.load(&dir.join(checkpoint::EMA_FILE))?,
                // Averaging was switched on at this resume: it starts at the restored weights.
                false => e.reset(),
            }
        }
        self.set_chain_steps(manifest.state.sgld_steps);
        Ok(manifest.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use tch::Kind;

    /// Scales every gradient by `factor` and counts the parameters it saw.
    struct Scale {
        factor: f64,
        seen: Rc<Cell<usize>>,
    }

    impl GradientReducer for Scale {
        fn reduce(&mut self, params: &[(String, Tensor)]) {
            self.seen.set(params.len());
            tch::no_grad(|| {
                for g in params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined) {
                    let _ = g.shallow_clone().g_mul_scalar_(self.factor);
                }
            });
        }
    }

    fn weights(t: &Trainer) -> Vec<Tensor> {
        t.opt.parameters().iter().map(|(_, p)| p.detach().copy()).collect()
    }

    /// The reducer sees every trainable parameter between backward and the update: gradients it
    /// zeroes move nothing (SGD without momentum), and the guard reads the reduced gradient norm.
    #[test]
    fn the_gradient_reducer_acts_between_backward_and_the_update() {
        let sets = ["objective.name=\"dsm\"", "optim.name=\"sgd\"", "optim.momentum=0"].map(String::from);
        let cfg = TrainConfig::parse("[model]\npreset = \"mlp-2d\"\nhead = \"energy\"\n", &sets).unwrap();
        tch::manual_seed(0);
        let mut t = Trainer::new(&cfg, Device::Cpu, 1.0).unwrap();
        assert!(t.negatives.is_none(), "denoising score matching draws no chains");
        let x = Tensor::randn([32, 2], (Kind::Float, Device::Cpu));
        let seen = Rc::new(Cell::new(0));
        t.set_gradient_reducer(Box::new(Scale { factor: 0.0, seen: seen.clone() }));
        let before = weights(&t);
        let Step::Taken { grad_norm, .. } = t.step(&Inputs::new(&x, None), 0.1) else { panic!("diverged") };
        assert_eq!(seen.get(), t.opt.parameters().len());
        assert_eq!(grad_norm, 0.0);
        assert!(before.iter().zip(weights(&t)).all(|(a, b)| a.equal(&b)));
        t.set_gradient_reducer(Box::new(Scale { factor: 1.0, seen }));
        let Step::Taken { grad_norm, .. } = t.step(&Inputs::new(&x, None), 0.1) else { panic!("diverged") };
        assert!(grad_norm > 0.0);
        assert!(before.iter().zip(weights(&t)).any(|(a, b)| !a.equal(&b)));
    }
}
