//! Samplers of the model density p(x) ∝ exp(-E(x)) on the input space (SGLD/ULA, MALA, HMC,
//! independent Metropolis-Hastings, importance sampling with resampling), and the replay buffer of
//! persistent chains.
pub mod buffer;
pub mod hmc;
pub mod independent;
pub mod langevin;
pub mod mala;

pub use buffer::ReplayBuffer;
pub use hmc::Hmc;
pub use langevin::Langevin;
pub use mala::Mala;

use tch::Tensor;

/// The gradient of sum_i E(x_i) with respect to x only: parameters are not touched and no graph
/// is kept (autograd.grad semantics of `run_backward`).
pub fn energy_grad(energy: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> (Tensor, Tensor) {
    let x = x.detach().set_requires_grad(true);
    let e = energy(&x);
    let g = Tensor::run_backward(&[e.sum(e.kind())], &[&x], false, false).pop().expect("one gradient");
    (e.detach(), g)
}
