//! Annealed importance sampling (Neal 2001) of the log-partition function of p(x) ∝ exp(-E(x)).
//!
//! Base: p_0 = N(0, s^2 I), normalised (Z_0 = 1). Geometric bridges between the base and the model,
//!   log f_b(x) = (1 - b) log p_0(x) - b E(x),   0 = b_0 < b_1 < ... < b_K = 1.
//! Every chain starts at x ~ p_0; at step k its log-weight grows by
//!   log f_{b_k}(x) - log f_{b_{k-1}}(x) = (b_k - b_{k-1}) (-E(x) - log p_0(x)),
//! and x then makes one MCMC transition (MALA or HMC) that leaves f_{b_k} invariant. The mean of the
//! weights is an unbiased estimate of Z, so log Z ≈ log mean_i w_i; its standard error by the delta
//! method is sd(w) / (sqrt(n) mean(w)).
//!
//! Step sizes adapt towards a target acceptance rate after every temperature (as Wu et al. 2017
//! do for decoder models); `adapt = false` keeps them fixed.
use super::energy_grad;
use super::mh::{chain_mask, log_acceptance, sq_norm};
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// The MCMC transition at each temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    /// One Metropolis-adjusted Langevin step with proposal variance `step`.
    Mala,
    /// One HMC transition of `leapfrog` leapfrog steps of size `step`.
    Hmc { leapfrog: usize },
}

#[derive(Debug, Clone)]
pub struct AisConfig {
    /// Independent chains in all.
    pub chains: i64,
    /// Chains annealed together (memory); `chains` is split into runs of at most this many.
    pub batch: i64,
    /// Intermediate distributions K.
    pub temps: usize,
    /// Standard deviation s of the base N(0, s^2 I).
    pub base_std: f64,
    pub transition: Transition,
    /// Initial step size (MALA: eps^2; HMC: the leapfrog step).
    pub step: f64,
    /// Adapt the step size towards `target_acceptance` after every temperature.
    pub adapt: bool,
    pub target_acceptance: f64,
}

/// An AIS estimate and what it is worth.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AisEstimate {
    pub log_z: f64,
    /// Standard error of `log_z` (delta method over the chains).
    pub std_err: f64,
    /// Effective sample size of the final weights, (sum w)^2 / sum w^2.
    pub ess: f64,
    pub chains: i64,
    pub temps: usize,
    /// Mean acceptance rate over all transitions.
    pub acceptance: f64,
    /// The step size at the end of the (last) run.
    pub final_step: f64,
    /// log w of every chain.
    #[serde(skip)]
    pub log_weights: Vec<f64>,
}

/// The sigmoid schedule b_0 = 0 < ... < b_K = 1 (Grosse et al. 2015): dense near both ends.
pub fn sigmoid_schedule(temps: usize) -> Vec<f64> {
    let delta = 4.0;
    let s = |k: usize| 1.0 / (1.0 + (-delta * (2.0 * k as f64 / temps as f64 - 1.0)).exp());
    let (lo, hi) = (s(0), s(temps));
    (0..=temps).map(|k| (s(k) - lo) / (hi - lo)).collect()
}

/// A chain state: x, E(x) and grad E(x) per chain.
struct State {
    x: Tensor,
    e: Tensor,
    g: Tensor,
}

/// The bridge at inverse temperature b: U_b(x) = b E(x) + (1 - b) |x|^2 / (2 s^2) (up to a
/// constant), and its gradient, from a state's E and grad E.
fn bridge(st: &State, b: f64, inv_s2: f64) -> (Tensor, Tensor) {
    let u = &st.e * b + sq_norm(&st.x) * ((1.0 - b) * inv_s2 / 2.0);
    let gu = &st.g * b + &st.x * ((1.0 - b) * inv_s2);
    (u, gu)
}

fn evaluate(energy: &dyn Fn(&Tensor) -> Tensor, x: Tensor) -> State {
    let (e, g) = energy_grad(energy, &x);
    State { x, e: e.to_kind(Kind::Float), g }
}

/// Keeps `prop` where `accept` holds; returns the acceptance indicator as floats.
fn select(st: State, prop: State, accept: &Tensor) -> (State, Tensor) {
    let m = chain_mask(accept, &st.x);
    let next =
        State { x: prop.x.where_self(&m, &st.x), e: prop.e.where_self(accept, &st.e), g: prop.g.where_self(&m, &st.g) };
    (next, accept.to_kind(Kind::Float))
}

/// One MALA transition leaving exp(-U_b) invariant (see `mala.rs` for the acceptance ratio).
fn mala_step(energy: &dyn Fn(&Tensor) -> Tensor, st: State, b: f64, h: f64, inv_s2: f64) -> (State, Tensor) {
    let (u, gu) = bridge(&st, b, inv_s2);
    let prop = evaluate(energy, (&st.x - &gu * (h / 2.0) + st.x.randn_like() * h.sqrt()).detach());
    let (u_p, gu_p) = bridge(&prop, b, inv_s2);
    let log_alpha = log_acceptance(&st.x, &u, &gu, &prop.x, &u_p, &gu_p, h);
    let accept = Tensor::rand_like(&log_alpha).log().lt_tensor(&log_alpha);
    select(st, prop, &accept)
}

/// One HMC transition leaving exp(-U_b) invariant: momentum N(0, I), `leapfrog` steps of size `eps`.
fn hmc_step(
    energy: &dyn Fn(&Tensor) -> Tensor,
    st: State,
    b: f64,
    eps: f64,
    leapfrog: usize,
    inv_s2: f64,
) -> (State, Tensor) {
    let (u0, gu0) = bridge(&st, b, inv_s2);
    let p0 = st.x.randn_like();
    let mut p = &p0 - &gu0 * (eps / 2.0);
    let mut prop = State { x: st.x.shallow_clone(), e: st.e.shallow_clone(), g: st.g.shallow_clone() };
    let mut u1 = u0.shallow_clone();
    for l in 0..leapfrog {
        prop = evaluate(energy, (&prop.x + &p * eps).detach());
        let (u, gu) = bridge(&prop, b, inv_s2);
        u1 = u;
        p = &p - &gu * if l + 1 == leapfrog { eps / 2.0 } else { eps };
    }
    let log_alpha = (u0 + sq_norm(&p0) * 0.5) - (u1 + sq_norm(&p) * 0.5);
    let accept = Tensor::rand_like(&log_alpha).log().lt_tensor(&log_alpha);
    select(st, prop, &accept)
}

/// Anneals `n` chains of examples of `shape`; returns their log-weights (without the base's
/// normalising constant), the mean acceptance and the final step size.
fn anneal(
    energy: &dyn Fn(&Tensor) -> Tensor,
    shape: &[i64],
    n: i64,
    cfg: &AisConfig,
    device: Device,
) -> (Tensor, f64, f64) {
    let inv_s2 = 1.0 / (cfg.base_std * cfg.base_std);
    let betas = sigmoid_schedule(cfg.temps);
    let mut dims = vec![n];
    dims.extend_from_slice(shape);
    let x0 = Tensor::randn(dims.as_slice(), (Kind::Float, device)) * cfg.base_std;
    let mut st = evaluate(energy, x0);
    let mut log_w = Tensor::zeros([n], (Kind::Double, device));
    let mut step = cfg.step;
    let mut accepted = 0.0;
    for k in 1..betas.len() {
        // -E(x) - log p_0(x) without log p_0's constant, which is added once at the end.
        let increment = (-&st.e + sq_norm(&st.x) * (inv_s2 / 2.0)).to_kind(Kind::Double);
        log_w += increment * (betas[k] - betas[k - 1]);
        let (next, acc) = match cfg.transition {
            Transition::Mala => mala_step(energy, st, betas[k], step, inv_s2),
            Transition::Hmc { leapfrog } => hmc_step(energy, st, betas[k], step, leapfrog, inv_s2),
        };
        st = State { x: next.x.detach(), e: next.e.detach(), g: next.g.detach() };
        let rate = acc.mean(Kind::Float).double_value(&[]);
        accepted += rate;
        if cfg.adapt {
            step *= if rate > cfg.target_acceptance { 1.02 } else { 0.98 };
        }
    }
    (log_w, accepted / cfg.temps as f64, step)
}

/// log Z of exp(-E) over examples of `shape`, with its standard error.
pub fn estimate(
    energy: &dyn Fn(&Tensor) -> Tensor,
    shape: &[i64],
    cfg: &AisConfig,
    device: Device,
) -> crate::Result<AisEstimate> {
    if cfg.chains < 2 || cfg.batch < 1 {
        bail!("AIS needs at least 2 chains and a positive batch (got {} and {})", cfg.chains, cfg.batch);
    }
    if cfg.temps == 0 {
        bail!("AIS needs at least one intermediate temperature");
    }
    if !(cfg.base_std > 0.0 && cfg.step > 0.0) {
        bail!("AIS base std and step size must be positive (got {} and {})", cfg.base_std, cfg.step);
    }
    if let Transition::Hmc { leapfrog: 0 } = cfg.transition {
        bail!("HMC needs at least one leapfrog step");
    }
    let d: i64 = shape.iter().product();
    let log_z0 = 0.5 * d as f64 * (2.0 * std::f64::consts::PI * cfg.base_std * cfg.base_std).ln();
    let (mut parts, mut acceptance, mut final_step) = (Vec::new(), 0.0, cfg.step);
    let mut done = 0;
    while done < cfg.chains {
        let n = cfg.batch.min(cfg.chains - done);
        let (log_w, acc, step) = anneal(energy, shape, n, cfg, device);
        parts.push(log_w.to_device(Device::Cpu));
        acceptance += acc * n as f64;
        final_step = step;
        done += n;
    }
    let log_w = Tensor::cat(&parts, 0) + log_z0;
    let log_weights: Vec<f64> = Vec::try_from(&log_w)?;
    if log_weights.iter().any(|v| !v.is_finite()) {
        bail!("AIS produced non-finite log-weights: the energy is not finite along the path");
    }
    let (log_z, std_err, ess) = summarise(&log_weights);
    Ok(AisEstimate {
        log_z,
        std_err,
        ess,
        chains: cfg.chains,
        temps: cfg.temps,
        acceptance: acceptance / cfg.chains as f64,
        final_step,
        log_weights,
    })
}

/// log mean w, the delta-method standard error of it, and the effective sample size, from log w.
pub fn summarise(log_w: &[f64]) -> (f64, f64, f64) {
    let n = log_w.len() as f64;
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log_w.iter().map(|v| (v - max).exp()).collect();
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let ess = w.iter().sum::<f64>().powi(2) / w.iter().map(|v| v * v).sum::<f64>();
    (max + mean.ln(), var.sqrt() / (n.sqrt() * mean), ess)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(transition: Transition, chains: i64, temps: usize, step: f64) -> AisConfig {
        AisConfig {
            chains,
            batch: chains,
            temps,
            base_std: 1.0,
            transition,
            step,
            adapt: true,
            target_acceptance: 0.65,
        }
    }

    /// E(x) = |x - 1|^2 / (2 * 0.3^2) in `d` dimensions: log Z = (d / 2) log(2 pi 0.09).
    fn narrow_gaussian(x: &Tensor) -> Tensor {
        (x - 1.0).square().sum_dim_intlist([1].as_slice(), false, Kind::Float) / (2.0 * 0.09)
    }

    fn check(name: &str, est: &AisEstimate, truth: f64) {
        let err = (est.log_z - truth).abs();
        eprintln!("{name}: AIS {:.4} ± {:.4}, truth {truth:.4}, ESS {:.0}", est.log_z, est.std_err, est.ess);
        assert!(est.std_err > 0.0 && est.std_err < 0.1, "{name}: standard error {}", est.std_err);
        assert!(err < 4.0 * est.std_err + 0.01, "{name}: {} vs truth {truth} (se {})", est.log_z, est.std_err);
    }

    #[test]
    fn ais_recovers_the_log_partition_of_gaussians() {
        tch::manual_seed(3);
        for d in [2i64, 20] {
            let truth = 0.5 * d as f64 * (2.0 * std::f64::consts::PI * 0.09).ln();
            let est = estimate(&narrow_gaussian, &[d], &cfg(Transition::Mala, 400, 1000, 0.05), Device::Cpu).unwrap();
            check(&format!("MALA, d = {d}"), &est, truth);
            assert!(est.acceptance > 0.4 && est.acceptance < 0.95, "acceptance {}", est.acceptance);
        }
    }

    /// Four well-separated modes: E(x) = -logsumexp_k(-|x - m_k|^2 / (2 * 0.25^2)), so
    /// Z = 4 * 2 pi 0.25^2 exactly (the modes' overlap is negligible at distance 3).
    #[test]
    fn ais_with_hmc_recovers_a_multimodal_log_partition() {
        tch::manual_seed(4);
        let centres = Tensor::from_slice(&[1.5f32, 1.5, -1.5, 1.5, 1.5, -1.5, -1.5, -1.5]).view([1, 4, 2]);
        let energy = |x: &Tensor| {
            let d2 = (x.unsqueeze(1) - &centres).square().sum_dim_intlist([2].as_slice(), false, Kind::Float);
            -(-d2 / (2.0 * 0.0625)).logsumexp([1].as_slice(), false)
        };
        let truth = (4.0 * 2.0 * std::f64::consts::PI * 0.0625f64).ln();
        let mut c = cfg(Transition::Hmc { leapfrog: 5 }, 500, 200, 0.1);
        c.batch = 250;
        let est = estimate(&energy, &[2], &c, Device::Cpu).unwrap();
        check("HMC, 4 modes", &est, truth);
    }

    #[test]
    fn the_standard_error_matches_the_spread_of_independent_estimates() {
        // 30 independent estimates of 100 chains and 200 temperatures: the spread of
        // the estimates and the mean reported standard error agree within a factor of two.
        tch::manual_seed(5);
        let c = cfg(Transition::Mala, 100, 200, 0.1);
        let runs: Vec<AisEstimate> =
            (0..30).map(|_| estimate(&narrow_gaussian, &[4], &c, Device::Cpu).unwrap()).collect();
        let mean = runs.iter().map(|r| r.log_z).sum::<f64>() / 30.0;
        let spread = (runs.iter().map(|r| (r.log_z - mean).powi(2)).sum::<f64>() / 29.0).sqrt();
        let reported = runs.iter().map(|r| r.std_err).sum::<f64>() / 30.0;
        eprintln!("spread {spread:.4}, mean reported standard error {reported:.4}");
        assert!(spread > 0.0 && reported / spread > 0.5 && reported / spread < 2.0, "{reported} vs {spread}");
    }

    #[test]
    fn summary_of_equal_weights_is_exact_and_bad_settings_are_refused() {
        let (log_z, se, ess) = summarise(&[2.0; 10]);
        assert!((log_z - 2.0).abs() < 1e-12 && se == 0.0 && (ess - 10.0).abs() < 1e-9);
        let s = sigmoid_schedule(10);
        assert!(s[0] == 0.0 && (s[10] - 1.0).abs() < 1e-12 && s.windows(2).all(|w| w[1] > w[0]));
        let mut c = cfg(Transition::Hmc { leapfrog: 0 }, 10, 5, 0.1);
        assert!(estimate(&narrow_gaussian, &[2], &c, Device::Cpu).is_err());
        c.transition = Transition::Mala;
        c.chains = 1;
        assert!(estimate(&narrow_gaussian, &[2], &c, Device::Cpu).unwrap_err().to_string().contains("2 chains"));
    }
}
