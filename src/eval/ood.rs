//! Out-of-distribution detection metrics with in-distribution examples as the positive class and
//! higher scores meaning "more in-distribution":
//! - AUROC = P(s_in > s_out) + 1/2 P(s_in = s_out), the Mann-Whitney statistic (ties exact);
//! - AUPR = average precision with in-distribution positive (sklearn's average_precision_score:
//!   sum over thresholds of (R_k - R_{k-1}) P_k, tied scores forming one threshold);
//! - FPR95 = the false-positive rate at the highest threshold whose true-positive rate is >= 95%.
//!
//! AUROC is summed in whole counts (sum over thresholds of dFP * (2 TP + dTP), exact in f64 below
//! 2^53) and divided once, AUPR as sum dTP * P_k divided once by the positives; both are then
//! clamped to [0, 1], so rounding can never report 1.0000000000000002.
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct OodMetrics {
    pub auroc: f64,
    pub aupr: f64,
    pub fpr95: f64,
}

/// Sorted (score, is_in) pairs, highest score first.
fn ranked(s_in: &[f64], s_out: &[f64]) -> Vec<(f64, bool)> {
    let mut v: Vec<(f64, bool)> = s_in.iter().map(|&s| (s, true)).chain(s_out.iter().map(|&s| (s, false))).collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v
}

/// AUROC, AUPR and FPR95 of scores of in-distribution and OOD examples.
pub fn ood_metrics(s_in: &[f64], s_out: &[f64]) -> OodMetrics {
    assert!(!s_in.is_empty() && !s_out.is_empty(), "both sets need examples");
    let (np, nn) = (s_in.len() as f64, s_out.len() as f64);
    let v = ranked(s_in, s_out);
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    // Twice the Mann-Whitney count, and the precision-weighted sum of positives.
    let (mut pairs2, mut precision_sum) = (0.0, 0.0);
    let mut fpr95 = None;
    let mut i = 0;
    while i < v.len() {
        // One threshold per distinct score: take the whole tie group at once.
        let (mut dtp, mut dfp) = (0.0, 0.0);
        let s = v[i].0;
        while i < v.len() && v[i].0 == s {
            if v[i].1 {
                dtp += 1.0;
            } else {
                dfp += 1.0;
            }
            i += 1;
        }
        // Trapezoid in ROC space = Mann-Whitney with ties counted one half.
        pairs2 += dfp * (2.0 * tp + dtp);
        tp += dtp;
        fp += dfp;
        precision_sum += dtp * (tp / (tp + fp));
        if fpr95.is_none() && tp / np >= 0.95 {
            fpr95 = Some(fp / nn);
        }
    }
    let auroc = (pairs2 / (2.0 * np * nn)).clamp(0.0, 1.0);
    let aupr = (precision_sum / np).clamp(0.0, 1.0);
    OodMetrics { auroc, aupr, fpr95: fpr95.unwrap_or(1.0) }
}

/// The ROC curve as (FPR, TPR) points from (0, 0) to (1, 1), one per distinct score.
pub fn roc_curve(s_in: &[f64], s_out: &[f64]) -> Vec<(f64, f64)> {
    let (np, nn) = (s_in.len() as f64, s_out.len() as f64);
    let v = ranked(s_in, s_out);
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let s = v[i].0;
        while i < v.len() && v[i].0 == s {
            if v[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        pts.push((fp / nn, tp / np));
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AUROC by brute force over all pairs.
    fn pairwise_auroc(a: &[f64], b: &[f64]) -> f64 {
        let mut s = 0.0;
        for &x in a {
            for &y in b {
                s += if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        s / (a.len() * b.len()) as f64
    }

    #[test]
    fn by_hand_with_ties() {
        let s_in = [0.9, 0.8, 0.5, 0.5];
        let s_out = [0.5, 0.3, 0.8];
        let m = ood_metrics(&s_in, &s_out);
        // Pairs: 0.9 beats 3; 0.8 beats 2, ties 1; each 0.5 beats 1, ties 1 -> (3 + 2.5 + 1.5 + 1.5) / 12.
        assert!((m.auroc - 8.5 / 12.0).abs() < 1e-12, "{}", m.auroc);
        assert!((m.auroc - pairwise_auroc(&s_in, &s_out)).abs() < 1e-12);
        // AP: thresholds 0.9 (P 1, R 1/4), 0.8 (P 2/3, R 2/4), 0.5 (P 4/6, R 1): 1/4*1 + 1/4*2/3 + 2/4*2/3.
        let ap = 0.25 + 0.25 * 2.0 / 3.0 + 0.5 * 4.0 / 6.0;
        assert!((m.aupr - ap).abs() < 1e-12, "{} vs {ap}", m.aupr);
        // TPR reaches 95% only at threshold 0.5, where 2 of 3 OOD pass.
        assert!((m.fpr95 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn gaussian_scores_match_the_closed_form() {
        // s_in ~ N(d, 1), s_out ~ N(0, 1): AUROC = Phi(d / sqrt 2); FPR95 = 1 - Phi(d - 1.645).
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = 1.0;
        let s_in: Vec<f64> = (0..40_000).map(|_| Normal::new(d, 1.0).unwrap().sample(&mut rng)).collect();
        let s_out: Vec<f64> = (0..40_000).map(|_| Normal::new(0.0, 1.0).unwrap().sample(&mut rng)).collect();
        let m = ood_metrics(&s_in, &s_out);
        let phi = |z: f64| 0.5 * (1.0 + libm_erf(z / std::f64::consts::SQRT_2));
        assert!((m.auroc - phi(d / std::f64::consts::SQRT_2)).abs() < 0.005, "{}", m.auroc);
        assert!((m.fpr95 - (1.0 - phi(d - 1.6449))).abs() < 0.01, "{}", m.fpr95);
        let roc = roc_curve(&s_in, &s_out);
        assert_eq!(*roc.last().unwrap(), (1.0, 1.0));
    }

    /// erf by its series (enough terms for |z| < 3).
    fn libm_erf(z: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = z;
        for n in 0..60 {
            sum += term / (2 * n + 1) as f64;
            term *= -z * z / (n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn perfect_separation_is_exactly_one_never_above() {
        // 9 against 9 distinct scores: adding 1/9 nine times gave 1.0000000000000002 for both
        // AUROC and AUPR (`ebm ood --json` printed such values).
        let s_in: Vec<f64> = (0..9).map(|i| 1.0 + i as f64).collect();
        let s_out: Vec<f64> = (0..9).map(|i| -1.0 - i as f64).collect();
        let m = ood_metrics(&s_in, &s_out);
        assert_eq!((m.auroc, m.aupr, m.fpr95), (1.0, 1.0, 0.0));
        let m = ood_metrics(&s_out, &s_in);
        assert_eq!(m.auroc, 0.0);
        // Any sizes, any ties: every metric stays in [0, 1].
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..300 {
            let (a, b) = (rng.gen_range(1..40), rng.gen_range(1..40));
            let shift = rng.gen_range(0.0..20.0);
            let s_in: Vec<f64> = (0..a).map(|_| (rng.gen_range(0.0..10.0f64) + shift).round()).collect();
            let s_out: Vec<f64> = (0..b).map(|_| rng.gen_range(0.0..10.0f64).round()).collect();
            let m = ood_metrics(&s_in, &s_out);
            for v in [m.auroc, m.aupr, m.fpr95] {
                assert!((0.0..=1.0).contains(&v), "{m:?} for {a} in, {b} out");
            }
            assert!((m.auroc - pairwise_auroc(&s_in, &s_out)).abs() < 1e-12);
        }
    }

    #[test]
    fn identical_scores_give_a_half() {
        let m = ood_metrics(&[1.0; 10], &[1.0; 7]);
        assert!((m.auroc - 0.5).abs() < 1e-12);
        assert!((m.fpr95 - 1.0).abs() < 1e-12);
    }
}
