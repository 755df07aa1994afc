//! Kernel Stein discrepancy as a training objective (Liu, Lee & Jordan 2016, section 5;
//! Chwialkowski, Strathmann & Gretton 2016): minimise the U-statistic KSD^2_u of the data batch
//! under the model, whose score s(x) = -grad_x E(x) enters the Stein kernel
//!   u(x, y) = k(x, y) [ s(x).s(y) + (s(x) - s(y)).(x - y) / h^2 + d / h^2 - |x - y|^2 / h^4 ]
//! with the RBF kernel k of bandwidth h (`objective.ksd_bandwidth`, or the batch's median pairwise
//! distance when 0). The U-statistic and the RBF helpers live here, below `eval`, which uses them
//! for the `ebm diagnose` KSD and MMD; `eval::ksd` states the estimator and tests it against the
//! Gaussian closed form. Like score matching it needs no samples
//! and no normaliser, and only first derivatives of the energy in x (score matching needs the
//! trace of the Hessian), but it costs O(n^2) per batch and the RBF kernel loses power as the
//! dimension grows, so it is registered for low dimension only. KSD is zero exactly when the
//! scores agree, so, as with score matching, mixture weights of well separated modes are only
//! weakly identified.
use super::{Inputs, Objective, Registration, Terms};
use crate::models::EnergyNet;
use crate::sampling::Negatives;
use anyhow::bail;
use tch::{Kind, Tensor};

/// The largest input dimension the objective accepts.
pub const MAX_DIM: usize = 64;

pub struct Ksd {
    /// Fixed bandwidth; None: the median heuristic on each batch.
    pub bandwidth: Option<f64>,
}

pub const REGISTRATION: Registration = Registration {
    name: "ksd",
    summary: "kernel Stein discrepancy (Liu et al. 2016), RBF kernel U-statistic, for low dimension",
    check: |cfg| {
        if cfg.model.input_shape.iter().product::<usize>() > MAX_DIM {
            bail!(
                "key `objective.name` = \"ksd\": the RBF-kernel Stein discrepancy is for inputs of at most {MAX_DIM} dimensions, not {:?}; use \"ssm\" or \"dsm\"",
                cfg.model.input_shape
            );
        }
        Ok(())
    },
    build: |cfg, _| {
        let h = cfg.objective.ksd_bandwidth;
        Box::new(Ksd { bandwidth: (h > 0.0).then_some(h) })
    },
};

impl Objective for Ksd {
    fn name(&self) -> &'static str {
        "ksd"
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let xr = batch.x.detach().set_requires_grad(true);
        let e = net.energy(&xr, true);
        let g = Tensor::run_backward(&[e.sum(Kind::Float)], &[&xr], true, true).pop().expect("one gradient");
        let xf = xr.flatten(1, -1);
        let h = self.bandwidth.unwrap_or_else(|| median_distance(&xf.detach()).max(1e-6));
        let loss = ksd2_u(&xf, &(-g).flatten(1, -1), h);
        let logs = vec![("e_data", e.mean(Kind::Float).detach()), ("loss", loss.detach())];
        Terms { loss, logs, samples: None }
    }
}

/// Squared pairwise distances between the rows of `a` [m, d] and `b` [n, d].
pub fn sq_dists(a: &Tensor, b: &Tensor) -> Tensor {
    let a2 = a.square().sum_dim_intlist([1].as_slice(), true, a.kind());
    let b2 = b.square().sum_dim_intlist([1].as_slice(), true, b.kind());
    (a2 + b2.transpose(0, 1) - a.matmul(&b.transpose(0, 1)) * 2.0).clamp_min(0.0)
}

/// The median of the pairwise distances |z_i - z_j|, i < j, of the rows of `z` [n, d] (float64).
pub fn median_distance(z: &Tensor) -> f64 {
    let n = z.size()[0];
    let d = sq_dists(z, z);
    let iu = Tensor::ones([n, n], (Kind::Bool, z.device())).triu(1);
    d.masked_select(&iu).sqrt().median().double_value(&[])
}

/// The Stein-kernel U-statistic KSD^2_u of samples `x` [n, d] with model scores `s` [n, d] at
/// bandwidth `h`, as a 0-d tensor (differentiable in `s` and `x`).
pub fn ksd2_u(x: &Tensor, s: &Tensor, h: f64) -> Tensor {
    let n = x.size()[0];
    let d = x.size()[1] as f64;
    let h2 = h * h;
    let r2 = sq_dists(x, x);
    let k = (&r2 / (-2.0 * h2)).exp();
    let ss = s.matmul(&s.transpose(0, 1));
    let sx = s.matmul(&x.transpose(0, 1)); // sx[i, j] = s_i . x_j
    let own = sx.diagonal(0, 0, 1); // s_i . x_i
                                    // (s_i - s_j).(x_i - x_j) = s_i.x_i + s_j.x_j - s_i.x_j - s_j.x_i
    let cross = own.unsqueeze(1) + own.unsqueeze(0) - &sx - sx.transpose(0, 1);
    let u = &k * (ss + cross / h2 - &r2 / (h2 * h2) + d / h2);
    let off = Tensor::ones([n, n], (u.kind(), u.device())) - Tensor::eye(n, (u.kind(), u.device()));
    let kind = u.kind();
    (u * off).sum(kind) / (n * (n - 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use tch::{nn, nn::OptimizerConfig, Device};

    /// The loss equals the estimator of `eval::ksd` on the same batch, and its gradient step
    /// lowers it: a network's KSD on a fixed Gaussian batch falls by training on it.
    #[test]
    fn loss_is_the_estimator_and_training_lowers_it() {
        tch::manual_seed(2);
        let cfg = ModelConfig::from_preset("mlp-2d").unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        let x = Tensor::randn([256, 2], (Kind::Float, Device::Cpu)) * 0.5 + 1.0;
        let obj = Ksd { bandwidth: Some(0.7) };
        let loss = |net: &EnergyNet| obj.loss(net, &Inputs::new(&x, None), None).loss.double_value(&[]);
        // The same statistic from a detached score (eval::ksd's path), in float64.
        let (_, g) = crate::sampling::energy_grad(&|x: &Tensor| net.energy(x, false), &x);
        let direct = ksd2_u(&x.to_kind(Kind::Double), &(-g).to_kind(Kind::Double), 0.7).double_value(&[]);
        let before = loss(&net);
        assert!((before - direct).abs() < 1e-4 * direct.abs().max(1.0), "{before} vs {direct}");
        let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
        for _ in 0..200 {
            opt.backward_step(&obj.loss(&net, &Inputs::new(&x, None), None).loss);
        }
        let after = loss(&net);
        assert!(after < 0.1 * before, "KSD {before} -> {after}");
    }
}
