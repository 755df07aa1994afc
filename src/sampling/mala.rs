//! The Metropolis-adjusted Langevin algorithm: a Langevin proposal
//! x' = x - (eps^2 / 2) grad E(x) + eps z, accepted per chain with probability
//! min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x))), where
//! log q(a | b) = -|a - b + (eps^2 / 2) grad E(b)|^2 / (2 eps^2) + const. Exact for exp(-E).
use super::energy_grad;
use super::mh::{acceptance_rate, chain_mask, log_acceptance};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Mala {
    pub step: f64,
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
