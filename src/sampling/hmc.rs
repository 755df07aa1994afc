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

    /// A two-component Gaussian mixture in 2-D: weights, means and covariances [[a, b], [b, c]].
    const MIX_W: [f64; 2] = [0.3, 0.7];
    const MIX_MU: [[f64; 2]; 2] = [[-1.0, 0.0], [1.0, 0.5]];
    const MIX_S: [[f64; 3]; 2] = [[0.5, 0.2, 0.4], [0.4, -0.1, 0.3]];

    /// E(x) = -log sum_k w_k N(x; mu_k, Sigma_k), up to the constant log(2 pi).
    fn mixture(x: &Tensor) -> Tensor {
        let terms: Vec<Tensor> = (0..2)
            .map(|k| {
                let [a, b, c] = MIX_S[k];
                let det = a * c - b * b;
                let d0 = x.select(1, 0) - MIX_MU[k][0];
                let d1 = x.select(1, 1) - MIX_MU[k][1];
                // d^T Sigma^-1 d with Sigma^-1 = [[c, -b], [-b, a]] / det.
                let quad = (&d0 * &d0 * c - &d0 * &d1 * (2.0 * b) + &d1 * &d1 * a) / det;
                quad * -0.5 + (MIX_W[k].ln() - 0.5 * det.ln())
            })
            .collect();
        // log(e^t0 + e^t1) = max + log(1 + e^-|t0 - t1|), elementwise.
        let (t0, t1) = (&terms[0], &terms[1]);
        -(t0.maximum(t1) + (-(t0 - t1).abs()).exp().log1p())
    }

    /// The mixture's mean sum_k w_k mu_k and covariance sum_k w_k (Sigma_k + mu_k mu_k^T) - mu mu^T,
    /// row-major.
    fn mixture_moments() -> ([f64; 2], [f64; 4]) {
        let mut m = [0.0; 2];
        let mut second = [0.0; 4];
        for k in 0..2 {
            let [a, b, c] = MIX_S[k];
            let mu = MIX_MU[k];
            let sigma = [a, b, b, c];
            for i in 0..2 {
                m[i] += MIX_W[k] * mu[i];
                for j in 0..2 {
                    second[2 * i + j] += MIX_W[k] * (sigma[2 * i + j] + mu[i] * mu[j]);
                }
            }
        }
        let cov = [second[0] - m[0] * m[0], second[1] - m[0] * m[1], second[2] - m[1] * m[0], second[3] - m[1] * m[1]];
        (m, cov)
    }

    #[test]
    fn mala_and_hmc_sample_a_two_component_gaussian_mixture() {
        // Not a Gaussian: two modes of unequal weight, so a sampler that finds one mode, or splits
        // the chains by where they started rather than by weight, misses the mean and covariance.
        // 4,000 independent chains; the mixture's variances are near 1, so standard errors are
        // about 0.016 for means and 0.03 for (co)variances: allow four of them.
        let (want_m, want_c) = mixture_moments();
        eprintln!("mixture mean {want_m:?}, covariance {want_c:?}");
        tch::manual_seed(5);
        let x0 = Tensor::randn([4000, 2], (Kind::Float, Device::Cpu)) * 3.0;
        let runs = [
            ("MALA", Mala { step: 0.1 }.sample_with_rate(&mixture, &x0, 300)),
            ("HMC", Hmc { step: 0.2, leapfrog: 10 }.sample_with_rate(&mixture, &x0, 50)),
        ];
        for (name, (x, rate)) in runs {
            let (m, c) = moments(&x);
            eprintln!("{name}: mean {m:?}, covariance {c:?}, acceptance {rate:.3}");
            for (got, want) in m.iter().zip(want_m) {
                assert!((got - want).abs() < 0.07, "{name} mean {m:?}, want {want_m:?}");
            }
            for (got, want) in c.iter().zip(want_c) {
                assert!((got - want).abs() < 0.12, "{name} cov {c:?}, want {want_c:?}");
            }
            assert!(rate > 0.5, "{name} acceptance {rate}");
        }
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
