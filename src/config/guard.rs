//! The `[guard]` section: what counts as divergence, and what a rollback changes.
use super::checks::{non_negative, positive};
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The divergence guard: what counts as diverging, and what a rollback changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Roll back instead of stopping when a step diverges.
    pub enabled: bool,
    /// Give up after this many rollbacks in one run.
    pub max_rollbacks: u32,
    /// |mean E(data)| or |mean E(samples)| beyond this is divergence.
    pub max_energy: f64,
    /// |E(data) - E(samples)| beyond this is divergence.
    pub max_gap: f64,
    /// SGLD samples with a value beyond this magnitude are divergence (images live in [-1, 1]).
    pub max_sample: f64,
    /// The learning rate is multiplied by this at every rollback.
    pub lr_factor: f64,
    /// SGLD steps are multiplied by this at every rollback.
    pub sgld_steps_factor: f64,
    /// Restart every chain of the replay buffer from noise at a rollback.
    pub reset_buffer: bool,
    /// Steps the failing-run tests look back over (0: those tests off).
    pub window: usize,
    /// A mean cross-entropy over the window above this multiple of chance (ln K) is failing (0: off).
    pub max_ce_over_chance: f64,
    /// An energy gap that, within the window, takes both signs and spans more than this is failing (0: off).
    pub max_gap_swing: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            max_rollbacks: 3,
            max_energy: 1e4,
            max_gap: 1e4,
            max_sample: 1e3,
            lr_factor: 0.5,
            sgld_steps_factor: 1.0,
            reset_buffer: false,
            window: 20,
            max_ce_over_chance: 2.0,
            max_gap_swing: 20.0,
        }
    }
}

impl GuardConfig {
    /// Rejects thresholds and factors no rollback can use, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        positive(self.max_energy, "guard.max_energy")?;
        positive(self.max_gap, "guard.max_gap")?;
        positive(self.max_sample, "guard.max_sample")?;
        non_negative(self.max_ce_over_chance, "guard.max_ce_over_chance")?;
        non_negative(self.max_gap_swing, "guard.max_gap_swing")?;
        if !(self.lr_factor > 0.0 && self.lr_factor <= 1.0) {
            bail!("key `guard.lr_factor` = {}: must be in (0, 1]", self.lr_factor);
        }
        if !(self.sgld_steps_factor.is_finite() && self.sgld_steps_factor >= 1.0) {
            bail!("key `guard.sgld_steps_factor` = {}: must be >= 1", self.sgld_steps_factor);
        }
        Ok(())
    }
}
