//! Metropolis-Hastings helpers shared by MALA, HMC, independent MH and AIS. A move x -> x' drawn
//! from q(x' | x) is accepted with probability min(1, exp(log alpha)),
//!   log alpha = U(x) - U(x') + log q(x | x') - log q(x' | x)
//! for the potential U (= E, or a bridge of it), so p ∝ exp(-U) is left invariant; with uniform
//! u ~ U(0, 1) the move is taken when log u < log alpha. Here: the per-example squared norm, MALA's
//! log alpha, the broadcast of a per-chain accept mask, and the mean acceptance rate.
use tch::{Kind, Tensor};

/// Per-example squared norm over all but the first dimension.
pub fn sq_norm(t: &Tensor) -> Tensor {
    t.flatten(1, -1).square().sum_dim_intlist([1].as_slice(), false, Kind::Float)
}

/// log of MALA's acceptance ratio for a move x -> x' under the potential U with proposal variance
/// `step`: U(x) - U(x') + log q(x | x') - log q(x' | x), q(a | b) = N(a; b - (step/2) grad U(b), step I).
pub fn log_acceptance(
    x: &Tensor,
    u: &Tensor,
    gu: &Tensor,
    prop: &Tensor,
    u_p: &Tensor,
    gu_p: &Tensor,
    step: f64,
) -> Tensor {
    let h = step / 2.0;
    let log_q_fwd = -sq_norm(&(prop - x + gu * h)) / (2.0 * step);
    let log_q_back = -sq_norm(&(x - prop + gu_p * h)) / (2.0 * step);
    u - u_p + log_q_back - log_q_fwd
}

/// Broadcasts a per-chain mask [B] over the shape of `like`.
pub fn chain_mask(mask: &Tensor, like: &Tensor) -> Tensor {
    let mut shape = vec![like.size()[0]];
    shape.extend(std::iter::repeat_n(1, like.dim() - 1));
    mask.view(shape.as_slice())
}

/// The mean acceptance per step of `accepted` (per-chain counts over `steps` steps), on the device.
pub fn acceptance_rate(accepted: &Tensor, steps: usize) -> Option<Tensor> {
    (steps > 0).then(|| accepted.mean(Kind::Float) / steps as f64)
}
