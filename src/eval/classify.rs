//! Running a classifier over a data set: logits and energies for every example, accuracy and the
//! mean negative log-likelihood of p(y|x). Batched, under no_grad, in evaluation mode.
use crate::data::augment::add_noise;
use crate::data::loader::mix_seed;
use crate::data::Dataset;
use crate::models::EnergyNet;
use anyhow::bail;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Network outputs for a whole data set, on the CPU.
pub struct Outputs {
    /// [N, K] for classifiers.
    pub logits: Option<Tensor>,
    /// E(x) [N].
    pub energy: Tensor,
    pub labels: Option<Tensor>,
}

/// Examples [start, end) of `ds` as model inputs, with the data noise the model was trained with
/// (JEM adds it at test time too). Images only: training noises images alone (train/run_data.rs),
/// so 2-D points and other non-image sets come back as they are. The noise of example i is seeded
/// by i alone, so results do not depend on the batch size.
pub fn input_batch(ds: &Dataset, start: usize, end: usize, noise_sigma: f64) -> (Tensor, Option<Tensor>) {
    let idx: Vec<usize> = (start..end).collect();
    let (x, y) = ds.batch(&idx);
    if noise_sigma <= 0.0 || !ds.is_image() {
        return (x, y);
    }
    let mut v: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).expect("float batch");
    let numel = ds.example_numel();
    for (k, chunk) in v.chunks_mut(numel).enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[0xe7a1, (start + k) as u64]));
        add_noise(&mut rng, chunk, noise_sigma as f32);
    }
    (Tensor::from_slice(&v).view(x.size().as_slice()), y)
}

/// Checks that a network can take a data set's examples: the same example shape. All an OOD set
/// needs (its labels, if any, are another set's: CIFAR-100's 100 against a 10-class model).
pub fn check_shape(net: &EnergyNet, ds: &Dataset) -> crate::Result<()> {
    if ds.shape != net.cfg.input_shape {
        bail!("{}: examples of shape {:?}, but the model takes {:?}", ds.name, ds.shape, net.cfg.input_shape);
    }
    Ok(())
}

/// Checks that a data set fits a classifier as its own data (accuracy, calibration, the
/// in-distribution set of `ebm ood`): the same example shape, and labels within its classes.
pub fn check_compatible(net: &EnergyNet, ds: &Dataset) -> crate::Result<()> {
    check_shape(net, ds)?;
    if net.cfg.is_conditional() && ds.labels.is_some() && ds.num_classes() > net.cfg.num_classes {
        bail!("{}: {} classes, but the model has {}", ds.name, ds.num_classes(), net.cfg.num_classes);
    }
    Ok(())
}

/// Logits and energies of every example of `ds`.
pub fn run_model(
    net: &EnergyNet,
    ds: &Dataset,
    batch: usize,
    device: Device,
    noise_sigma: f64,
) -> crate::Result<Outputs> {
    check_compatible(net, ds)?;
    if ds.is_empty() {
        bail!("{}: the data set is empty", ds.name);
    }
    let mut logits = Vec::new();
    let mut energy = Vec::new();
    let mut labels = Vec::new();
    tch::no_grad(|| {
        for start in (0..ds.len()).step_by(batch.max(1)) {
            let end = (start + batch).min(ds.len());
            let (x, y) = input_batch(ds, start, end, noise_sigma);
            let out = net.forward(&x.to_device(device), false);
            if let Some(l) = out.logits {
                logits.push(l.to_device(Device::Cpu));
            }
            energy.push(out.energy.to_device(Device::Cpu));
            if let Some(y) = y {
                labels.push(y);
            }
        }
    });
    Ok(Outputs {
        logits: (!logits.is_empty()).then(|| Tensor::cat(&logits, 0)),
        energy: Tensor::cat(&energy, 0),
        labels: (!labels.is_empty()).then(|| Tensor::cat(&labels, 0)),
    })
}

/// Accuracy and mean NLL of p(y|x) from logits and labels.
pub fn accuracy_nll(logits: &Tensor, labels: &Tensor) -> (f64, f64) {
    let acc = logits.argmax(1, false).eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    let nll = logits.to_kind(Kind::Double).cross_entropy_for_logits(labels).double_value(&[]);
    (acc, nll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_noises_images_only_as_training_does() {
        // Training sets noise_sigma to 0 for non-image data (train/run_data.rs); evaluation too.
        let points = crate::data::toy2d::sample_dataset(crate::data::toy2d::Toy::EightGaussians, 8, 1);
        let (x, _) = input_batch(&points, 0, 8, 0.03);
        let (clean, _) = points.batch(&(0..8).collect::<Vec<_>>());
        assert_eq!(f64::try_from((x - clean).abs().max()).unwrap(), 0.0, "2-D points were noised");
        let images = crate::data::builtin::shapes(8, 1);
        let (x, _) = input_batch(&images, 0, 8, 0.03);
        let (clean, _) = images.batch(&(0..8).collect::<Vec<_>>());
        let sd = f64::try_from((x - clean).std(true)).unwrap();
        assert!((sd - 0.03).abs() < 0.005, "image noise std {sd}");
    }
}
