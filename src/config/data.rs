//! The `[data]` section: training and test set specs, batching, augmentation and the validation split.
use super::checks::non_negative;
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training set spec (see `ebm data --help`).
    pub spec: String,
    /// Optional test set, evaluated at the end of every epoch.
    pub test_spec: Option<String>,
    /// Image folders: resize images that are not N x N to N x N on load (`--resize N`); kept in
    /// config.json and checkpoints, so a resumed run and `ebm eval` of the checkpoint resize alike.
    pub resize: Option<u32>,
    pub batch_size: usize,
    /// Fraction of the training set held out for validation (JEM: 5,000 of 50,000).
    pub valid_fraction: f64,
    /// JEM's augmentation: reflect-pad 4, random crop, horizontal flip.
    pub augment: bool,
    /// Standard deviation of Gaussian noise added to every data image (JEM: 0.03).
    pub noise_sigma: f64,
    /// Batches prepared ahead by the loader thread.
    pub prefetch: usize,
    /// The data batch of the p(x) term: "same" (the augmented classifier batch) or "plain" (a
    /// second loader's batch of other examples without augmentation, as SADA-JEM).
    pub px_batch: PxBatch,
}

/// Which data batch feeds the generative p(x) term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PxBatch {
    /// The classifier's batch, augmented as configured (one loader).
    Same,
    /// Its own batch from a second loader over the training set, never augmented (the data noise
    /// is kept): SADA-JEM's "no augmentation for the p(x) branch".
    Plain,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            spec: "synthetic:shapes".into(),
            test_spec: None,
            resize: None,
            batch_size: 64,
            valid_fraction: 0.1,
            augment: true,
            noise_sigma: 0.03,
            prefetch: 4,
            px_batch: PxBatch::Same,
        }
    }
}

impl DataConfig {
    /// Rejects values no loader can use, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        if self.batch_size == 0 {
            bail!("key `data.batch_size` = 0: must be positive");
        }
        if !(0.0..1.0).contains(&self.valid_fraction) {
            bail!("key `data.valid_fraction` = {}: must be in [0, 1)", self.valid_fraction);
        }
        non_negative(self.noise_sigma, "data.noise_sigma")?;
        if self.resize == Some(0) {
            bail!("key `data.resize` = 0: must be a positive side length (or absent: no resizing)");
        }
        Ok(())
    }
}
