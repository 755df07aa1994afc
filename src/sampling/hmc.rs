//! Hamiltonian Monte Carlo: momentum p ~ N(0, I), `leapfrog` steps of size `step` on
//! H(x, p) = E(x) + |p|^2 / 2, accepted per chain with probability min(1, exp(H - H')).
use super::energy_grad;
use super::mh::{acceptance_rate, chain_mask, sq_norm};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Hmc {
    pub step: f64,
    pub leapfrog: usize,
}

impl super::Sampler for Hmc {
    fn name(&self) -> &'static str {
        "hmc"
    }

    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> super::Chains {
        let mut x = x0.detach();
        let mut accepted = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
        for _ in 0..steps {
            let p0 = x.randn_like();
            let (e0, g0) = energy_grad(energy, &x);
            let mut p = &p0 - &g0 * (self.step / 2.0);
            let mut xn = x.shallow_clone();
            let mut e_new = e0.shallow_clone();
            for l in 0..self.leapfrog {
                xn = (&xn + &p * self.step).detach();
                let (e, g) = energy_grad(energy, &xn);
                e_new = e;
                let scale = if l + 1 == self.leapfrog { self.step / 2.0 } else { self.step };
                p = &p - &g * scale;
            }
            let h0 = &e0 + sq_norm(&p0) * 0.5;
            let h1 = &e_new + sq_norm(&p) * 0.5;
            let accept = Tensor::rand_like(&h0).log().lt_tensor(&(h0 - h1));
            x = xn.where_self(&chain_mask(&accept, &x), &x).detach();
            accepted += accept.to_kind(Kind::Float);
        }
        super::Chains { x, acceptance: acceptance_rate(&accepted, steps) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mala::Mala;
    use super::super::Sampler;
    use super::*;
    use tch::Device;

    /// E(x) = x^T S^-1 x / 2 with S = [[1, 0.8], [0.8, 1]].
    fn correlated_gaussian(x: &Tensor) -> Tensor {
        let inv = Tensor::from_slice(&[1.0f32, -0.8, -0.8, 1.0]).view([2, 2]) / (1.0 - 0.64);
        (x.matmul(&inv) * x).sum_dim_intlist([1].as_slice(), false, Kind::Float) * 0.5
    }

    fn moments(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let mean: Vec<f64> = Vec::try_from(&x.mean_dim([0].as_slice(), false, Kind::Double)).unwrap();
        let c = x - x.mean_dim([0].as_slice(), true, Kind::Float);
        let cov = c.tr().matmul(&c) / (x.size()[0] - 1) as f64;
        (mean, Vec::try_from(&cov.flatten(0, -1).to_kind(Kind::Double)).unwrap())
    }

    fn check(name: &str, x: &Tensor, rate: f64, lo: f64, hi: f64) {
        // 4,000 independent chains: the standard error of a mean is 1/sqrt(4000) = 0.016 and of a
        // (co)variance about sqrt(2/4000) = 0.022; allow four of them.
        let (m, c) = moments(x);
        assert!(m.iter().all(|v| v.abs() < 0.064), "{name} mean {m:?}");
        for (got, want) in c.iter().zip([1.0, 0.8, 0.8, 1.0]) {
            assert!((got - want).abs() < 0.09, "{name} cov {c:?}");
        }
        assert!(rate > lo && rate < hi, "{name} acceptance {rate}");
    }

    #[test]
    fn mala_and_hmc_sample_a_correlated_gaussian() {
        tch::manual_seed(11);
        let x0 = Tensor::randn([4000, 2], (Kind::Float, Device::Cpu)) * 3.0;
        let (x, rate) = Mala { step: 0.1 }.sample_with_rate(&correlated_gaussian, &x0, 300);
        check("MALA", &x, rate, 0.5, 0.99);
        let (x, rate) = Hmc { step: 0.2, leapfrog: 10 }.sample_with_rate(&correlated_gaussian, &x0, 60);
        check("HMC", &x, rate, 0.6, 1.0);
    }

    #[test]
    fn a_too_large_step_is_rejected_not_divergent() {
        tch::manual_seed(0);
        let x0 = Tensor::randn([500, 2], (Kind::Float, Device::Cpu));
        let (x, rate) = Mala { step: 20.0 }.sample_with_rate(&correlated_gaussian, &x0, 20);
        assert!(rate < 0.2, "acceptance {rate}");
        assert!(x.abs().max().double_value(&[]) < 10.0);
    }
}
