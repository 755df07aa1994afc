//! Convergence diagnostics of MCMC chains (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021,
//! "Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
//! of MCMC", Bayesian Analysis 16(2)), on M chains of N draws of one scalar (the energy trace):
//!
//! - within-chain variance W = mean_m s_m^2, between-chain B/N = var_m(mean_m) (ddof 1), and the
//!   pooled var+ = (N-1)/N W + B/N;
//! - split R-hat: each chain cut in halves (2M chains of N/2 draws), R-hat = sqrt(var+ / W);
//!   rank-normalised: the pooled draws replaced by z = Phi^-1((rank - 3/8) / (S + 1/4)) (average
//!   ranks for ties), and the "folded" value the same on |x - median|; the reported R-hat is the
//!   larger of the two (their eq. 4-5). Chains that agree give R-hat near 1 (they advise < 1.01);
//! - effective sample size: the multi-chain autocorrelation rho_t = 1 - (W - mean_m acov_m(t)) /
//!   var+ (acov with divisor N), summed by Geyer's (1992) initial monotone sequence: pairs
//!   P_k = rho_2k + rho_2k+1 up to the first negative pair, each made no larger than the one
//!   before; tau = -1 + 2 sum_k P_k and ESS = M N / tau. Bulk-ESS is this on the rank-normalised
//!   split chains. For an AR(1) process x_t = rho x_t-1 + e_t, tau = (1 + rho) / (1 - rho)
//!   exactly, so ESS = M N (1 - rho) / (1 + rho).
use anyhow::bail;

/// Checks that there are chains, that they have the same length and at least `min` draws.
fn check(chains: &[Vec<f64>], min: usize) -> crate::Result<(usize, usize)> {
    let m = chains.len();
    if m == 0 {
        bail!("no chains to diagnose");
    }
    let n = chains[0].len();
    if chains.iter().any(|c| c.len() != n) {
        bail!("chains of different lengths");
    }
    if n < min {
        bail!("chains of {n} draws: at least {min} are needed");
    }
    if chains.iter().flatten().any(|v| !v.is_finite()) {
        bail!("the trace has values that are not finite");
    }
    Ok((m, n))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample variance with divisor n - 1.
fn var(v: &[f64]) -> f64 {
    let mu = mean(v);
    v.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (v.len() as f64 - 1.0)
}

/// (W, var+) of equal-length chains.
fn variances(chains: &[Vec<f64>]) -> (f64, f64) {
    let n = chains[0].len() as f64;
    let w = mean(&chains.iter().map(|c| var(c)).collect::<Vec<_>>());
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let b_over_n = if chains.len() > 1 { var(&means) } else { 0.0 };
    (w, (n - 1.0) / n * w + b_over_n)
}

/// Each chain cut into its first and second half (an odd middle draw dropped).
pub fn split(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let half = chains[0].len() / 2;
    let n = chains[0].len();
    chains.iter().flat_map(|c| [c[..half].to_vec(), c[n - half..].to_vec()]).collect()
}

/// The classic split R-hat (no rank normalisation) of chains with at least 4 draws.
pub fn split_rhat_raw(chains: &[Vec<f64>]) -> crate::Result<f64> {
    check(chains, 4)?;
    let (w, vp) = variances(&split(chains));
    if w <= 0.0 {
        bail!("the chains are constant: R-hat is undefined");
    }
    Ok((vp / w).sqrt())
}

/// The inverse of the standard normal CDF (Acklam's rational approximation, relative error
/// below 1.2e-9), for p in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -39.696_830_286_653_76,
        220.946_098_424_520_5,
        -275.928_510_446_968_7,
        138.357_751_867_269,
        -30.664_798_066_147_16,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -54.476_098_798_224_06,
        161.585_836_858_040_9,
        -155.698_979_859_886_6,
        66.801_311_887_719_72,
        -13.280_681_552_885_72,
    ];
    const C: [f64; 6] = [
        -0.007_784_894_002_430_293,
        -0.322_396_458_041_136_4,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [0.007_784_695_709_041_462, 0.322_467_129_070_039_8, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The pooled draws replaced by their normal scores Phi^-1((r - 3/8) / (S + 1/4)), ties given
/// their average rank, in the chains' shape.
pub fn rank_normalise(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let flat: Vec<f64> = chains.iter().flatten().copied().collect();
    let s = flat.len();
    let mut order: Vec<usize> = (0..s).collect();
    order.sort_by(|&a, &b| flat[a].total_cmp(&flat[b]));
    let mut rank = vec![0f64; s];
    let mut i = 0;
    while i < s {
        let mut j = i;
        while j + 1 < s && flat[order[j + 1]] == flat[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| rank[k] = r);
        i = j + 1;
    }
    let z: Vec<f64> = rank.iter().map(|r| normal_quantile((r - 0.375) / (s as f64 + 0.25))).collect();
    z.chunks(chains[0].len()).map(|c| c.to_vec()).collect()
}

/// Vehtari et al.'s R-hat: the larger of the rank-normalised split R-hat of the draws and of
/// their distances from the pooled median (the folded draws).
pub fn rhat(chains: &[Vec<f64>]) -> crate::Result<f64> {
    check(chains, 4)?;
    let mut flat: Vec<f64> = chains.iter().flatten().copied().collect();
    flat.sort_by(f64::total_cmp);
    let median = (flat[(flat.len() - 1) / 2] + flat[flat.len() / 2]) / 2.0;
    let folded: Vec<Vec<f64>> = chains.iter().map(|c| c.iter().map(|x| (x - median).abs()).collect()).collect();
    let bulk = split_rhat_raw(&rank_normalise(chains))?;
    let tail = split_rhat_raw(&rank_normalise(&folded))?;
    Ok(bulk.max(tail))
}

/// Autocovariance of one centred chain `d` at lag `t` (divisor n).
fn autocovariance(d: &[f64], t: usize) -> f64 {
    d[..d.len() - t].iter().zip(&d[t..]).map(|(a, b)| a * b).sum::<f64>() / d.len() as f64
}

/// The effective sample size of the chains as they are (no splitting, no ranks): M N / tau with
/// Geyer's initial monotone sequence over the multi-chain autocorrelations.
pub fn ess_raw(chains: &[Vec<f64>]) -> crate::Result<f64> {
    let (m, n) = check(chains, 4)?;
    let (w, vp) = variances(chains);
    if w <= 0.0 {
        bail!("the chains are constant: the effective sample size is undefined");
    }
    let centred: Vec<Vec<f64>> = chains
        .iter()
        .map(|c| {
            let mu = mean(c);
            c.iter().map(|x| x - mu).collect()
        })
        .collect();
    // Lags are computed as Geyer's sum reaches them: O(M N) each, a few times tau of them.
    let rho = |t: usize| 1.0 - (w - centred.iter().map(|d| autocovariance(d, t)).sum::<f64>() / m as f64) / vp;
    let mut sum = 0.0;
    let mut prev = f64::INFINITY;
    let mut k = 0;
    while 2 * k + 1 < n {
        let pair = if k == 0 { 1.0 + rho(1) } else { rho(2 * k) + rho(2 * k + 1) };
        if pair < 0.0 {
            break;
        }
        let pair = pair.min(prev);
        sum += pair;
        prev = pair;
        k += 1;
    }
    let tau = (-1.0 + 2.0 * sum).max(1.0 / ((m * n) as f64).log10());
    Ok((m * n) as f64 / tau)
}

/// Bulk-ESS (Vehtari et al. 2021): [`ess_raw`] of the rank-normalised split chains.
pub fn ess_bulk(chains: &[Vec<f64>]) -> crate::Result<f64> {
    check(chains, 8)?;
    ess_raw(&rank_normalise(&split(chains)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// M independent AR(1) chains x_t = rho x_t-1 + sqrt(1 - rho^2) e_t, started stationary.
    fn ar1(rho: f64, m: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut e = || -> f64 { StandardNormal.sample(&mut rng) };
        (0..m)
            .map(|_| {
                let mut x = e();
                (0..n)
                    .map(|_| {
                        x = rho * x + (1.0 - rho * rho).sqrt() * e();
                        x
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn normal_quantile_matches_known_values() {
        for (p, z) in
            [(0.5, 0.0), (0.975, 1.959_963_984_540_054), (0.001, -3.090_232_306_167_813), (0.8413447460685429, 1.0)]
        {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "{p}: {} vs {z}", normal_quantile(p));
        }
    }

    /// ESS of AR(1) chains against the closed form M N (1 - rho) / (1 + rho), for positive and
    /// negative correlation; and independent draws give about M N.
    #[test]
    fn ess_of_ar1_chains_matches_the_closed_form() {
        // 16 chains of 4000: the estimate's spread is about 4.5% at rho = 0.9 (9% with 4 chains,
        // measured over 30 repetitions), so 15% is over three standard deviations.
        let (m, n) = (16, 4000);
        for (rho, seed) in [(0.9, 1), (0.5, 2), (0.0, 3), (-0.5, 4)] {
            let chains = ar1(rho, m, n, seed);
            let truth = (m * n) as f64 * (1.0 - rho) / (1.0 + rho);
            for (name, got) in [("raw", ess_raw(&chains).unwrap()), ("bulk", ess_bulk(&chains).unwrap())] {
                let rel = (got - truth).abs() / truth;
                assert!(rel < 0.15, "rho {rho} {name}: ESS {got:.0} vs closed form {truth:.0}");
            }
        }
    }

    /// Chains of one stationary process give R-hat below 1.01; chains stuck in different modes
    /// (a mixture's components at -3 and +3, or only a shifted scale) give R-hat well above 1.
    #[test]
    fn rhat_is_one_for_agreeing_chains_and_large_for_chains_in_different_modes() {
        let same = ar1(0.5, 4, 2000, 5);
        let (r, raw) = (rhat(&same).unwrap(), split_rhat_raw(&same).unwrap());
        assert!(r < 1.01 && raw < 1.01, "R-hat {r}, raw {raw}");
        let modes: Vec<Vec<f64>> = ar1(0.5, 4, 2000, 6)
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.iter().map(|x| x + if i % 2 == 0 { -3.0 } else { 3.0 }).collect())
            .collect();
        assert!(rhat(&modes).unwrap() > 1.5 && split_rhat_raw(&modes).unwrap() > 1.5);
        // Same mean, different spread: the folded (tail) R-hat catches what the bulk misses.
        let spread: Vec<Vec<f64>> = ar1(0.0, 4, 2000, 7)
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.iter().map(|x| x * if i < 2 { 0.2 } else { 3.0 }).collect())
            .collect();
        assert!(split_rhat_raw(&rank_normalise(&spread)).unwrap() < 1.05);
        assert!(rhat(&spread).unwrap() > 1.3, "{}", rhat(&spread).unwrap());
        // A chain drifting from its start: its halves disagree.
        let drift = vec![(0..1000).map(|t| t as f64 / 100.0).collect::<Vec<_>>(); 4];
        assert!(rhat(&drift).unwrap() > 1.5);
    }

    #[test]
    fn bad_traces_get_one_clear_error() {
        assert!(rhat(&[]).unwrap_err().to_string().contains("no chains"));
        assert!(rhat(&[vec![1.0; 10], vec![1.0; 9]]).unwrap_err().to_string().contains("different lengths"));
        assert!(ess_raw(&[vec![2.0; 10], vec![2.0; 10]]).unwrap_err().to_string().contains("constant"));
        assert!(rhat(&[vec![f64::NAN; 10], vec![0.0; 10]]).unwrap_err().to_string().contains("not finite"));
    }
}
