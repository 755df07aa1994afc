//! Model samples for the negative phase: chains of the configured sampler (SGLD, MALA, HMC)
//! started from the replay buffer (or from fresh noise when the buffer is off). Buffer writes are held until the trainer commits them,
//! so a step whose loss turns out non-finite leaves the buffer as it was.
use crate::models::EnergyNet;
use crate::sampling::buffer::{uniform, ReplayBuffer};
use crate::sampling::Sampler;
use tch::{Device, Tensor};

pub struct Negatives {
    pub sampler: Box<dyn Sampler>,
    /// Transitions per draw (the guard may raise it).
    pub steps: usize,
    pub buffer: Option<ReplayBuffer>,
    /// Shape of one example.
    pub shape: Vec<i64>,
    pub init_range: f64,
    pub device: Device,
    pending: Vec<(Tensor, Tensor)>,
    /// Acceptance rates of this step's draws (MALA, HMC).
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
        Negatives { sampler, steps, buffer, shape, init_range, device, pending: Vec::new(), acceptance: Vec::new() }
    }

    /// Runs the sampler for the configured number of steps, keeping its acceptance rate.
    fn run(&mut self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor) -> Tensor {
        let c = self.sampler.sample(energy, x0, self.steps);
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

    /// `n` samples of p(x) (or of p(x|y) with E(x|y) = -f(x)[y] when `y` is given), after the
    /// configured number of sampler steps. The network is run in evaluation mode (as JEM does).
    pub fn sample(&mut self, net: &EnergyNet, n: i64, y: Option<&Tensor>) -> Tensor {
        let (x0, slots) = match &self.buffer {
            Some(b) => {
                let d = b.draw(n, y);
                (d.x, Some(d.slots))
            }
            None => {
                let mut dims = vec![n];
                dims.extend_from_slice(&self.shape);
                (uniform(&dims, self.init_range, self.device), None)
            }
        };
        let x = match y {
            None => self.run(&|x: &Tensor| net.energy(x, false), &x0),
            Some(y) => self.run(&|x: &Tensor| net.conditional_energy(x, y, false), &x0),
        };
        if let Some(slots) = slots {
            self.pending.push((slots, x.shallow_clone()));
        }
        x
    }

    /// Samples after the configured sampler steps started at `x0` (CD-k's chains start at the data).
    pub fn sample_from(&mut self, net: &EnergyNet, x0: &Tensor) -> Tensor {
        self.run(&|x: &Tensor| net.energy(x, false), x0)
    }

    /// Writes the chains of this step back to the buffer.
    pub fn commit(&mut self) {
        if let Some(b) = &mut self.buffer {
            for (slots, x) in self.pending.drain(..) {
                b.store(&slots, &x);
            }
        }
        self.pending.clear();
    }

    /// Forgets this step's chains (the step is being discarded).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.acceptance.clear();
    }
}
