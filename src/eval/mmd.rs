//! The maximum mean discrepancy between samples and data (Gretton, Borgwardt, Rasch, Schölkopf &
//! Smola 2012, "A kernel two-sample test", JMLR 13), with the Gaussian RBF kernel
//! k(x, y) = exp(-|x - y|^2 / (2 h^2)) on flattened inputs:
//!   MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m-1)) + sum_{i != j} k(y_i, y_j) / (n (n-1))
//!             - 2 sum_{i,j} k(x_i, y_j) / (m n)   (their eq. 3, unbiased; can be negative),
//! the bandwidth h by the median heuristic: the median of the pairwise distances |z_i - z_j|,
//! i < j, of the pooled sample (Gretton et al. 2012, section 8). The p-value is a permutation test:
//! the share of random relabellings of the pooled sample whose MMD^2_u reaches the observed one
//! (counting the observed labelling, so it is never 0).
use crate::objectives::ksd::{median_distance, sq_dists};
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// MMD^2_u, the bandwidth it used, and the permutation test's p-value.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Mmd {
    pub mmd2: f64,
    pub bandwidth: f64,
    pub p_value: f64,
    pub permutations: usize,
}

/// MMD^2_u from the pooled kernel matrix `k` [m+n, m+n] and a 0/1 float mask of the first set.
fn mmd2_from_kernel(k: &Tensor, first: &Tensor, m: i64, n: i64) -> f64 {
    let second = first.ones_like() - first;
    let diag = k.diagonal(0, 0, 1);
    let within = |w: &Tensor, c: i64| {
        let s = w.dot(&k.mv(w)) - diag.dot(&w.square());
        s.double_value(&[]) / (c * (c - 1)) as f64
    };
    let cross = first.dot(&k.mv(&second)).double_value(&[]) / (m * n) as f64;
    within(first, m) + within(&second, n) - 2.0 * cross
}

/// MMD^2_u between `x` [m, ...] and `y` [n, ...] with the median-heuristic bandwidth (or `h`),
/// tested by `permutations` random relabellings (0: no test, p-value 1).
pub fn mmd(x: &Tensor, y: &Tensor, h: Option<f64>, permutations: usize) -> crate::Result<Mmd> {
    let (m, n) = (x.size()[0], y.size()[0]);
    if m < 2 || n < 2 {
        bail!("MMD needs at least 2 examples in each set ({m} and {n} given)");
    }
    let (xf, yf) = (x.flatten(1, -1), y.flatten(1, -1));
    if xf.size()[1] != yf.size()[1] {
        bail!("MMD: the two sets have different example sizes ({} and {})", xf.size()[1], yf.size()[1]);
    }
    let yf = yf.to_device(xf.device());
    let z = Tensor::cat(&[xf, yf], 0).to_kind(Kind::Double);
    let h = h.unwrap_or_else(|| median_distance(&z));
    if !(h.is_finite() && h > 0.0) {
        bail!("MMD: bandwidth {h} (all points coincide?)");
    }
    let k = (sq_dists(&z, &z) / (-2.0 * h * h)).exp();
    let mask = |idx: &Tensor| {
        let f = Tensor::zeros([m + n], (Kind::Double, z.device()));
        f.index_fill(0, &idx.narrow(0, 0, m), 1.0)
    };
    let first = mask(&Tensor::arange(m + n, (Kind::Int64, z.device())));
    let mmd2 = mmd2_from_kernel(&k, &first, m, n);
    let mut reached = 1usize;
    for _ in 0..permutations {
        let perm = Tensor::randperm(m + n, (Kind::Int64, Device::Cpu)).to_device(z.device());
        if mmd2_from_kernel(&k, &mask(&perm), m, n) >= mmd2 {
            reached += 1;
        }
    }
    Ok(Mmd { mmd2, bandwidth: h, p_value: reached as f64 / (permutations + 1) as f64, permutations })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same statistic by explicit double loops in f64.
    fn mmd2_loops(x: &[Vec<f64>], y: &[Vec<f64>], h: f64) -> f64 {
        let k = |a: &[f64], b: &[f64]| {
            (-a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / (2.0 * h * h)).exp()
        };
        let within = |s: &[Vec<f64>]| {
            let mut t = 0.0;
            for (i, a) in s.iter().enumerate() {
                for (j, b) in s.iter().enumerate() {
                    if i != j {
                        t += k(a, b);
                    }
                }
            }
            t / (s.len() * (s.len() - 1)) as f64
        };
        let cross: f64 = x.iter().flat_map(|a| y.iter().map(move |b| k(a, b))).sum();
        within(x) + within(y) - 2.0 * cross / (x.len() * y.len()) as f64
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn matches_double_loops_and_tests_a_shift() {
        tch::manual_seed(3);
        let x = Tensor::randn([40, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([30, 3], (Kind::Float, Device::Cpu)) + 0.7;
        let got = mmd(&x, &y, Some(1.3), 0).unwrap();
        let want = mmd2_loops(&rows(&x), &rows(&y), 1.3);
        assert!((got.mmd2 - want).abs() < 1e-10, "{} vs {want}", got.mmd2);
        // The median heuristic: the median of the 70*69/2 pooled distances, by sorting.
        let z = rows(&Tensor::cat(&[&x, &y], 0));
        let mut d: Vec<f64> = Vec::new();
        for i in 0..z.len() {
            for j in i + 1..z.len() {
                d.push(z[i].iter().zip(&z[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt());
            }
        }
        d.sort_by(f64::total_cmp);
        let med = mmd(&x, &y, None, 0).unwrap().bandwidth;
        assert!((med - d[(d.len() - 1) / 2]).abs() < 1e-9, "{med}"); // torch's median: the lower one
                                                                     // Same distribution: not rejected; a shift of one standard deviation: rejected.
        let a = Tensor::randn([300, 2], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([300, 2], (Kind::Float, Device::Cpu));
        let same = mmd(&a, &b, None, 200).unwrap();
        let shifted = mmd(&a, &(b + 1.0), None, 200).unwrap();
        assert!(same.p_value > 0.01 && same.mmd2.abs() < 0.01, "{same:?}");
        assert!(shifted.p_value < 0.01 && shifted.mmd2 > 0.05, "{shifted:?}");
    }
}
