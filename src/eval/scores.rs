//! Per-example OOD scores of a model (higher = more in-distribution):
//! - `logpx`: logsumexp_y f(x)[y] = -E(x), the unnormalised log p(x) (JEM's "px");
//! - `maxsoftmax`: max_y p(y|x) (JEM's "py");
//! - `gradnorm`: -|grad_x logsumexp_y f(x)[y]|_2 (JEM's "pxgrad"), batched input gradients;
//! - `energy`: -E(x), for any head (with an energy head it is the only density score).
use super::classify::{check_shape, input_batch};
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
/// Only the example shape must fit the model: labels play no part in a score.
pub fn score_dataset(
    net: &EnergyNet,
    ds: &Dataset,
    scores: &[Score],
    batch: usize,
    device: Device,
    noise_sigma: f64,
) -> crate::Result<Vec<Vec<f64>>> {
    check_shape(net, ds)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::data::Pixels;
    use tch::nn;

    #[test]
    fn an_ood_set_with_more_classes_than_the_model_is_scored() {
        // A 10-class model against a CIFAR-100-like set (labels up to 99): scores need only the
        // image shape. Before, this failed with "100 classes, but the model has 10".
        let mut cfg = ModelConfig::from_preset("convnet-small").unwrap();
        cfg.width = 4;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        let n = 3;
        let classes: Vec<String> = (0..100).map(|i| format!("class{i:02}")).collect();
        let ds = Dataset::new(
            "cifar100-like",
            Pixels::U8(vec![9; n * 3072]),
            vec![3, 32, 32],
            Some(vec![0, 42, 99]),
            classes,
        )
        .unwrap();
        let s = score_dataset(&net, &ds, &[Score::LogPx, Score::MaxSoftmax], 2, Device::Cpu, 0.0).unwrap();
        assert_eq!((s.len(), s[0].len()), (2, n));
        // As the model's own data (eval, calibrate) the labels still have to fit.
        let e = crate::eval::classify::check_compatible(&net, &ds).unwrap_err().to_string();
        assert!(e.contains("100 classes, but the model has 10"), "{e}");
        // The shape still has to.
        let points = Dataset::new("points", Pixels::F32(vec![0.0; 4]), vec![2], None, Vec::new()).unwrap();
        let e = score_dataset(&net, &points, &[Score::LogPx], 2, Device::Cpu, 0.0).unwrap_err().to_string();
        assert!(e.contains("shape [2]"), "{e}");
    }
}
