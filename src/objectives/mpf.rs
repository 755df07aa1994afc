//! Minimum probability flow (Sohl-Dickstein, Battaglino & DeWeese 2011; the lecture slide "KL
//! Divergence Tricks": minimise d/dt KL(p_t || p_theta) at t = 0) for continuous data.
//!
//! Dynamics whose equilibrium is p_theta move probability from x to x' at the rate
//! g(x'|x) exp((E(x) - E(x')) / 2), for a symmetric connectivity g; MPF minimises the initial flow
//! out of the data,
//!   K(theta) = E_{x ~ data} E_{x' ~ g(.|x)} exp((E(x) - E(x')) / 2),
//! here with the Gaussian connectivity g(x'|x) = N(x'; x, sigma^2 I), `objective.mpf_sigma`, one
//! neighbour per example (the paper's sampled-connectivity form for continuous states). Z cancels
//! in the difference. Consistency: when p_data = p_theta = exp(-E)/Z, the gradient
//!   E[g(x'|x) exp(-(E(x) + E(x'))/2) (dE(x) - dE(x'))] / (2Z)
//! integrates an antisymmetric function of (x, x') against a symmetric weight, so it is zero: the
//! true model is a stationary point. sigma sets the reach: small sigma probes the density locally
//! (the flow tends to score matching), large sigma compares distant points (mass between modes).
use super::{Inputs, Objective, Registration, Terms};
use crate::models::EnergyNet;
use crate::sampling::Negatives;
use tch::{Kind, Tensor};

/// MPF with Gaussian connectivity of std `objective.mpf_sigma`.
pub const REGISTRATION: Registration = Registration {
    name: "mpf",
    summary: "minimum probability flow (Sohl-Dickstein et al. 2011) with Gaussian connectivity of std mpf_sigma",
    check: super::no_check,
    build: |cfg, _| Box::new(Mpf { sigma: cfg.objective.mpf_sigma }),
};

pub struct Mpf {
    pub sigma: f64,
}

impl Mpf {
    /// Per-example exp((E(x) - E(x')) / 2) for one neighbour x' of each x, and E(x).
    pub fn flow(&self, net: &EnergyNet, x: &Tensor) -> (Tensor, Tensor) {
        let b = x.size()[0];
        let neighbour = x + x.randn_like() * self.sigma;
        let e = net.energy(&Tensor::cat(&[x.shallow_clone(), neighbour], 0), true);
        let (e_x, e_n) = (e.narrow(0, 0, b), e.narrow(0, b, b));
        (((&e_x - e_n) * 0.5).exp(), e_x)
    }
}

impl Objective for Mpf {
    fn name(&self) -> &'static str {
        "mpf"
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let (flow, e) = self.flow(net, batch.x);
        let loss = flow.mean(Kind::Float);
        let logs = vec![("e_data", e.mean(Kind::Float).detach()), ("loss", loss.detach())];
        Terms { loss, logs, samples: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use tch::{nn, Device};

    /// With a quadratic energy E = |x|^2 / (2 s^2) (an N(0, s^2 I) model) and data from N(0, t^2 I),
    /// K has the closed form E exp((|x|^2 - |x + sigma eps|^2) / (4 s^2)), a Gaussian integral;
    /// the objective's Monte-Carlo estimate matches it, and K's minimum over s lies at the truth
    /// s = t (the consistency of MPF), not at the neighbouring scales.
    #[test]
    fn flow_matches_the_gaussian_closed_form_and_is_minimal_at_the_truth() {
        tch::manual_seed(5);
        let (d, t, sigma) = (2i64, 1.0f64, 0.5f64);
        let x = Tensor::randn([400_000, d], (Kind::Double, Device::Cpu)) * t;
        // exp(-(2 sigma x.eps + sigma^2 |eps|^2) / (4 s^2)): per dimension, with a = 1 / (4 s^2),
        // E over x ~ N(0, t^2), eps ~ N(0, 1) of exp(-a (2 sigma x eps + sigma^2 eps^2))
        // = (1 + 2 a sigma^2 - 4 a^2 sigma^2 t^2)^(-1/2).
        let closed = |s: f64| {
            let a = 1.0 / (4.0 * s * s);
            (1.0 + 2.0 * a * sigma * sigma - 4.0 * a * a * sigma * sigma * t * t).powf(-(d as f64) / 2.0)
        };
        let mc = |s: f64| {
            let n = &x + x.randn_like() * sigma;
            let e = |u: &Tensor| u.square().sum_dim_intlist([1].as_slice(), false, Kind::Double) / (2.0 * s * s);
            ((e(&x) - e(&n)) * 0.5).exp().mean(Kind::Double).double_value(&[])
        };
        for s in [0.8, 1.0, 1.3] {
            assert!((mc(s) - closed(s)).abs() < 0.01 * closed(s), "s {s}: {} vs {}", mc(s), closed(s));
        }
        assert!(closed(1.0) < closed(0.9) && closed(1.0) < closed(1.1));

        // The objective evaluates the same estimator through a network.
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &ModelConfig::from_preset("mlp-2d").unwrap());
        let xb = Tensor::randn([64, 2], (Kind::Float, Device::Cpu));
        let terms = Mpf { sigma }.loss(&net, &Inputs::new(&xb, None), None);
        assert!(terms.loss.double_value(&[]) > 0.0 && terms.loss.requires_grad());
    }
}
