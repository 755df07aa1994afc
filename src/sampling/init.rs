//! Where fresh chains start: uniform noise U(-r, r) (JEM, IGEBM), or JEM++'s informative
//! initialisation (Yang & Ji 2021, "JEM++: Improved Techniques for Training JEM", sec. 3.2), one
//! Gaussian per class fitted to the training examples:
//!
//!   mu_c    = (1/n_c) sum_{i: y_i = c} x_i
//!   Sigma_c = (1/(n_c - 1)) sum_{i: y_i = c} (x_i - mu_c)(x_i - mu_c)^T + ridge * I
//!   x ~ N(mu_c, Sigma_c):  x = mu_c + L_c z,  L_c L_c^T = Sigma_c (Cholesky),  z ~ N(0, I),
//!
//! clamped to [-r, r]. A chain of known class (a per-class buffer block) starts from its class's
//! Gaussian; otherwise the class is drawn uniformly, as JEM++ draws its restarts. Without labels
//! the mixture is one Gaussian of all examples. The fit is a pure function of the training
//! examples, so a resumed run refits the same distribution instead of storing it.
use crate::data::Dataset;
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// The distribution fresh chains (the buffer's first fill and its restarts) are drawn from.
#[derive(Debug)]
pub enum ChainInit {
    /// U(-range, range) in every coordinate.
    Uniform { range: f64 },
    /// A Gaussian per class, clamped to [-range, range].
    ClassGaussians(ClassGaussians),
}

impl ChainInit {
    /// Half-width of the box fresh chains live in.
    pub fn range(&self) -> f64 {
        match self {
            ChainInit::Uniform { range } => *range,
            ChainInit::ClassGaussians(g) => g.range,
        }
    }

    /// `dims[0]` fresh chains of shape `dims[1..]`; `y` gives each chain's class where known.
    pub fn sample(&self, dims: &[i64], y: Option<&Tensor>, device: Device) -> Tensor {
        match self {
            ChainInit::Uniform { range } => uniform(dims, *range, device),
            ChainInit::ClassGaussians(g) => g.sample(dims, y),
        }
    }
}

/// U(-r, r) of the given shape.
pub fn uniform(dims: &[i64], r: f64, device: Device) -> Tensor {
    Tensor::rand(dims, (Kind::Float, device)) * (2.0 * r) - r
}

/// One Gaussian per class over the flattened examples.
#[derive(Debug)]
pub struct ClassGaussians {
    /// [K, D] class means.
    pub means: Tensor,
    /// [K, D, D] lower Cholesky factors of the (ridged) class covariances.
    pub chol: Tensor,
    /// Samples are clamped to [-range, range].
    pub range: f64,
}

impl ClassGaussians {
    /// Fits the Gaussians to the examples `indices` of `ds` (their labels, when `classes` is
    /// Some and the set has labels; else one Gaussian), on `device`. Sums run in float64.
    pub fn fit(
        ds: &Dataset,
        indices: &[usize],
        classes: Option<usize>,
        ridge: f64,
        range: f64,
        device: Device,
    ) -> crate::Result<Self> {
        let k = match (classes, &ds.labels) {
            (Some(k), Some(_)) => k,
            _ => 1,
        };
        let label = |i: usize| if k == 1 { 0 } else { ds.labels.as_ref().map_or(0, |l| l[i] as usize) };
        let d = ds.example_numel() as i64;
        let mut means = Vec::with_capacity(k);
        let mut chols = Vec::with_capacity(k);
        for c in 0..k {
            let members: Vec<usize> = indices.iter().copied().filter(|&i| label(i) == c).collect();
            if members.len() < 2 {
                bail!(
                    "{}: class {c} has {} training example(s); buffer.init = \"class-gaussian\" needs at least 2 per class",
                    ds.name,
                    members.len()
                );
            }
            let (mean, cov) = moments(ds, &members, device);
            let cov = cov + Tensor::eye(d, (Kind::Double, device)) * ridge;
            let l = cov.linalg_cholesky(false);
            means.push(mean.to_kind(Kind::Float));
            chols.push(l.to_kind(Kind::Float));
        }
        Ok(ClassGaussians { means: Tensor::stack(&means, 0), chol: Tensor::stack(&chols, 0), range })
    }

    pub fn classes(&self) -> i64 {
        self.means.size()[0]
    }

    /// `dims[0]` draws of shape `dims[1..]`: chain i from the Gaussian of class y_i (a uniform
    /// class where `y` is None), clamped to the range.
    pub fn sample(&self, dims: &[i64], y: Option<&Tensor>) -> Tensor {
        let device = self.means.device();
        let (n, k, d) = (dims[0], self.classes(), self.means.size()[1]);
        let y = match y {
            Some(y) if k > 1 => y.to_device(device),
            _ => Tensor::randint(k, [n], (Kind::Int64, device)),
        };
        let z = Tensor::randn([n, d], (Kind::Float, device));
        let mut out = self.means.index_select(0, &y);
        for c in 0..k {
            let idx = y.eq(c).nonzero().view([-1]);
            if idx.size()[0] == 0 {
                continue;
            }
            // x = mu + L z for the rows of class c: (z_rows L^T), added to their means.
            let drawn = z.index_select(0, &idx).matmul(&self.chol.get(c).tr());
            let _ = out.index_add_(0, &idx, &drawn);
        }
        out.clamp_(-self.range, self.range).view(dims)
    }
}

/// The mean [D] and the unbiased covariance [D, D] (float64) of the examples `members`, read in
/// chunks so that only one chunk of examples is held as float32 at a time.
fn moments(ds: &Dataset, members: &[usize], device: Device) -> (Tensor, Tensor) {
    const CHUNK: usize = 2048;
    let n = members.len() as f64;
    let d = ds.example_numel() as i64;
    let flat = |chunk: &[usize]| ds.batch(chunk).0.view([-1, d]).to_device(device).to_kind(Kind::Double);
    let mut sum = Tensor::zeros([d], (Kind::Double, device));
    for chunk in members.chunks(CHUNK) {
        sum += flat(chunk).sum_dim_intlist([0].as_slice(), false, Kind::Double);
    }
    let mean = sum / n;
    let mut scatter = Tensor::zeros([d, d], (Kind::Double, device));
    for chunk in members.chunks(CHUNK) {
        let centred = flat(chunk) - &mean;
        scatter += centred.tr().matmul(&centred);
    }
    (mean, scatter / (n - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Pixels;

    /// Points of two classes with known moments: the fit recovers each class's mean and unbiased
    /// covariance (plus the ridge) exactly, and draws of class c have those moments.
    #[test]
    fn the_fitted_gaussians_have_the_classes_moments() {
        // Class 0: four points of a square; class 1: three points on a line.
        let pts: Vec<f32> = vec![1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 2.0, 0.0, 3.0, 0.5, 4.0, 1.0];
        let labels = vec![0, 0, 0, 0, 1, 1, 1];
        let ds = Dataset::new("pts", Pixels::F32(pts), vec![2], Some(labels), vec!["a".into(), "b".into()]).unwrap();
        let g = ClassGaussians::fit(&ds, &(0..7).collect::<Vec<_>>(), Some(2), 0.01, 10.0, Device::Cpu).unwrap();
        let means: Vec<f32> = Vec::try_from(&g.means.view([-1])).unwrap();
        assert_eq!(means, vec![0.0, 0.0, 3.0, 0.5]);
        let cov = |c: i64| g.chol.get(c).matmul(&g.chol.get(c).tr());
        // Class 0: var 4/3 in each coordinate, no correlation; class 1: var (1, 0.25), cov 0.5.
        let want0 = Tensor::from_slice(&[4.0f32 / 3.0 + 0.01, 0.0, 0.0, 4.0 / 3.0 + 0.01]).view([2, 2]);
        let want1 = Tensor::from_slice(&[1.01f32, 0.5, 0.5, 0.26]).view([2, 2]);
        assert!(cov(0).allclose(&want0, 1e-5, 1e-6, false), "{}", cov(0));
        assert!(cov(1).allclose(&want1, 1e-5, 1e-6, false), "{}", cov(1));
        tch::manual_seed(0);
        let y = Tensor::ones([200_000], (Kind::Int64, Device::Cpu));
        let x = g.sample(&[200_000, 2], Some(&y));
        let m = x.mean_dim([0].as_slice(), false, Kind::Float);
        let c = x.tr().cov(1, None::<Tensor>, None::<Tensor>);
        assert!(m.allclose(&Tensor::from_slice(&[3.0f32, 0.5]), 0.0, 0.01, false), "{m}");
        assert!(c.allclose(&want1, 0.0, 0.01, false), "{c}");
    }

    #[test]
    fn draws_are_clamped_and_unknown_classes_are_mixed() {
        let pts: Vec<f32> = vec![-0.9, -0.8, -0.95, 0.9, 0.8, 0.95];
        let classes = vec!["a".into(), "b".into()];
        let ds = Dataset::new("pts", Pixels::F32(pts), vec![1], Some(vec![0, 0, 0, 1, 1, 1]), classes).unwrap();
        let g = ClassGaussians::fit(&ds, &[0, 1, 2, 3, 4, 5], Some(2), 1.0, 1.0, Device::Cpu).unwrap();
        tch::manual_seed(1);
        let x = g.sample(&[10_000, 1], None);
        assert!(x.abs().max().double_value(&[]) <= 1.0);
        // Half the draws from each class: the mean of the mixture is near 0.
        assert!(x.mean(Kind::Float).double_value(&[]).abs() < 0.05);
        let e = ClassGaussians::fit(&ds, &[0, 1, 2, 3], Some(2), 1.0, 1.0, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("class 1 has 1 training example") && e.contains("buffer.init"), "{e}");
    }
}
