//! Conditional sample accuracy: does a class-conditional sampler draw recognisable members of the
//! class it was asked for? An independent judge g, a classifier trained with cross-entropy alone
//! on the same data, classifies samples x_i drawn for classes y_i (chains on
//! E(x|y) = -f(x)[y]); the score is
//!
//!   acc_cond = (1/N) sum_i 1[argmax_k g(x_i)[k] = y_i],
//!
//! the "GAN-test" of Shmelkov, Schmid & Alahari (2018, "How good is my GAN?"). It needs no
//! Inception network and no person. Chance is 1/K; the judge's own accuracy on real test images
//! is its ceiling and is reported beside it, as is the sampled model's mean energy of its samples
//! against that of real data (a sampler that has not reached the data's energies has not mixed).
use super::classify;
use crate::data::Dataset;
use crate::models::EnergyNet;
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// The judge's verdict on per-class samples.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// Share of samples the judge assigns to the class they were drawn for.
    pub sample_accuracy: f64,
    /// The same share within each class (class k's samples).
    pub per_class: Vec<f64>,
    /// The judge's accuracy on real labelled images (its ceiling), when a set was given.
    pub judge_test_accuracy: Option<f64>,
    /// 1 / number of classes.
    pub chance: f64,
}

/// Classifies `x` (drawn for classes `y`) with `judge`; with `real`, also the judge's accuracy
/// on those real images (with the data noise `noise_sigma` it was trained with).
pub fn judge(
    judge: &EnergyNet,
    x: &Tensor,
    y: &Tensor,
    real: Option<&Dataset>,
    noise_sigma: f64,
    device: Device,
) -> crate::Result<Verdict> {
    let cfg = &judge.cfg;
    if !cfg.is_conditional() {
        bail!("the judge must be a classifier (model.head = \"classifier\")");
    }
    let shape = &x.size()[1..];
    if shape.iter().map(|&d| d as usize).ne(cfg.input_shape.iter().copied()) {
        bail!(
            "the samples have shape {shape:?}, the judge takes {:?}: judge with a model of the same data",
            cfg.input_shape
        );
    }
    let k = cfg.num_classes;
    if i64::try_from(y.max()).unwrap_or(0) >= k as i64 {
        bail!("the samples were drawn for {} classes, the judge knows {k}", i64::try_from(y.max()).unwrap_or(0) + 1);
    }
    let predicted = tch::no_grad(|| {
        let parts: Vec<Tensor> = x
            .split(256, 0)
            .iter()
            .map(|b| judge.forward(&b.to_device(device), false).logits.expect("a classifier").argmax(1, false))
            .collect();
        Tensor::cat(&parts, 0).to_device(Device::Cpu)
    });
    let y = y.to_device(Device::Cpu);
    let hit = predicted.eq_tensor(&y).to_kind(Kind::Double);
    let per_class = (0..k as i64)
        .map(|c| {
            let mask = y.eq(c);
            let n = i64::try_from(mask.sum(Kind::Int64)).unwrap_or(0);
            if n == 0 {
                f64::NAN
            } else {
                f64::try_from(hit.masked_select(&mask).mean(Kind::Double)).unwrap_or(f64::NAN)
            }
        })
        .collect();
    let judge_test_accuracy = match real {
        Some(ds) => {
            let out = classify::run_model(judge, ds, 256, device, noise_sigma)?;
            match (&out.logits, &out.labels) {
                (Some(l), Some(t)) => Some(classify::accuracy_nll(l, t).0),
                _ => bail!("{}: the judge's real images need labels", ds.name),
            }
        }
        None => None,
    };
    Ok(Verdict {
        sample_accuracy: f64::try_from(hit.mean(Kind::Double))?,
        per_class,
        judge_test_accuracy,
        chance: 1.0 / k as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use tch::nn;

    /// A judge that is a fixed linear map: the class of x = [a, b] is argmax(a, b); the verdict's
    /// shares are counted by hand.
    #[test]
    fn the_verdict_counts_hits_per_class() {
        let mut cfg = ModelConfig::from_preset("mlp-2d").unwrap();
        cfg.num_classes = 2;
        cfg.head = crate::config::Head::Classifier;
        cfg.layers = 0;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                let v =
                    if name.ends_with("weight") { Tensor::eye(2, (Kind::Float, Device::Cpu)) } else { t.zeros_like() };
                t.copy_(&v.view(t.size().as_slice()));
            }
        });
        // Class 0 drawn thrice (two land in class 0), class 1 once (lands in class 1).
        let x = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 2.0, 3.0, 1.0, 0.0, 5.0]).view([4, 2]);
        let y = Tensor::from_slice(&[0i64, 0, 0, 1]);
        let v = judge(&net, &x, &y, None, 0.0, Device::Cpu).unwrap();
        assert_eq!(v.sample_accuracy, 0.75);
        assert_eq!(v.per_class, vec![2.0 / 3.0, 1.0]);
        assert_eq!(v.chance, 0.5);
        let e = judge(&net, &x.view([2, 4]), &Tensor::from_slice(&[0i64, 1]), None, 0.0, Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("the judge takes [2]"), "{e}");
    }
}
