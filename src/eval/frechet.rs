//! The Frechet distance between Gaussians fitted to two feature sets, FID's formula (Heusel et al.
//! 2017, "GANs trained by a two time-scale update rule converge to a local Nash equilibrium",
//! section 3; Dowson and Landau 1982):
//!   d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}),
//! in float64. tr((S1 S2)^{1/2}) is the sum of the square roots of the eigenvalues of the
//! symmetric positive semi-definite S1^{1/2} S2 S1^{1/2} (similar to S1 S2), from two symmetric
//! eigendecompositions (`linalg_eigh`) with round-off's tiny negative eigenvalues clamped to 0:
//! the stable form of scipy's `sqrtm(S1 @ S2)` of the standard tools.
//!
//! The Gaussian's moments are accumulated batch by batch (sums of x and of x x^T in float64, about
//! a shift taken from the first batch), so memory is flat in the number of examples;
//! S = (sum (x-c)(x-c)^T - n (mu-c)(mu-c)^T) / (n - 1), numpy's `cov` (unbiased).
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// Mean and covariance of a feature set (float64, on the CPU) and how many examples made them.
pub struct Gaussian {
    pub n: i64,
    /// [d]
    pub mean: Tensor,
    /// [d, d]
    pub cov: Tensor,
}

/// Running sums of features (float64), for [`Gaussian`].
pub struct Moments {
    n: i64,
    shift: Option<Tensor>,
    sum: Tensor,
    outer: Tensor,
}

impl Moments {
    pub fn new(dim: i64) -> Self {
        let z = |s: &[i64]| Tensor::zeros(s, (Kind::Double, Device::Cpu));
        Moments { n: 0, shift: None, sum: z(&[dim]), outer: z(&[dim, dim]) }
    }

    /// Adds a batch of features [B, d].
    pub fn add(&mut self, x: &Tensor) {
        let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
        let shift = self.shift.get_or_insert_with(|| x.mean_dim(0, false, Kind::Double));
        let c = x - &*shift;
        self.sum += c.sum_dim_intlist(0, false, Kind::Double);
        self.outer += c.tr().mm(&c);
        self.n += c.size()[0];
    }

    pub fn count(&self) -> i64 {
        self.n
    }

    /// The fitted Gaussian; `what` names the set in the error for fewer than two examples.
    pub fn gaussian(&self, what: &str) -> crate::Result<Gaussian> {
        if self.n < 2 {
            bail!("{what}: {} image(s); a covariance needs at least 2 (FID fits a Gaussian to the features)", self.n);
        }
        let shift = self.shift.as_ref().expect("n >= 2");
        let d = &self.sum / self.n as f64;
        let cov = (&self.outer - d.outer(&d) * self.n as f64) / (self.n - 1) as f64;
        let cov = (&cov + cov.tr()) / 2.0;
        Ok(Gaussian { n: self.n, mean: d + shift, cov })
    }
}

/// A symmetric positive semi-definite matrix's square root V diag(sqrt(max(l, 0))) V^T.
fn sqrt_psd(s: &Tensor) -> Tensor {
    let (l, v) = s.linalg_eigh("L");
    (&v * l.clamp_min(0.0).sqrt().unsqueeze(0)).mm(&v.tr())
}

/// tr((S1 S2)^{1/2}) for symmetric positive semi-definite S1, S2, from the eigenvalues of
/// S1^{1/2} S2 S1^{1/2}.
pub fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> f64 {
    let r = sqrt_psd(s1);
    let m = r.mm(s2).mm(&r);
    let m = (&m + m.tr()) / 2.0;
    m.linalg_eigvalsh("L").clamp_min(0.0).sqrt().sum(Kind::Double).double_value(&[])
}

/// The squared Frechet distance between two Gaussians (FID when they are fitted to Inception features).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> crate::Result<f64> {
    let d = a.mean.size();
    if d.len() != 1 || b.mean.size() != d || a.cov.size() != [d[0], d[0]] || b.cov.size() != [d[0], d[0]] {
        bail!(
            "Frechet distance: means {:?} and {:?}, covariances {:?} and {:?} do not match",
            a.mean.size(),
            b.mean.size(),
            a.cov.size(),
            b.cov.size()
        );
    }
    tch::no_grad(|| {
        let f = |t: &Tensor| t.to_device(Device::Cpu).to_kind(Kind::Double);
        let (m1, m2, s1, s2) = (f(&a.mean), f(&b.mean), f(&a.cov), f(&b.cov));
        let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
        if ![&m1, &m2, &s1, &s2].into_iter().all(finite) {
            bail!("Frechet distance: the features' mean or covariance is not finite");
        }
        let dm = (&m1 - &m2).square().sum(Kind::Double).double_value(&[]);
        let tr = s1.trace().double_value(&[]) + s2.trace().double_value(&[]);
        Ok(dm + tr - 2.0 * trace_sqrt_product(&s1, &s2))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn gaussian(mean: &[f64], cov: &[f64]) -> Gaussian {
        let d = mean.len() as i64;
        Gaussian { n: 100, mean: t(mean, &[d]), cov: t(cov, &[d, d]) }
    }

    #[test]
    fn diagonal_covariances_have_the_closed_form() {
        // Commuting covariances: d^2 = |m1 - m2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
        let a = gaussian(&[0.0, 1.0, 2.0], &[4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0]);
        let b = gaussian(&[1.0, 1.0, 0.0], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.25]);
        let want = (1.0 + 0.0 + 4.0) + (2.0f64 - 1.0).powi(2) + 0.0 + (3.0f64 - 0.5).powi(2);
        assert!((frechet_distance(&a, &b).unwrap() - want).abs() < 1e-10);
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-10);
    }

    #[test]
    fn non_commuting_2x2_covariances_have_the_closed_form() {
        // For 2 x 2 M with positive eigenvalues, tr(M^{1/2}) = sqrt(tr M + 2 sqrt(det M)).
        let s1 = [2.0, 0.5, 0.5, 1.0];
        let s2 = [1.0, -0.3, -0.3, 3.0];
        let m = t(&s1, &[2, 2]).mm(&t(&s2, &[2, 2]));
        let (trm, det) = (m.trace().double_value(&[]), m.det().double_value(&[]));
        let tr_sqrt = (trm + 2.0 * det.sqrt()).sqrt();
        let want = (0.5f64.powi(2) + 2.0f64.powi(2)) + (3.0 + 4.0) - 2.0 * tr_sqrt;
        let got = frechet_distance(&gaussian(&[0.0, 0.0], &s1), &gaussian(&[0.5, -2.0], &s2)).unwrap();
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    }

    #[test]
    fn moments_match_the_two_pass_covariance_and_rank_deficient_sets_give_zero() {
        tch::manual_seed(3);
        let x = Tensor::randn([40, 5], (Kind::Double, Device::Cpu)) * 3.0 + 100.0;
        let mut m = Moments::new(5);
        for c in x.split(7, 0) {
            m.add(&c);
        }
        let g = m.gaussian("x").unwrap();
        let mean = x.mean_dim(0, false, Kind::Double);
        let c = &x - &mean;
        let cov = c.tr().mm(&c) / 39.0;
        assert!((g.mean - mean).abs().max().double_value(&[]) < 1e-10);
        assert!((&g.cov - cov).abs().max().double_value(&[]) < 1e-10);
        // 40 examples in 64 dimensions: a singular covariance; the distance to itself is still ~0.
        let y = Tensor::randn([40, 64], (Kind::Double, Device::Cpu));
        let mut m = Moments::new(64);
        m.add(&y);
        let g = m.gaussian("y").unwrap();
        assert!(frechet_distance(&g, &g).unwrap().abs() < 1e-5);
        let mut one = Moments::new(64);
        one.add(&y.narrow(0, 0, 1));
        assert!(one.gaussian("one image").err().unwrap().to_string().contains("at least 2"));
    }
}
