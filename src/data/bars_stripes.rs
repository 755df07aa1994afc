//! Noisy bars-and-stripes: a small binary data set whose probability is known exactly, for the
//! RBM experiment (MacKay 2003, ch. 43; the usual RBM test bed).
//!
//! A side x side binary image is drawn by picking one of the K = 2^(side+1) - 2 distinct
//! bars-and-stripes patterns uniformly (each row all on or all off, or each column; the blank and
//! the full image arise both ways and count once), then flipping every pixel independently with
//! probability `flip`. The exact probability of an image v with D = side^2 pixels is the mixture
//!   p(v) = (1/K) sum_k flip^d(v,k) (1 - flip)^(D - d(v,k)),   d = Hamming distance,
//! so held-out log-likelihoods and KL(data || model) over all 2^D images are exact.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The distribution: image side and pixel flip probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarsStripes {
    pub side: usize,
    pub flip: f64,
}

impl BarsStripes {
    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.side * self.side
    }

    /// The distinct noise-free patterns, each as D bits (row-major).
    pub fn patterns(&self) -> Vec<Vec<u8>> {
        let s = self.side;
        let mut out: Vec<Vec<u8>> = Vec::new();
        for mask in 0..(1u32 << s) {
            let rows: Vec<u8> = (0..s * s).map(|p| ((mask >> (p / s)) & 1) as u8).collect();
            let cols: Vec<u8> = (0..s * s).map(|p| ((mask >> (p % s)) & 1) as u8).collect();
            for pat in [rows, cols] {
                if !out.contains(&pat) {
                    out.push(pat);
                }
            }
        }
        out
    }

    /// `n` images as 0/1 values, row-major [n, D], seeded.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xba55);
        let pats = self.patterns();
        let mut v = Vec::with_capacity(n * self.dim());
        for _ in 0..n {
            let p = &pats[rng.gen_range(0..pats.len())];
            v.extend(p.iter().map(|&b| if rng.gen_bool(self.flip) { 1.0 - b as f64 } else { b as f64 }));
        }
        v
    }

    /// The exact log-probability of each image of `v` ([n, D] row-major, values 0/1).
    pub fn log_prob(&self, v: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let pats = self.patterns();
        let (lf, lk) = (self.flip.ln(), (1.0 - self.flip).ln());
        v.chunks(d)
            .map(|img| {
                let terms: Vec<f64> = pats
                    .iter()
                    .map(|p| {
                        let dist = img.iter().zip(p).filter(|(&a, &b)| (a > 0.5) != (b == 1)).count();
                        dist as f64 * lf + (d - dist) as f64 * lk
                    })
                    .collect();
                crate::data::toy2d::log_sum_exp(&terms) - (pats.len() as f64).ln()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// K = 2^(s+1) - 2 patterns, and the exact probabilities sum to one over all 2^D images.
    #[test]
    fn patterns_count_and_probabilities_sum_to_one() {
        for side in [2, 3, 4] {
            let bs = BarsStripes { side, flip: 0.1 };
            assert_eq!(bs.patterns().len(), (1 << (side + 1)) - 2);
        }
        let bs = BarsStripes { side: 3, flip: 0.07 };
        let all: Vec<f64> = (0..1u32 << 9).flat_map(|m| (0..9).map(move |i| ((m >> i) & 1) as f64)).collect();
        let total: f64 = bs.log_prob(&all).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
    }

    /// The empirical frequency of the blank image matches its exact probability.
    #[test]
    fn sample_frequencies_match_the_exact_probability() {
        let bs = BarsStripes { side: 2, flip: 0.2 };
        let n = 40_000;
        let v = bs.sample(n, 3);
        let blanks = v.chunks(4).filter(|img| img.iter().all(|&x| x == 0.0)).count() as f64 / n as f64;
        let p = bs.log_prob(&[0.0; 4])[0].exp();
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!((blanks - p).abs() < 4.0 * se, "frequency {blanks} vs exact {p}");
    }
}
