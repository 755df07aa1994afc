//! Score matching: fit the model score s(x) = -grad_x E(x) without sampling.
//! - exact (Hyvarinen 2005): J = E[1/2 |s(x)|^2 + tr(ds/dx)], one backward pass per dimension;
//! - sliced (Song et al. 2019): J = E_v E_x[v^T (ds/dx) v + 1/2 (v^T s(x))^2], v ~ N(0, I),
//!   one Hessian-vector product per projection;
//! - denoising (Vincent 2011): x~ = x + sigma eps, J = E[1/2 |s(x~) + eps / sigma|^2].
use super::{no_check, Inputs, Objective, Registration, Terms};
use crate::config::TrainConfig;
use crate::models::EnergyNet;
use crate::sampling::Negatives;
use anyhow::bail;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Exact,
    Sliced { projections: usize },
    Denoising,
}

pub struct ScoreMatching {
    pub variant: Variant,
    pub sigma: f64,
}

/// Exact score matching: one backward pass per input dimension, so for low dimension only.
pub const SM: Registration = Registration {
    name: "sm",
    summary: "exact score matching (Hyvarinen 2005): 1/2 |s|^2 + tr(ds/dx), for low dimension",
    check: |cfg| {
        if cfg.model.input_shape.iter().product::<usize>() > 64 {
            bail!(
                "key `objective.name` = \"sm\": exact score matching costs one backward pass per input dimension; use \"ssm\" or \"dsm\" for inputs of {:?}",
                cfg.model.input_shape
            );
        }
        Ok(())
    },
    build: |cfg: &TrainConfig, _| Box::new(ScoreMatching { variant: Variant::Exact, sigma: cfg.objective.dsm_sigma }),
};

/// Denoising score matching at noise level `objective.dsm_sigma`.
pub const DSM: Registration = Registration {
    name: "dsm",
    summary: "denoising score matching (Vincent 2011) at noise level dsm_sigma",
    check: no_check,
    build: |cfg, _| Box::new(ScoreMatching { variant: Variant::Denoising, sigma: cfg.objective.dsm_sigma }),
};

/// Sliced score matching with `objective.ssm_projections` projections per example.
pub const SSM: Registration = Registration {
    name: "ssm",
    summary: "sliced score matching (Song et al. 2019) with ssm_projections random projections",
    check: no_check,
    build: |cfg, _| {
        let o = &cfg.objective;
        Box::new(ScoreMatching { variant: Variant::Sliced { projections: o.ssm_projections }, sigma: o.dsm_sigma })
    },
};

/// s(x) = -grad_x E(x) with the graph kept (differentiable in the parameters and in x), and the
/// energies; `x` must require gradients.
fn score(net: &EnergyNet, x: &Tensor) -> (Tensor, Tensor) {
    let e = net.energy(x, true);
    let g = Tensor::run_backward(&[e.sum(Kind::Float)], &[x], true, true).pop().expect("one gradient");
    (-g, e)
}

/// Per-example sum over all but the first dimension.
fn per_example(t: &Tensor) -> Tensor {
    t.flatten(1, -1).sum_dim_intlist([1].as_slice(), false, Kind::Float)
}

impl Objective for ScoreMatching {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::Exact => "sm",
            Variant::Sliced { .. } => "ssm",
            Variant::Denoising => "dsm",
        }
    }

    fn loss(&self, net: &EnergyNet, batch: &Inputs, _n: Option<&mut Negatives>) -> Terms {
        let x = batch.x;
        let (loss, e) = match self.variant {
            Variant::Exact => {
                let xr = x.detach().set_requires_grad(true);
                let (s, e) = score(net, &xr);
                let flat = s.flatten(1, -1);
                let d = flat.size()[1];
                let mut trace = Tensor::zeros([x.size()[0]], (Kind::Float, x.device()));
                for i in 0..d {
                    let gi =
                        Tensor::run_backward(&[flat.select(1, i).sum(Kind::Float)], &[&xr], true, true).pop().unwrap();
                    trace += gi.flatten(1, -1).select(1, i);
                }
                ((per_example(&s.square()) * 0.5 + trace).mean(Kind::Float), e)
            }
            Variant::Sliced { projections } => {
                let xr = x.detach().set_requires_grad(true);
                let (s, e) = score(net, &xr);
                let mut total = Tensor::zeros([], (Kind::Float, x.device()));
                for _ in 0..projections {
                    let v = x.randn_like();
                    let sv = per_example(&(&s * &v));
                    let hv = Tensor::run_backward(&[sv.sum(Kind::Float)], &[&xr], true, true).pop().unwrap();
                    total += (per_example(&(hv * &v)) + sv.square() * 0.5).mean(Kind::Float);
                }
                (total / projections as f64, e)
            }
            Variant::Denoising => {
                let eps = x.randn_like();
                let xr = (x + &eps * self.sigma).detach().set_requires_grad(true);
                let (s, e) = score(net, &xr);
                ((per_example(&(s + eps / self.sigma).square()) * 0.5).mean(Kind::Float), e)
            }
        };
        let logs = vec![("e_data", e.mean(Kind::Float).detach()), ("loss", loss.detach())];
        Terms { loss, logs, samples: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use tch::{nn, Device};

    /// On an MLP, the exact and sliced objectives agree in expectation (E_v[v^T A v] = tr A), and
    /// the exact one matches a finite-difference trace.
    #[test]
    fn sliced_matches_exact_in_expectation() {
        tch::manual_seed(0);
        let cfg = ModelConfig::from_preset("mlp-2d").unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        let x = Tensor::randn([64, 2], (Kind::Float, Device::Cpu));
        let exact = ScoreMatching { variant: Variant::Exact, sigma: 0.1 }
            .loss(&net, &Inputs::new(&x, None), None)
            .loss
            .double_value(&[]);
        let sliced = ScoreMatching { variant: Variant::Sliced { projections: 500 }, sigma: 0.1 }
            .loss(&net, &Inputs::new(&x, None), None)
            .loss
            .double_value(&[]);
        assert!((exact - sliced).abs() < 0.05 * exact.abs().max(0.1), "exact {exact} vs sliced {sliced}");

        // Finite differences of s = -grad E for the trace term.
        let h = 1e-2;
        let s_at = |x: &Tensor| -> Tensor {
            let (_, g) = crate::sampling::energy_grad(&|x: &Tensor| net.energy(x, false), x);
            -g
        };
        let s0 = s_at(&x);
        let mut trace = Tensor::zeros([64], (Kind::Float, Device::Cpu));
        for i in 0..2 {
            let dx = Tensor::zeros([64, 2], (Kind::Float, Device::Cpu));
            let _ = dx.select(1, i).fill_(h);
            let d = (s_at(&(&x + &dx)) - s_at(&(&x - &dx))) / (2.0 * h);
            trace += d.select(1, i);
        }
        let fd = (s0.square().sum_dim_intlist([1].as_slice(), false, Kind::Float) * 0.5 + trace)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!((fd - exact).abs() < 1e-2 * exact.abs().max(1.0), "finite differences {fd} vs exact {exact}");
    }
}
