//! Model samples for the negative phase (x- ~ p_theta(x) ∝ exp(-E(x))): chains of the configured
//! sampler (SGLD, MALA, HMC, independent MH, importance resampling) started from the replay buffer,
//! from fresh noise, or from the data batch (CD-k), as the objective declares with [`ChainUse`].
//!
//! Buffer writes are held until the trainer commits the step, so a step that is discarded (the
//! divergence guard) leaves the buffer as it was.
use crate::config::{BufferConfig, SamplerConfig};
use crate::sampling::buffer::ReplayBuffer;
use crate::sampling::init::ChainInit;
use crate::sampling::{Energy, Sampler};
use std::rc::Rc;
use tch::{Device, Tensor};

/// What an objective needs of the model's chains: declared by the objective, built by
/// [`Negatives::for_use`] from the `[sgld]` and `[buffer]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainUse {
    /// No model samples (score matching, NCE, IS-MLE): no sampler, no buffer.
    None,
    /// Chains started at the data batch every step (CD-k): a sampler, no buffer.
    FromData,
    /// Chains continued from the replay buffer (when `buffer.enabled`; otherwise started from
    /// fresh noise every step). With `restarts`, a fraction `buffer.reinit_fraction` of every draw
    /// starts again from noise (JEM, IGEBM); without, chains are never restarted (PCD).
    Persistent { restarts: bool },
}

impl ChainUse {
    /// Whether a replay buffer is kept for this use under `buffer`.
    pub fn keeps_buffer(self, buffer: &BufferConfig) -> bool {
        matches!(self, ChainUse::Persistent { .. }) && buffer.enabled
    }
}

/// Where the shapes and ranges of the chains come from.
#[derive(Debug, Clone)]
pub struct ChainSpace {
    /// Shape of one example.
    pub shape: Vec<i64>,
    /// Fresh chains are U(-range, range); the Langevin forms clamp to it when asked.
    pub range: f64,
    /// Classes of a per-class buffer (None: one shared pool).
    pub classes: Option<i64>,
    pub device: Device,
}

pub struct Negatives {
    pub sampler: Box<dyn Sampler>,
    /// Transitions per draw (the divergence guard may raise it).
    pub steps: usize,
    pub buffer: Option<ReplayBuffer>,
    /// Shape of one example.
    pub shape: Vec<i64>,
    /// Where chains without a buffer start (and the buffer's restarts: see [`Negatives::set_init`]).
    pub init: Rc<ChainInit>,
    pub device: Device,
    pending: Vec<(Tensor, Tensor)>,
    /// Every draw of this step in order, and, while a step is replayed, the draws still to hand
    /// out again (see [`Negatives::replay`]).
    drawn: Vec<Tensor>,
    replaying: Option<std::collections::VecDeque<Tensor>>,
    /// Acceptance rates of this step's draws (MALA, HMC, independent MH).
    acceptance: Vec<Tensor>,
}

impl Negatives {
    pub fn new(
        sampler: Box<dyn Sampler>,
        steps: usize,
        buffer: Option<ReplayBuffer>,
        shape: Vec<i64>,
        init_range: f64,
        device: Device,
    ) -> Self {
        let init = Rc::new(ChainInit::Uniform { range: init_range });
        Negatives {
            sampler,
            steps,
            buffer,
            shape,
            init,
            device,
            pending: Vec::new(),
            acceptance: Vec::new(),
            drawn: Vec::new(),
            replaying: None,
        }
    }

    /// Fresh chains come from `init` from now on; the buffer is refilled from it.
    pub fn set_init(&mut self, init: ChainInit) {
        self.init = Rc::new(init);
        if let Some(b) = &mut self.buffer {
            b.refill(self.init.clone());
        }
    }

    /// Until [`Negatives::end_replay`], every draw returns this step's draws again, in the same
    /// order, without running the sampler (SAM's second pass evaluates the loss at perturbed
    /// weights on the same negatives).
    pub fn replay(&mut self) {
        self.replaying = Some(self.drawn.iter().map(Tensor::shallow_clone).collect());
    }

    pub fn end_replay(&mut self) {
        self.replaying = None;
    }

    /// The recorded draw, when replaying.
    fn replayed(&mut self) -> Option<Tensor> {
        let q = self.replaying.as_mut()?;
        Some(q.pop_front().expect("a replayed step draws what it drew the first time"))
    }

    /// The chains an objective declared it uses, with the configured sampler and buffer; `None`
    /// for objectives that draw no model samples.
    pub fn for_use(use_: ChainUse, sampler: &SamplerConfig, buffer: &BufferConfig, space: &ChainSpace) -> Option<Self> {
        let restart_fraction = match use_ {
            ChainUse::None => return None,
            ChainUse::Persistent { restarts: true } => buffer.reinit_fraction,
            ChainUse::FromData | ChainUse::Persistent { restarts: false } => 0.0,
        };
        let kept = use_.keeps_buffer(buffer).then(|| {
            let classes = if buffer.per_class { space.classes } else { None };
            let size = buffer.size as i64;
            ReplayBuffer::new(size, &space.shape, restart_fraction, classes, space.range, space.device)
        });
        let s = super::from_config(sampler, (-space.range, space.range));
        Some(Negatives::new(s, sampler.steps, kept, space.shape.clone(), space.range, space.device))
    }

    /// Runs the sampler for the configured number of steps, keeping its acceptance rate.
    fn run(&mut self, energy: Energy<'_>, x0: &Tensor) -> Tensor {
        let c = self.sampler.sample_energy(energy, x0, self.steps);
        self.acceptance.extend(c.acceptance);
        c.x
    }

    /// The mean acceptance rate of the draws since the last call (0-d tensor), for samplers with
    /// an accept/reject step.
    pub fn take_acceptance(&mut self) -> Option<Tensor> {
        if self.acceptance.is_empty() {
            return None;
        }
        let rates = Tensor::stack(&std::mem::take(&mut self.acceptance), 0);
        Some(rates.mean(rates.kind()))
    }

    /// `n` samples of p(x) (or of p(x|y) with E(x|y) = -f(x)[y] when `energy` is conditional),
    /// after the configured number of sampler steps, started from the buffer (slots of class `y`
    /// with a per-class buffer) or from fresh noise.
    pub fn sample(&mut self, energy: Energy<'_>, n: i64, y: Option<&Tensor>) -> Tensor {
        if let Some(x) = self.replayed() {
            return x;
        }
        let (x0, slots) = match &self.buffer {
            Some(b) => {
                let d = b.draw(n, y);
                (d.x, Some(d.slots))
            }
            None => {
                let mut dims = vec![n];
                dims.extend_from_slice(&self.shape);
                (self.init.sample(&dims, y, self.device), None)
            }
        };
        let x = self.run(energy, &x0);
        if let Some(slots) = slots {
            self.pending.push((slots, x.shallow_clone()));
        }
        self.drawn.push(x.shallow_clone());
        x
    }

    /// Samples after the configured sampler steps started at `x0` (CD-k's chains start at the data).
    pub fn sample_from(&mut self, energy: Energy<'_>, x0: &Tensor) -> Tensor {
        if let Some(x) = self.replayed() {
            return x;
        }
        let x = self.run(energy, x0);
        self.drawn.push(x.shallow_clone());
        x
    }

    /// Writes the chains of this step back to the buffer.
    pub fn commit(&mut self) {
        if let Some(b) = &mut self.buffer {
            for (slots, x) in self.pending.drain(..) {
                b.store(&slots, &x);
            }
        }
        self.pending.clear();
        self.drawn.clear();
    }

    /// Forgets this step's chains (the step is being discarded).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.acceptance.clear();
        self.drawn.clear();
        self.replaying = None;
    }

    /// Restarts every chain of the buffer from the fresh-chain distribution (the guard's
    /// `reset_buffer`).
    pub fn reset_buffer(&mut self) {
        if let Some(b) = &mut self.buffer {
            b.reset();
        }
    }
}
