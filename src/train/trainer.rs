//! One training step, and the state it acts on (built in one place, [`Trainer::new`]):
//!
//!   negatives x- ~ p_theta (the objective's chains) -> loss L(theta) -> backward -> [reduce the
//!   gradients across processes] -> guard -> clip -> optimiser update -> commit the chains.
//!
//! `ebm train` runs this step in its loop ([`super::run`]) and `ebm bench` times this same step.
use super::checkpoint::{self, Contents, TrainState};
use super::guard::{self, Probe};
use super::optim::Optimizer;
use crate::config::TrainConfig;
use crate::models::{EnergyNet, Precision};
use crate::objectives::{self, Objective, Terms};
use crate::sampling::{ChainSpace, Negatives};
use anyhow::bail;
use std::path::Path;
use tch::{nn::VarStore, Device, Tensor};

/// Combines the gradients of several processes before the update (data-parallel training
/// averages them by all-reduce); a single-process run has none.
pub trait GradientReducer {
    /// Replaces each parameter's `.grad()` by the combined gradient, in place (parameters by
    /// name, in name order: the same order in every process).
    fn reduce(&mut self, params: &[(String, Tensor)]);
}

/// The outcome of [`Trainer::step`].
pub enum Step {
    /// The update was taken: the step's loss terms and its global gradient norm (before clipping).
    Taken { terms: Terms, grad_norm: f64 },
    /// The guard found the step diverged (the reason); weights, optimiser and chains are as before it.
    Diverged(String),
}

/// The network, its objective, the optimiser and the objective's chains.
pub struct Trainer {
    pub vs: VarStore,
    pub net: EnergyNet,
    pub objective: Box<dyn Objective>,
    pub opt: Optimizer,
    /// The chains of the objective's [`crate::sampling::ChainUse`] (None: it draws none).
    pub negatives: Option<Negatives>,
    cfg: TrainConfig,
    reducer: Option<Box<dyn GradientReducer>>,
}

impl Trainer {
    /// Builds the state of `cfg` on `device` from libtorch's current random state: the network
    /// (in the fast mode when `train.fast` resolves on), the objective (which may register
    /// variables of its own), the optimiser over every trainable variable, then the chains the
    /// objective declares, with fresh chains in [-range, range].
    pub fn new(cfg: &TrainConfig, device: Device, range: f64) -> crate::Result<Self> {
        let vs = VarStore::new(device);
        let precision = Precision::for_fast(cfg.train.fast.resolve(device), device);
        let net = EnergyNet::new(&vs.root(), &cfg.model).with_precision(precision);
        // The objective's own parameters (if any) exist before the optimiser collects them.
        let objective = objectives::build(cfg, &vs.root())?;
        let opt = Optimizer::new(&vs, &cfg.optim);
        let classes = cfg.model.is_conditional().then_some(cfg.model.num_classes as i64);
        let space = ChainSpace { shape: net.input_shape(), range, classes, device };
        let negatives = Negatives::for_use(objective.chain_use(), &cfg.sampler, &cfg.buffer, &space);
        Ok(Trainer { vs, net, objective, opt, negatives, cfg: cfg.clone(), reducer: None })
    }

    /// Sets what combines gradients across processes (none: this process's own).
    pub fn set_gradient_reducer(&mut self, reducer: Box<dyn GradientReducer>) {
        self.reducer = Some(reducer);
    }

    /// One training step on the batch `x` (labels `y`) at learning rate `lr`. One host read: the
    /// guard's five values, before the update.
    pub fn step(&mut self, x: &Tensor, y: Option<&Tensor>, lr: f64) -> Step {
        let terms = self.objective.loss(&self.net, x, y, self.negatives.as_mut());
        self.opt.zero_grad();
        terms.loss.backward();
        if let Some(r) = &mut self.reducer {
            r.reduce(self.opt.parameters());
        }
        let grad_norm = self.opt.grad_norm();
        let probe = Probe::read(&terms, &grad_norm);
        if let Some(reason) = guard::divergence(&probe, &self.cfg.guard) {
            if let Some(n) = &mut self.negatives {
                n.discard();
            }
            return Step::Diverged(reason);
        }
        if self.cfg.optim.clip_grad_norm > 0.0 {
            self.opt.clip_grad_norm(&grad_norm, self.cfg.optim.clip_grad_norm);
        }
        self.opt.step(lr);
        if let Some(n) = &mut self.negatives {
            n.commit();
        }
        self.objective.commit();
        Step::Taken { terms, grad_norm: probe.grad_norm }
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
            state,
            config: &self.cfg,
        }
    }

    /// Writes checkpoint `name` under `root` (see [`checkpoint::save`]).
    pub fn save(&self, root: &Path, name: &str, state: &TrainState) -> crate::Result<std::path::PathBuf> {
        checkpoint::save(root, name, &self.contents(state))
    }

    /// Loads weights, optimiser moments, buffer and chain length from checkpoint `dir`; returns
    /// the position it holds.
    pub fn restore(&mut self, dir: &Path) -> crate::Result<TrainState> {
        let manifest = checkpoint::read_manifest(dir)?;
        checkpoint::load_weights(&mut self.vs, dir)?;
        self.opt.load(&dir.join(checkpoint::OPTIM_FILE), manifest.state.optimizer_steps)?;
        let buffer = self.negatives.as_mut().and_then(|n| n.buffer.as_mut());
        if let (Some(b), Some(saved)) = (buffer, checkpoint::load_buffer(dir)?) {
            if saved.size() != b.data.size() {
                bail!("{}: buffer of shape {:?}, the config needs {:?}", dir.display(), saved.size(), b.data.size());
            }
            tch::no_grad(|| b.data.copy_(&saved));
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
        let Step::Taken { grad_norm, .. } = t.step(&x, None, 0.1) else { panic!("diverged") };
        assert_eq!(seen.get(), t.opt.parameters().len());
        assert_eq!(grad_norm, 0.0);
        assert!(before.iter().zip(weights(&t)).all(|(a, b)| a.equal(&b)));
        t.set_gradient_reducer(Box::new(Scale { factor: 1.0, seen }));
        let Step::Taken { grad_norm, .. } = t.step(&x, None, 0.1) else { panic!("diverged") };
        assert!(grad_norm > 0.0);
        assert!(before.iter().zip(weights(&t)).any(|(a, b)| !a.equal(&b)));
    }
}
