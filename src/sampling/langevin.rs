//! SGLD / unadjusted Langevin dynamics on the input, in the three forms of the literature:
//! - JEM (Grathwohl et al. 2020, train_wrn_ebm.py): x <- x - step * grad E(x) + noise * z;
//! - IGEBM (Du & Mordatch 2019): x <- x + noise * z; x <- x - step * clip(grad E(x), +-c); clamp;
//! - textbook ULA: x <- x - (eps^2 / 2) grad E(x) + eps z, i.e. step = eps^2 and noise = eps,
//!   which leaves exp(-E) invariant as eps -> 0.
use super::energy_grad;
use crate::config::{SamplerConfig, SgldVariant};
use tch::Tensor;

/// One configured Langevin sampler.
#[derive(Debug, Clone)]
pub struct Langevin {
    pub variant: SgldVariant,
    pub step_size: f64,
    pub noise: f64,
    pub grad_clip: f64,
    /// Clamp to this range after every step.
    pub clamp: Option<(f64, f64)>,
}

impl Langevin {
    pub fn from_config(c: &SamplerConfig, data_range: (f64, f64)) -> Self {
        // IGEBM always clamps to the data range; the others only when asked.
        let clamp = (c.clamp || c.variant == SgldVariant::Igebm).then_some(data_range);
        Langevin { variant: c.variant, step_size: c.step_size, noise: c.noise, grad_clip: c.grad_clip, clamp }
    }

    /// One update of x given the energy function (a new tensor; `x` is left as it is).
    pub fn step(&self, energy: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
        let mut x = x.detach().copy();
        let mut noise = x.empty_like();
        self.update_(energy, &mut x, &mut noise);
        x
    }

    /// One update of `x` in place, drawing the Gaussian noise into `noise` (of x's shape): no
    /// tensor of the chains' size is allocated besides those of the energy's own graph.
    fn update_(&self, energy: &dyn Fn(&Tensor) -> Tensor, x: &mut Tensor, noise: &mut Tensor) {
        match self.variant {
            SgldVariant::Jem => {
                let (_, mut g) = energy_grad(energy, x);
                let _ = x.g_sub_(&g.g_mul_scalar_(self.step_size));
                let _ = x.g_add_(&noise.normal_(0.0, self.noise));
            }
            SgldVariant::Igebm => {
                let _ = x.g_add_(&noise.normal_(0.0, self.noise));
                let (_, mut g) = energy_grad(energy, x);
                let _ = g.clamp_(-self.grad_clip, self.grad_clip).g_mul_scalar_(self.step_size);
                let _ = x.g_sub_(&g);
            }
            SgldVariant::Textbook => {
                let (_, mut g) = energy_grad(energy, x);
                let _ = x.g_sub_(&g.g_mul_scalar_(self.step_size / 2.0));
                let _ = x.g_add_(&noise.normal_(0.0, self.step_size.sqrt()));
            }
        }
        if let Some((lo, hi)) = self.clamp {
            let _ = x.clamp_(lo, hi);
        }
    }

    /// Runs `steps` updates from `x0` and returns detached samples (a new tensor). The chains and
    /// the noise live in two buffers updated in place; no host synchronisation happens inside
    /// the loop.
    pub fn run(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> Tensor {
        let mut x = x0.detach().copy();
        let mut noise = x.empty_like();
        for _ in 0..steps {
            self.update_(energy, &mut x, &mut noise);
        }
        x
    }
}

impl super::Sampler for Langevin {
    fn name(&self) -> &'static str {
        "langevin"
    }

    fn sample(&self, energy: &dyn Fn(&Tensor) -> Tensor, x0: &Tensor, steps: usize) -> super::Chains {
        super::Chains { x: self.run(energy, x0, steps), acceptance: None }
    }

    /// A network that is an MLP energy runs fused ([`super::mlp_langevin`]: the same updates
    /// and random stream, the gradient by hand); anything else through autograd.
    fn sample_energy(&self, energy: super::Energy<'_>, x0: &Tensor, steps: usize) -> super::Chains {
        match super::mlp_langevin::fused_weights(energy, x0) {
            Some(m) => {
                let x = super::mlp_langevin::run(&m, self, x0, steps, super::mlp_langevin::TILE);
                super::Chains { x, acceptance: None }
            }
            None => super::sample_by_autograd(self, energy, x0, steps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// E(x) = |x|^2 / 2: the standard Gaussian.
    fn gaussian_energy(x: &Tensor) -> Tensor {
        (x * x).sum_dim_intlist([1].as_slice(), false, Kind::Float) * 0.5
    }

    #[test]
    fn textbook_ula_samples_a_standard_gaussian() {
        tch::manual_seed(0);
        let s = Langevin { variant: SgldVariant::Textbook, step_size: 0.05, noise: 0.0, grad_clip: 1.0, clamp: None };
        let x0 = Tensor::zeros([4000, 2], (Kind::Float, Device::Cpu)) + 3.0;
        let x = s.run(&gaussian_energy, &x0, 600);
        let mean = x.mean(Kind::Float).double_value(&[]);
        let var = x.var(true).double_value(&[]);
        // From 3, the mean contracts by (1 - step/2)^600 ~ e^-15; ULA's stationary variance for this
        // target is 1/(1 - step/4) ~= 1.013.
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.06, "var {var}");
    }

    #[test]
    fn jem_variant_descends_the_energy_and_igebm_clips_and_clamps() {
        tch::manual_seed(0);
        let x0 = Tensor::ones([8, 2], (Kind::Float, Device::Cpu)) * 2.0;
        let jem = Langevin { variant: SgldVariant::Jem, step_size: 0.1, noise: 0.0, grad_clip: 1.0, clamp: None };
        // Without noise, x <- x - 0.1 x = 0.9 x.
        let x1 = jem.step(&gaussian_energy, &x0);
        assert!(x1.allclose(&(&x0 * 0.9), 1e-6, 1e-6, false));
        let ig = Langevin {
            variant: SgldVariant::Igebm,
            step_size: 10.0,
            noise: 0.0,
            grad_clip: 0.01,
            clamp: Some((-1.0, 1.0)),
        };
        let x2 = ig.step(&gaussian_energy, &(&x0 * 0.5));
        // Gradient 1.0 clipped to 0.01, times 10: a move of exactly 0.1, then clamped to 1.
        assert!(x2.allclose(&(Tensor::ones([8, 2], (Kind::Float, Device::Cpu)) * 0.9), 1e-6, 1e-6, false));
        let x3 = ig.step(&gaussian_energy, &(&x0 * 5.0));
        assert!(x3.max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn parameters_get_no_gradient_from_sampling() {
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let energy = |x: &Tensor| (x * &w).sum_dim_intlist([1].as_slice(), false, Kind::Float);
        let s = Langevin { variant: SgldVariant::Jem, step_size: 0.1, noise: 0.01, grad_clip: 1.0, clamp: None };
        let x = s.run(&energy, &Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)), 5);
        assert!(!x.requires_grad());
        assert!(!w.grad().defined());
    }
}
