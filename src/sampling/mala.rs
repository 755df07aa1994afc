//! The Metropolis-adjusted Langevin algorithm: a Langevin proposal
//! x' = x - (eps^2 / 2) grad E(x) + eps z, accepted per chain with probability
//! min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x))), where
//! log q(a | b) = -|a - b + (eps^2 / 2) grad E(b)|^2 / (2 eps^2) + const. Exact for exp(-E).
use super::energy_grad;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Mala {
    pub step: f64,
}

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

impl super::Sampler for Mala {
    fn name(&self) -> &'static str {
        "mala"
    }

    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> super::Chains {
        let eps = self.step.sqrt();
        let h = self.step / 2.0;
        let mut x = x0.detach();
        let (mut e, mut g) = energy_grad(energy, &x);
        let mut accepted = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
        for _ in 0..steps {
            let prop = (&x - &g * h + x.randn_like() * eps).detach();
            let (e_p, g_p) = energy_grad(energy, &prop);
            let log_alpha = log_acceptance(&x, &e, &g, &prop, &e_p, &g_p, self.step);
            let accept = Tensor::rand_like(&log_alpha).log().lt_tensor(&log_alpha);
            let m = chain_mask(&accept, &x);
            x = prop.where_self(&m, &x);
            g = g_p.where_self(&m, &g);
            e = e_p.where_self(&accept, &e);
            accepted += accept.to_kind(Kind::Float);
        }
        super::Chains { x, acceptance: acceptance_rate(&accepted, steps) }
    }
}
