//! Calibration of p(y|x): expected and maximum calibration error over equal-width confidence bins
//! with (lo, hi] intervals, each bin weighted by its share of examples (as JEM++'s
//! Task/calibration.py): ECE = sum_b (n_b / N) |acc_b - conf_b|, MCE = max_b |acc_b - conf_b|.
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Mean correctness in the bin (None when empty).
    pub accuracy: Option<f64>,
    /// Mean confidence in the bin (None when empty).
    pub confidence: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub ece: f64,
    pub mce: f64,
    pub accuracy: f64,
    pub mean_confidence: f64,
    pub count: usize,
    pub bins: Vec<Bin>,
}

/// Calibration from each example's confidence (max softmax probability) and correctness.
pub fn calibration(confidence: &[f64], correct: &[bool], n_bins: usize) -> Calibration {
    assert_eq!(confidence.len(), correct.len(), "one correctness per confidence");
    assert!(n_bins > 0, "at least one bin");
    let n = confidence.len();
    let mut sums = vec![(0usize, 0.0f64, 0.0f64); n_bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        // (lo, hi] bins: bin b holds b/n < c <= (b+1)/n; a confidence of exactly 0 goes to bin 0.
        let b = ((c * n_bins as f64).ceil() as usize).saturating_sub(1).min(n_bins - 1);
        sums[b].0 += 1;
        sums[b].1 += ok as u8 as f64;
        sums[b].2 += c;
    }
    let mut ece = 0.0;
    let mut mce: f64 = 0.0;
    let bins: Vec<Bin> = sums
        .iter()
        .enumerate()
        .map(|(b, &(count, acc, conf))| {
            let (lo, hi) = (b as f64 / n_bins as f64, (b + 1) as f64 / n_bins as f64);
            if count == 0 {
                return Bin { lo, hi, count, accuracy: None, confidence: None };
            }
            let (a, c) = (acc / count as f64, conf / count as f64);
            ece += count as f64 / n as f64 * (a - c).abs();
            mce = mce.max((a - c).abs());
            Bin { lo, hi, count, accuracy: Some(a), confidence: Some(c) }
        })
        .collect();
    let accuracy = correct.iter().filter(|&&c| c).count() as f64 / n.max(1) as f64;
    let mean_confidence = confidence.iter().sum::<f64>() / n.max(1) as f64;
    Calibration { ece, mce, accuracy, mean_confidence, count: n, bins }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_by_hand() {
        // 4 bins. Bin (0.5, 0.75]: confidences 0.6, 0.7 with one right: acc 0.5, conf 0.65.
        // Bin (0.75, 1]: 0.8, 0.9, 1.0 all right: acc 1, conf 0.9. Bin (0, 0.25]: 0.25 wrong.
        let conf = [0.6, 0.7, 0.8, 0.9, 1.0, 0.25];
        let ok = [true, false, true, true, true, false];
        let c = calibration(&conf, &ok, 4);
        let expected = 2.0 / 6.0 * 0.15 + 3.0 / 6.0 * 0.1 + 1.0 / 6.0 * 0.25;
        assert!((c.ece - expected).abs() < 1e-12, "{} vs {expected}", c.ece);
        assert!((c.mce - 0.25).abs() < 1e-12);
        assert_eq!(c.bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![1, 0, 2, 3]);
        // 0.25 sits on a boundary: (lo, hi] puts it in the first bin, 0.75 would go to the third.
        assert_eq!(calibration(&[0.75], &[true], 4).bins[2].count, 1);
    }

    #[test]
    fn a_calibrated_predictor_has_ece_near_zero() {
        // Confidence c is right with probability c: ECE -> 0 as N grows (Monte-Carlo check).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let conf: Vec<f64> = (0..200_000).map(|_| rng.gen_range(0.1..1.0)).collect();
        let ok: Vec<bool> = conf.iter().map(|&c| rng.gen_bool(c)).collect();
        let c = calibration(&conf, &ok, 20);
        assert!(c.ece < 0.01, "ECE {}", c.ece);
        // Always claiming 0.95 at 60% accuracy: ECE = 0.35 exactly.
        let ok: Vec<bool> = (0..1000).map(|i| i % 5 < 3).collect();
        let c = calibration(&vec![0.95; 1000], &ok, 20);
        assert!((c.ece - 0.35).abs() < 1e-12);
    }
}
