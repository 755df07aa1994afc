//! Samplers of the model density p(x) ∝ exp(-E(x)) on the input space (SGLD/ULA, MALA, HMC,
//! independent Metropolis-Hastings, importance sampling with resampling), the replay buffer of
//! persistent chains, and the negative-phase bookkeeping an objective's chains need.
pub mod ais;
pub mod buffer;
pub mod hmc;
pub mod independent;
pub mod init;
pub mod langevin;
pub mod mala;
pub mod mh;
pub mod mlp_langevin;
pub mod negatives;
pub mod rbm_ais;

pub use buffer::ReplayBuffer;
pub use hmc::Hmc;
pub use init::{ChainInit, ClassGaussians};
pub use langevin::Langevin;
pub use mala::Mala;
pub use negatives::{ChainSpace, ChainUse, Negatives};

use crate::config::{SamplerConfig, SamplerKind};
use crate::models::EnergyNet;
use tch::Tensor;

/// The energy a sampler draws from: any function of the chains, or a network's E(x) in
/// evaluation mode (how the trainer and `ebm sample` run the network), which the Langevin sampler
/// runs fused when the network is an MLP energy ([`mlp_langevin`]).
#[derive(Clone, Copy)]
pub enum Energy<'a> {
    Net(&'a EnergyNet),
    Fn(&'a dyn Fn(&Tensor) -> Tensor),
}

/// Samples of a chain sampler and, for the Metropolis-adjusted ones, the mean acceptance rate as
/// a 0-d tensor (read on the host only when it is logged).
pub struct Chains {
    pub x: Tensor,
    pub acceptance: Option<Tensor>,
}

/// A sampler of exp(-E) on the input space: Langevin (SGLD/ULA), MALA, HMC, independent
/// Metropolis-Hastings, importance sampling with resampling.
pub trait Sampler: std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Runs `steps` transitions from `x0`; the samples are detached.
    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> Chains;

    /// [`Sampler::sample`] of an [`Energy`]; samplers with a fused path for a network override it.
    fn sample_energy(&self, energy: Energy<'_>, x0: &Tensor, steps: usize) -> Chains {
        sample_by_autograd(self, energy, x0, steps)
    }

    /// [`Sampler::sample`] with the acceptance rate read on the host (0 without an accept step).
    fn sample_with_rate(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> (Tensor, f64) {
        let c = self.sample(energy, x0, steps);
        (c.x, c.acceptance.map_or(0.0, |a| a.double_value(&[])))
    }
}

/// [`Sampler::sample`] of an [`Energy`], the network's energy as a function of x.
pub fn sample_by_autograd<S: Sampler + ?Sized>(sampler: &S, energy: Energy<'_>, x0: &Tensor, steps: usize) -> Chains {
    match energy {
        Energy::Fn(f) => sampler.sample(f, x0, steps),
        Energy::Net(net) => sampler.sample(&|x: &Tensor| net.energy(x, false), x0, steps),
    }
}

/// The sampler named by `sgld.sampler`; `data_range` is the clamp range of the Langevin forms.
pub fn from_config(c: &SamplerConfig, data_range: (f64, f64)) -> Box<dyn Sampler> {
    match c.kind {
        SamplerKind::Langevin => Box::new(Langevin::from_config(c, data_range)),
        SamplerKind::Mala => Box::new(Mala { step: c.step_size }),
        SamplerKind::Hmc => Box::new(Hmc { step: c.step_size, leapfrog: c.leapfrog }),
        SamplerKind::IndependentMh => Box::new(independent::IndependentMh { q: proposal(c) }),
        SamplerKind::ImportanceResampling => {
            Box::new(independent::ImportanceResampling { q: proposal(c), proposals: c.proposals as i64 })
        }
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

/// The independent proposal N(0, `proposal_std`^2 I) of the independent samplers.
fn proposal(c: &SamplerConfig) -> independent::GaussianProposal {
    independent::GaussianProposal { mean: 0.0, std: c.proposal_std }
}
