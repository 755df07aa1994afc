//! The kernel Stein discrepancy between samples x_1..x_n of q and a model p known only through its
//! score s_p(x) = grad_x log p(x) = -grad_x E(x) (Liu, Lee & Jordan 2016, "A kernelized Stein
//! discrepancy for goodness-of-fit tests", ICML; Chwialkowski, Strathmann & Gretton 2016, "A kernel
//! test of goodness of fit", ICML). With the RBF kernel k(x, y) = exp(-|x - y|^2 / (2 h^2)) in
//! d dimensions the Stein kernel is
//!   u_p(x, y) = k(x, y) [ s(x).s(y) + (s(x) - s(y)).(x - y) / h^2 + d / h^2 - |x - y|^2 / h^4 ],
//! and KSD^2 = E_{x, y ~ q} u_p(x, y) is estimated by the U-statistic
//!   KSD^2_u = sum_{i != j} u_p(x_i, x_j) / (n (n - 1)),
//! unbiased, zero in expectation when q = p (it can then be slightly negative), positive otherwise.
//! It needs no normaliser, so it judges an EBM's samples against the EBM itself.
//!
//! Known value (used by the tests): for p = N(0, I_d) and q = N(mu, I_d), s_p - s_q = -mu is
//! constant, and KSD^2 = E[(s_p - s_q)(x).(s_p - s_q)(y) k(x, y)] (Liu et al., Theorem 3.6) =
//! |mu|^2 E k(x, y) = |mu|^2 (h^2 / (h^2 + 2))^(d/2), since x - y ~ N(0, 2 I).
//!
//! The bandwidth: the median heuristic, h = median pairwise distance of the samples (as the MMD
//! of `mmd.rs`), unless given. The U-statistic itself is `objectives::ksd::ksd2_u`, differentiable
//! in the scores, which the `ksd` objective trains on (objectives sit below eval in the layers).
use crate::objectives::ksd::{ksd2_u, median_distance};
use anyhow::bail;
use tch::{Kind, Tensor};

/// KSD^2_u and the bandwidth used.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ksd {
    pub ksd2: f64,
    pub bandwidth: f64,
}

/// KSD^2_u of samples `x` [n, ...] under the energy `energy` (score -grad E, by autograd), at the
/// median-heuristic bandwidth unless `h` is given; computed in float64 on the host's values.
pub fn ksd(energy: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, h: Option<f64>) -> crate::Result<Ksd> {
    let n = x.size()[0];
    if n < 2 {
        bail!("KSD needs at least 2 samples ({n} given)");
    }
    let (_, g) = crate::sampling::energy_grad(energy, x);
    let xf = x.flatten(1, -1).to_kind(Kind::Double);
    let s = -g.flatten(1, -1).to_kind(Kind::Double);
    if !bool::try_from(s.isfinite().all()).unwrap_or(false) {
        bail!("KSD: the model's score is not finite at some samples");
    }
    let h = h.unwrap_or_else(|| median_distance(&xf));
    if !(h.is_finite() && h > 0.0) {
        bail!("KSD: bandwidth {h} (all samples coincide?)");
    }
    let v = tch::no_grad(|| ksd2_u(&xf, &s, h).double_value(&[]));
    Ok(Ksd { ksd2: v, bandwidth: h })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// E(x) = |x|^2 / 2: the standard normal.
    fn normal_energy(x: &Tensor) -> Tensor {
        x.square().sum_dim_intlist([1].as_slice(), false, x.kind()) * 0.5
    }

    /// The Stein kernel by explicit loops in f64 with the analytic score -x.
    fn ksd2_loops(x: &[Vec<f64>], h: f64) -> f64 {
        let d = x[0].len() as f64;
        let mut t = 0.0;
        for (i, a) in x.iter().enumerate() {
            for (j, b) in x.iter().enumerate() {
                if i == j {
                    continue;
                }
                let r2: f64 = a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum();
                let k = (-r2 / (2.0 * h * h)).exp();
                let ss: f64 = a.iter().zip(b).map(|(p, q)| p * q).sum(); // (-a).(-b)
                let cross: f64 = a.iter().zip(b).map(|(p, q)| (-p + q) * (p - q)).sum();
                t += k * (ss + cross / (h * h) + d / (h * h) - r2 / h.powi(4));
            }
        }
        t / (x.len() * (x.len() - 1)) as f64
    }

    #[test]
    fn u_statistic_matches_loops_and_the_gaussian_closed_form() {
        tch::manual_seed(11);
        let x = Tensor::randn([25, 3], (Kind::Double, Device::Cpu)) + 0.4;
        let got = ksd(&normal_energy, &x, Some(0.9)).unwrap().ksd2;
        let want = ksd2_loops(&Vec::<Vec<f64>>::try_from(&x).unwrap(), 0.9);
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");

        // q = N(mu, I_2) against p = N(0, I_2), h = 1: KSD^2 = |mu|^2 / 3. Averaged over 10 sets
        // of 400 samples; the true model (mu = 0) gives zero within the spread.
        let d = 2.0f64;
        let mut prev = f64::NEG_INFINITY;
        for shift in [0.0, 0.5, 1.0, 2.0] {
            let vals: Vec<f64> = (0..10)
                .map(|_| {
                    let x = Tensor::randn([400, 2], (Kind::Double, Device::Cpu)) + shift / 2f64.sqrt();
                    ksd(&normal_energy, &x, Some(1.0)).unwrap().ksd2
                })
                .collect();
            let mean = vals.iter().sum::<f64>() / 10.0;
            let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 9.0).sqrt();
            let truth = shift * shift * (1.0f64 / 3.0).powf(d / 2.0);
            assert!((mean - truth).abs() < 3.0 * sd / 10f64.sqrt() + 1e-3, "shift {shift}: {mean} ± {sd} vs {truth}");
            assert!(mean > prev, "KSD must grow with the shift: {mean} after {prev}");
            prev = mean;
        }
    }

    #[test]
    fn median_bandwidth_zero_for_truth_and_positive_for_a_shift() {
        tch::manual_seed(12);
        let x = Tensor::randn([500, 2], (Kind::Float, Device::Cpu));
        let truth = ksd(&normal_energy, &x, None).unwrap();
        let off = ksd(&normal_energy, &(&x + 1.0), None).unwrap();
        assert!(truth.ksd2.abs() < 0.02 && off.ksd2 > 0.2, "{truth:?} {off:?}");
        assert!(ksd(&normal_energy, &x.narrow(0, 0, 1), None).unwrap_err().to_string().contains("at least 2"));
    }
}
