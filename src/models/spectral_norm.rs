//! Spectral normalisation (Miyato et al. 2018): W / sigma(W), with sigma estimated by power
//! iteration on persistent vectors u, v that are updated once per training forward pass and left
//! untouched at evaluation. Names follow PyTorch: `weight_orig`, `weight_u`, `weight_v`.
use tch::{nn, Tensor};

/// The persistent power-iteration state of one weight.
#[derive(Debug)]
pub struct SpectralNorm {
    pub u: Tensor,
    pub v: Tensor,
}

const EPS: f64 = 1e-12;

fn normalize(t: &Tensor) -> Tensor {
    t / (t.norm() + EPS)
}

impl SpectralNorm {
    /// Creates u [out], v [in] for a weight whose first dimension is `out` and runs 15 initial
    /// iterations, as PyTorch does.
    pub fn new(p: &nn::Path, weight: &Tensor) -> Self {
        let size = weight.size();
        let out = size[0];
        let inn: i64 = size[1..].iter().product();
        // u and v are buffers: saved with the weights, never trained.
        let opts = (tch::Kind::Float, p.device());
        let u = p.add("weight_u", normalize(&Tensor::randn([out], opts)), false);
        let v = p.add("weight_v", normalize(&Tensor::randn([inn], opts)), false);
        let sn = SpectralNorm { u, v };
        for _ in 0..15 {
            sn.power_iteration(weight);
        }
        sn
    }

    /// One step of v <- W^T u / |W^T u|, u <- W v / |W v| on the stored vectors.
    pub fn power_iteration(&self, weight: &Tensor) {
        tch::no_grad(|| {
            let w = weight.view([weight.size()[0], -1]);
            let v = normalize(&w.tr().mv(&self.u));
            let u = normalize(&w.mv(&v));
            self.v.shallow_clone().copy_(&v);
            self.u.shallow_clone().copy_(&u);
        });
    }

    /// sigma = u^T W v, differentiable in W. The graph keeps copies of u and v (as PyTorch does):
    /// a later training pass of the same step (BatchNorm runs data and samples as separate passes)
    /// advances the stored vectors in place, which must not reach this pass's backward.
    pub fn sigma(&self, weight: &Tensor) -> Tensor {
        let w = weight.view([weight.size()[0], -1]);
        self.u.copy().dot(&w.mv(&self.v.copy()))
    }

    /// The normalised weight; in training mode the power iteration advances first.
    pub fn normalised(&self, weight: &Tensor, train: bool) -> Tensor {
        if train {
            self.power_iteration(weight);
        }
        weight / self.sigma(weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn a_conv_weight_reshaped_as_the_wrn_does_is_normalised_to_spectral_norm_one() {
        // A 3x3 conv weight [out, in, 3, 3], seen by the power iteration as [out, in*3*3] (as for
        // every conv of the WRN and the ConvNet). Its largest singular value, computed
        // independently of u and v (the SVD, and linalg_norm of order 2 over both dimensions:
        // the matrix 2-norm), is 1 after normalisation.
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let w = Tensor::randn([32, 16, 3, 3], (Kind::Float, Device::Cpu)) * 0.1;
        let sn = SpectralNorm::new(&vs.root(), &w);
        for _ in 0..500 {
            sn.power_iteration(&w);
        }
        let matrix = |t: &Tensor| t.view([32, 16 * 9]);
        let top_singular = |t: &Tensor| matrix(t).svd(true, false).1.double_value(&[0]);
        let top = top_singular(&w);
        let est = sn.sigma(&w).double_value(&[]);
        assert!((est - top).abs() / top < 1e-3, "power iteration {est} vs svd {top}");
        let normalised = sn.normalised(&w, false);
        assert_eq!(normalised.size(), w.size());
        let s1 = matrix(&normalised).linalg_norm(2.0, [-2i64, -1].as_slice(), false, Kind::Float).double_value(&[]);
        assert!((s1 - 1.0).abs() < 1e-3, "spectral norm of the normalised weight {s1}");
        let sv = top_singular(&normalised);
        assert!((sv - 1.0).abs() < 1e-3, "largest singular value of the normalised weight {sv}");
    }
}
