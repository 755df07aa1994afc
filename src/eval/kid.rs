//! Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", ICLR): the unbiased
//! estimate of the squared maximum mean discrepancy between two feature sets with the cubic
//! polynomial kernel k(x, y) = (x.y / d + 1)^3,
//!   MMD^2_u = sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2,
//! on random subsets of m examples of each set drawn without replacement (100 subsets of
//! m = 1,000, or of all examples of the smaller set when it has fewer, as StyleGAN3's
//! `kernel_inception_distance.py` and torch-fidelity), reported as the mean over subsets with
//! their standard deviation (numpy's `std`, as torch-fidelity's `kid_std`). Kernels are computed
//! in float32 on the given device and summed in float64.
use anyhow::bail;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// How KID draws its subsets.
#[derive(Debug, Clone, Copy)]
pub struct KidOptions {
    pub subsets: usize,
    pub subset_size: usize,
    pub seed: u64,
}

impl Default for KidOptions {
    fn default() -> Self {
        KidOptions { subsets: 100, subset_size: 1000, seed: 0 }
    }
}

/// KID: the mean of MMD^2_u over subsets, their standard deviation, and the subsets used.
#[derive(Debug, Clone, Serialize)]
pub struct Kid {
    pub mean: f64,
    pub std: f64,
    pub subsets: usize,
    pub subset_size: usize,
}

/// The cubic polynomial kernel matrix k(a_i, b_j) = (a_i.b_j / d + 1)^3.
fn kernel(a: &Tensor, b: &Tensor) -> Tensor {
    let d = a.size()[1] as f64;
    (a.mm(&b.tr()) / d + 1.0).pow_tensor_scalar(3)
}

/// MMD^2_u of two sets of m examples each ([m, d], m >= 2).
pub fn mmd2_unbiased(x: &Tensor, y: &Tensor) -> f64 {
    let m = x.size()[0] as f64;
    let sum = |k: &Tensor| k.sum(Kind::Double).double_value(&[]);
    let off_diagonal = |k: Tensor| sum(&k) - sum(&k.diagonal(0, 0, 1));
    let within = off_diagonal(kernel(x, x)) + off_diagonal(kernel(y, y));
    within / (m * (m - 1.0)) - 2.0 * sum(&kernel(x, y)) / (m * m)
}

/// KID of feature sets `x` [n1, d] and `y` [n2, d], computed on `device`.
pub fn kid(x: &Tensor, y: &Tensor, opts: &KidOptions, device: Device) -> crate::Result<Kid> {
    let (sx, sy) = (x.size(), y.size());
    if sx.len() != 2 || sy.len() != 2 || sx[1] != sy[1] {
        bail!("KID: feature sets of shapes {sx:?} and {sy:?} do not match");
    }
    if opts.subsets == 0 {
        bail!("KID: the number of subsets must be positive");
    }
    let m = opts.subset_size.min(sx[0] as usize).min(sy[0] as usize);
    if m < 2 {
        bail!("KID: subsets of {m} example(s); the unbiased estimate needs at least 2 in each set");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let (x, y) = (x.to_device(device).to_kind(Kind::Float), y.to_device(device).to_kind(Kind::Float));
    let mut pick = |t: &Tensor, n: i64| {
        let idx: Vec<i64> = rand::seq::index::sample(&mut rng, n as usize, m).into_iter().map(|i| i as i64).collect();
        t.index_select(0, &Tensor::from_slice(&idx).to_device(device))
    };
    let values: Vec<f64> = tch::no_grad(|| {
        (0..opts.subsets)
            .map(|_| {
                let (a, b) = (pick(&x, sx[0]), pick(&y, sy[0]));
                mmd2_unbiased(&a, &b)
            })
            .collect()
    });
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok(Kid { mean, std, subsets: opts.subsets, subset_size: m })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MMD^2_u by the definition, one pair at a time in float64.
    fn direct(x: &[Vec<f64>], y: &[Vec<f64>]) -> f64 {
        let d = x[0].len() as f64;
        let k = |a: &[f64], b: &[f64]| (a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / d + 1.0).powi(3);
        let m = x.len();
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    xx += k(&x[i], &x[j]);
                    yy += k(&y[i], &y[j]);
                }
                xy += k(&x[i], &y[j]);
            }
        }
        let m = m as f64;
        (xx + yy) / (m * (m - 1.0)) - 2.0 * xy / (m * m)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let d = t.size()[1] as usize;
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap().chunks(d).map(|c| c.to_vec()).collect()
    }

    #[test]
    fn kid_matches_the_definition_on_small_sets() {
        tch::manual_seed(5);
        let x = Tensor::randn([9, 6], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([9, 6], (Kind::Float, Device::Cpu)) * 1.5 + 0.3;
        let want = direct(&rows(&x), &rows(&y));
        // Subsets of all 9: every subset is a permutation, and MMD^2_u does not depend on order.
        let k = kid(&x, &y, &KidOptions { subsets: 4, subset_size: 1000, seed: 1 }, Device::Cpu).unwrap();
        assert_eq!(k.subset_size, 9);
        assert!((k.mean - want).abs() < 1e-5 * want.abs().max(1.0), "{} vs {want}", k.mean);
        assert!(k.std < 1e-6, "{}", k.std);
        // Subsets of 5 of 9: the mean over subsets differs from the full set's value but is finite,
        // and the same seed gives the same subsets.
        let o = KidOptions { subsets: 20, subset_size: 5, seed: 7 };
        let (a, b) = (kid(&x, &y, &o, Device::Cpu).unwrap(), kid(&x, &y, &o, Device::Cpu).unwrap());
        assert_eq!((a.mean, a.std, a.subset_size), (b.mean, b.std, 5));
        assert!(a.std > 0.0);
    }

    #[test]
    fn kid_separates_distributions_and_is_unbiased_for_equal_ones() {
        tch::manual_seed(6);
        let x = Tensor::randn([400, 16], (Kind::Float, Device::Cpu));
        let x2 = Tensor::randn([400, 16], (Kind::Float, Device::Cpu));
        let y = Tensor::randn([400, 16], (Kind::Float, Device::Cpu)) + 0.5;
        let o = KidOptions { subsets: 10, subset_size: 200, seed: 0 };
        let same = kid(&x, &x2, &o, Device::Cpu).unwrap();
        let diff = kid(&x, &y, &o, Device::Cpu).unwrap();
        assert!(same.mean.abs() < 0.02, "{same:?}");
        assert!(diff.mean > 10.0 * same.mean.abs().max(1e-3), "{diff:?} vs {same:?}");
        let e = kid(&x.narrow(0, 0, 1), &y, &o, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
    }
}
