//! Samplers of the model density p(x) ∝ exp(-E(x)) on the input space (SGLD/ULA, MALA, HMC,
//! independent Metropolis-Hastings, importance sampling with resampling), and the replay buffer of
//! persistent chains.
pub mod ais;
pub mod buffer;
pub mod hmc;
pub mod independent;
pub mod langevin;
pub mod mala;

pub use buffer::ReplayBuffer;
pub use hmc::Hmc;
pub use langevin::Langevin;
pub use mala::Mala;

use crate::config::{SamplerKind, SgldConfig};
use tch::Tensor;

/// Samples of a chain sampler and, for the Metropolis-adjusted ones, the mean acceptance rate as
/// a 0-d tensor (read on the host only when it is logged).
pub struct Chains {
    pub x: Tensor,
    pub acceptance: Option<Tensor>,
}

/// A Markov chain on the input space targeting exp(-E): Langevin (SGLD/ULA), MALA or HMC.
pub trait Sampler: std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Runs `steps` transitions from `x0`; the samples are detached.
    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> Chains;
}

/// The sampler named by `sgld.sampler`; `data_range` is the clamp range of the Langevin forms.
pub fn from_config(c: &SgldConfig, data_range: (f64, f64)) -> Box<dyn Sampler> {
    match c.sampler {
        SamplerKind::Langevin => Box::new(Langevin::from_config(c, data_range)),
        SamplerKind::Mala => Box::new(Mala { step: c.step_size }),
        SamplerKind::Hmc => Box::new(Hmc { step: c.step_size, leapfrog: c.leapfrog }),
    }
}

/// The gradient of sum_i E(x_i) with respect to x only: parameters are not touched and no graph
/// is kept (autograd.grad semantics of `run_backward`).
pub fn energy_grad(energy: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> (Tensor, Tensor) {
    let x = x.detach().set_requires_grad(true);
    let e = energy(&x);
    let g = Tensor::run_backward(&[e.sum(e.kind())], &[&x], false, false).pop().expect("one gradient");
    (e.detach(), g)
}
