//! Model samples for the negative phase: SGLD chains started from the replay buffer (or from
//! fresh noise when the buffer is off). Buffer writes are held until the trainer commits them,
//! so a step whose loss turns out non-finite leaves the buffer as it was.
use crate::models::EnergyNet;
use crate::sampling::buffer::{uniform, ReplayBuffer};
use crate::sampling::Langevin;
use tch::{Device, Tensor};

pub struct Negatives {
    pub sampler: Langevin,
    pub buffer: Option<ReplayBuffer>,
    /// Shape of one example.
    pub shape: Vec<i64>,
    pub init_range: f64,
    pub device: Device,
    pending: Vec<(Tensor, Tensor)>,
}

impl Negatives {
    pub fn new(
        sampler: Langevin,
        buffer: Option<ReplayBuffer>,
        shape: Vec<i64>,
        init_range: f64,
        device: Device,
    ) -> Self {
        Negatives { sampler, buffer, shape, init_range, device, pending: Vec::new() }
    }

    /// `n` samples of p(x) (or of p(x|y) with E(x|y) = -f(x)[y] when `y` is given), after the
    /// configured number of SGLD steps. The network is run in evaluation mode (as JEM does).
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
            None => self.sampler.run(&|x: &Tensor| net.energy(x, false), &x0, self.sampler.steps),
            Some(y) => self.sampler.run(&|x: &Tensor| net.conditional_energy(x, y, false), &x0, self.sampler.steps),
        };
        if let Some(slots) = slots {
            self.pending.push((slots, x.shallow_clone()));
        }
        x
    }

    /// Samples after the configured SGLD steps started at `x0` (CD-k's chains start at the data).
    pub fn sample_from(&mut self, net: &EnergyNet, x0: &Tensor) -> Tensor {
        self.sampler.run(&|x: &Tensor| net.energy(x, false), x0, self.sampler.steps)
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
    }
}
