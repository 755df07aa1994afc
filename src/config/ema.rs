//! The `[ema]` section: an exponential moving average of the weights, kept beside them.
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// Decay d of the average (0: no average; typical 0.999 to 0.9999).
    pub decay: f64,
    /// Warm-up: the t-th update uses min(d, (1 + t) / (warmup + t)), so the first updates follow
    /// the weights closely (0: d from the first update).
    pub warmup: u64,
}

impl EmaConfig {
    pub fn enabled(&self) -> bool {
        self.decay > 0.0
    }

    /// Rejects a decay outside [0, 1), naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        if !(0.0..1.0).contains(&self.decay) {
            bail!("key `ema.decay` = {}: must be in [0, 1) (0: off)", self.decay);
        }
        Ok(())
    }
}
