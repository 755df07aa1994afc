//! Per-example OOD scores of a model (higher = more in-distribution):
//! - `logpx`: logsumexp_y f(x)[y] = -E(x), the unnormalised log p(x) (JEM's "px");
//! - `maxsoftmax`: max_y p(y|x) (JEM's "py");
//! - `gradnorm`: -|grad_x logsumexp_y f(x)[y]|_2 (JEM's "pxgrad"), batched input gradients;
//! - `energy`: -E(x), for any head (with an energy head it is the only density score).
use super::classify::{check_compatible, input_batch};
use crate::data::Dataset;
use crate::models::EnergyNet;
use anyhow::bail;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    LogPx,
    MaxSoftmax,
    GradNorm,
    Energy,
}

impl Score {
    pub fn parse(s: &str) -> crate::Result<Self> {
        Ok(match s {
            "logpx" => Score::LogPx,
            "maxsoftmax" => Score::MaxSoftmax,
            "gradnorm" => Score::GradNorm,
            "energy" => Score::Energy,
            other => bail!("unknown score `{other}` (expected logpx, maxsoftmax, gradnorm or energy)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Score::LogPx => "logpx",
            Score::MaxSoftmax => "maxsoftmax",
            Score::GradNorm => "gradnorm",
            Score::Energy => "energy",
        }
    }

    /// Whether the score needs class logits.
    pub fn needs_classes(self) -> bool {
        matches!(self, Score::LogPx | Score::MaxSoftmax)
    }
}

/// The requested scores of every example of `ds`, each a Vec of length N (in `scores` order).
pub fn score_dataset(
    net: &EnergyNet,
    ds: &Dataset,
    scores: &[Score],
    batch: usize,
    device: Device,
    noise_sigma: f64,
) -> crate::Result<Vec<Vec<f64>>> {
    check_compatible(net, ds)?;
    if ds.is_empty() {
        bail!("{}: the data set is empty", ds.name);
    }
    for s in scores {
        if s.needs_classes() && !net.cfg.is_conditional() {
            bail!(
                "score `{}` needs a classifier; this model has an energy head (use `energy` or `gradnorm`)",
                s.name()
            );
        }
    }
    let mut out = vec![Vec::with_capacity(ds.len()); scores.len()];
    for start in (0..ds.len()).step_by(batch.max(1)) {
        let end = (start + batch).min(ds.len());
        let (x, _) = input_batch(ds, start, end, noise_sigma);
        let x = x.to_device(device);
        let plain = tch::no_grad(|| net.forward(&x, false));
        for (k, s) in scores.iter().enumerate() {
            let t = match s {
                Score::LogPx | Score::Energy => -&plain.energy,
                Score::MaxSoftmax => {
                    plain.logits.as_ref().expect("checked").softmax(1, Kind::Float).max_dim(1, false).0
                }
                Score::GradNorm => {
                    // One input gradient per example: d(sum_i -E(x_i))/dx_i = -dE(x_i)/dx_i.
                    let (_, g) = crate::sampling::energy_grad(&|x: &Tensor| net.energy(x, false), &x);
                    -g.flatten(1, -1).norm_scalaropt_dim(2.0, [1].as_slice(), false)
                }
            };
            let v: Vec<f64> = Vec::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Double)).expect("scores");
            out[k].extend(v);
        }
    }
    Ok(out)
}
