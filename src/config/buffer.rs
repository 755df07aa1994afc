//! The `[buffer]` section: the replay buffer of persistent chains.
use super::checks::positive;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// Where fresh chains (the buffer's first fill and its restarts) are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BufferInit {
    /// U(-1, 1) for images (JEM, IGEBM); the data's box for points.
    Uniform,
    /// JEM++'s informative initialisation: a Gaussian per class (mean and full covariance of the
    /// training examples, plus `init_ridge` I), clamped to the data range.
    ClassGaussian,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Use a replay buffer (persistent chains); off: every chain starts from fresh noise.
    pub enabled: bool,
    pub size: usize,
    /// Fraction of chains restarted from uniform noise at every draw (JEM, IGEBM: 0.05).
    pub reinit_fraction: f64,
    /// Split the buffer into one block per class, for conditional sampling.
    pub per_class: bool,
    /// The fresh-chain distribution: "uniform" or "class-gaussian" (JEM++).
    pub init: BufferInit,
    /// Ridge added to each class covariance of "class-gaussian" (JEM++: 1e-4).
    pub init_ridge: f64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            enabled: true,
            size: 10_000,
            reinit_fraction: 0.05,
            per_class: false,
            init: BufferInit::Uniform,
            init_ridge: 1e-4,
        }
    }
}

impl BufferConfig {
    /// Rejects sizes and fractions no buffer can hold, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        if self.enabled && self.size == 0 {
            bail!("key `buffer.size` = 0: must be positive when the buffer is enabled");
        }
        if !(0.0..=1.0).contains(&self.reinit_fraction) {
            bail!("key `buffer.reinit_fraction` = {}: must be in [0, 1]", self.reinit_fraction);
        }
        positive(self.init_ridge, "buffer.init_ridge")?;
        Ok(())
    }
}
