//! Chain diagnostics of a model's sampler (`ebm diagnose`): M chains run for N transitions of the
//! sampler; the first `burn_in` share of each energy trace E(x_t) is dropped and the rest judged
//! by Vehtari et al. (2021)'s R-hat and bulk effective sample size (`chains.rs`); the kept draws,
//! pooled and thinned to at most `max_points`, are compared with data by the MMD permutation test
//! (`mmd.rs`) and with the model itself by the kernel Stein discrepancy (`ksd.rs`), which is zero
//! in expectation when the draws follow the model; with the Metropolis-adjusted samplers, the
//! mean acceptance rate.
//!
//! The verdict follows Vehtari et al.'s advice: R-hat below 1.01 and a bulk-ESS of at least 400
//! (100 per chain for their 4 chains); the MMD test rejects "samples like the data" at p < 0.01.
use super::{chains, ksd, mmd};
use crate::sampling::Sampler;
use serde::Serialize;
use tch::{Kind, Tensor};

/// R-hat at or above this: the chains disagree (Vehtari et al. 2021, section 4).
pub const MAX_RHAT: f64 = 1.01;
/// Bulk-ESS below this: too few effective draws to trust R-hat and the estimates (their
/// recommendation: 400, i.e. 100 per chain for 4 chains).
pub const MIN_ESS: f64 = 400.0;
/// MMD permutation p-values below this: the samples differ from the data.
pub const MMD_ALPHA: f64 = 0.01;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub steps: usize,
    /// Share of each trace dropped as warm-up, in [0, 1).
    pub burn_in: f64,
    /// Most pooled draws kept for MMD and KSD (thinned evenly).
    pub max_points: usize,
    /// MMD permutations.
    pub permutations: usize,
}

/// The energy traces and the kept draws of the chains.
pub struct Run {
    /// traces[m][t]: E at chain m after its (t+1)-th transition, warm-up included.
    pub traces: Vec<Vec<f64>>,
    /// Kept draws, pooled [k, ...].
    pub draws: Tensor,
    /// Mean acceptance rate over the transitions (Metropolis-adjusted samplers).
    pub acceptance: Option<f64>,
}

/// Runs the chains from `x0` [M, ...] and records their energies and thinned kept draws.
pub fn run_chains(energy: &dyn Fn(&Tensor) -> Tensor, sampler: &dyn Sampler, x0: &Tensor, o: &Options) -> Run {
    let m = x0.size()[0] as usize;
    let first_kept = ((o.steps as f64) * o.burn_in).floor() as usize;
    let kept = o.steps - first_kept;
    let thin = (m * kept).div_ceil(o.max_points.max(1)).max(1);
    let mut x = x0.detach();
    let mut energies = Vec::with_capacity(o.steps);
    let mut draws = Vec::new();
    let (mut rate_sum, mut rated) = (0.0, 0usize);
    for t in 0..o.steps {
        let c = sampler.sample(energy, &x, 1);
        x = c.x;
        if let Some(a) = c.acceptance {
            rate_sum += a.double_value(&[]);
            rated += 1;
        }
        energies.push(tch::no_grad(|| energy(&x)).to_kind(Kind::Double).to_device(tch::Device::Cpu));
        if t >= first_kept && (t - first_kept).is_multiple_of(thin) {
            draws.push(x.detach().copy());
        }
    }
    let e = Tensor::stack(&energies, 1); // [M, steps]
    let traces = Vec::<Vec<f64>>::try_from(&e).expect("energy traces");
    let mut draws = Tensor::cat(&draws, 0);
    if draws.size()[0] as usize > o.max_points {
        draws = draws.narrow(0, 0, o.max_points as i64);
    }
    Run { traces, draws, acceptance: (rated > 0).then(|| rate_sum / rated as f64) }
}

/// The diagnostics of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub chains: usize,
    pub steps: usize,
    pub kept_per_chain: usize,
    pub rhat: f64,
    pub ess_bulk: f64,
    pub energy_mean: f64,
    pub acceptance: Option<f64>,
    pub ksd_samples: ksd::Ksd,
    pub ksd_data: Option<ksd::Ksd>,
    pub mmd: Option<mmd::Mmd>,
    pub kernel: String,
    pub verdict: String,
}

/// Judges a [`Run`]: R-hat and bulk-ESS of the kept energy traces, KSD of the kept draws (and of
/// `data` [n, ...] when given) under `energy`, MMD of the draws against `data`.
pub fn judge(
    energy: &dyn Fn(&Tensor) -> Tensor,
    run: &Run,
    data: Option<&Tensor>,
    o: &Options,
) -> crate::Result<Report> {
    let first_kept = ((o.steps as f64) * o.burn_in).floor() as usize;
    let kept: Vec<Vec<f64>> = run.traces.iter().map(|t| t[first_kept..].to_vec()).collect();
    let rhat = chains::rhat(&kept)?;
    let ess = chains::ess_bulk(&kept)?;
    let draws = run.draws.to_kind(Kind::Float);
    let ksd_samples = ksd::ksd(energy, &draws, None)?;
    let (ksd_data, mmd) = match data {
        Some(d) => {
            let d = d.narrow(0, 0, d.size()[0].min(o.max_points as i64)).to_device(draws.device()).to_kind(Kind::Float);
            (Some(ksd::ksd(energy, &d, None)?), Some(mmd::mmd(&draws, &d, None, o.permutations)?))
        }
        None => (None, None),
    };
    let mut parts = vec![if rhat < MAX_RHAT && ess >= MIN_ESS {
        format!("chains mixed (R-hat {rhat:.3} < {MAX_RHAT}, bulk-ESS {ess:.0} >= {MIN_ESS:.0})")
    } else {
        format!(
            "NOT converged (R-hat {rhat:.3}, want < {MAX_RHAT}; bulk-ESS {ess:.0}, want >= {MIN_ESS:.0}): run more steps or chains"
        )
    }];
    if let Some(m) = &mmd {
        parts.push(if m.p_value < MMD_ALPHA {
            format!("samples differ from the data (MMD p = {:.3} < {MMD_ALPHA})", m.p_value)
        } else {
            format!("samples not distinguishable from the data (MMD p = {:.3})", m.p_value)
        });
    }
    let energy_mean = kept.iter().flatten().sum::<f64>() / (kept.len() * kept[0].len()) as f64;
    Ok(Report {
        chains: kept.len(),
        steps: o.steps,
        kept_per_chain: kept[0].len(),
        rhat,
        ess_bulk: ess,
        energy_mean,
        acceptance: run.acceptance,
        ksd_samples,
        ksd_data,
        mmd,
        kernel:
            "RBF exp(-|x-y|^2 / (2 h^2)), h = median pairwise distance of the pooled sets (MMD) or of the set (KSD)"
                .into(),
        verdict: parts.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Mala;
    use tch::Device;

    /// -log of 0.95 N((-4, 0), 0.5^2 I) + 0.05 N((4, 0), 0.5^2 I), up to a constant. The energy
    /// trace is what R-hat sees: its mean differs by ln 19 = 2.9 between the modes against a
    /// within-mode sd of 1 (a 0.8/0.2 mixture's ln 4 gave R-hat near 1.3 on some streams).
    fn mixture(x: &Tensor) -> Tensor {
        let d = |c: f64| {
            let shift = Tensor::from_slice(&[c, 0.0]).to_kind(x.kind());
            (x - shift).square().sum_dim_intlist([1].as_slice(), false, x.kind()) / (-2.0 * 0.25)
        };
        -Tensor::stack(&[d(-4.0) + 0.95f64.ln(), d(4.0) + 0.05f64.ln()], 1).logsumexp([1].as_slice(), false)
    }

    fn normal(x: &Tensor) -> Tensor {
        x.square().sum_dim_intlist([1].as_slice(), false, x.kind()) * 0.5
    }

    /// Chains of MALA on a standard normal, started overdispersed: mixed, many effective draws,
    /// an acceptance rate, KSD near 0 and an MMD test against exact draws that does not reject.
    /// Chains started in the two modes of a mixture (which MALA cannot cross): R-hat far above 1
    /// and a verdict that says so.
    #[test]
    fn known_good_and_known_stuck_chains() {
        tch::manual_seed(4);
        let o = Options { steps: 1000, burn_in: 0.5, max_points: 600, permutations: 100 };
        let sampler = Mala { step: 2.0 };
        let x0 = Tensor::randn([8, 2], (Kind::Float, Device::Cpu)) * 3.0;
        let run = run_chains(&normal, &sampler, &x0, &o);
        let exact = Tensor::randn([600, 2], (Kind::Float, Device::Cpu));
        let r = judge(&normal, &run, Some(&exact), &o).unwrap();
        assert!(r.rhat < 1.02 && r.ess_bulk > 400.0, "{r:?}");
        assert!(r.acceptance.is_some_and(|a| a > 0.4 && a < 0.95), "{r:?}");
        assert!(r.ksd_samples.ksd2.abs() < 0.02 && r.mmd.unwrap().p_value > MMD_ALPHA, "{r:?}");
        assert!((r.energy_mean - 1.0).abs() < 0.15, "E|x|^2/2 = 1 under N(0, I_2): {r:?}");

        let sampler = Mala { step: 0.05 };
        let starts = Tensor::from_slice(&[-4.0f32, 0.0, 4.0, 0.0]).view([2, 2]).repeat([4, 1]);
        let run = run_chains(&mixture, &sampler, &starts, &o);
        let r = judge(&mixture, &run, None, &o).unwrap();
        assert!(r.rhat > 1.3 && r.verdict.contains("NOT converged"), "{r:?}");
    }
}
