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

    /// sigma = u^T W v, differentiable in W.
    pub fn sigma(&self, weight: &Tensor) -> Tensor {
        let w = weight.view([weight.size()[0], -1]);
        self.u.dot(&w.mv(&self.v))
    }

    /// The normalised weight; in training mode the power iteration advances first.
    pub fn normalised(&self, weight: &Tensor, train: bool) -> Tensor {
        if train {
            self.power_iteration(weight);
        }
        weight / self.sigma(weight)
    }
}
