//! The `[optim]` section: the optimiser, its learning-rate schedule and gradient clipping.
use super::checks::{non_negative, positive};
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub name: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate over this many iterations (0: none).
    pub warmup_iters: u64,
    /// Epochs at which the learning rate is multiplied by `decay_rate`.
    pub decay_epochs: Vec<u64>,
    pub decay_rate: f64,
    /// Clip the global gradient norm to this value (0: off).
    pub clip_grad_norm: f64,
    /// Sharpness-aware minimisation's radius rho (0: off; SADA-JEM: 2).
    pub sam_rho: f64,
    /// Adaptive SAM (ASAM, weights scaled by |w|); unset: adaptive when sam_rho >= 0.5, as SADA-JEM.
    pub sam_adaptive: Option<bool>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            name: OptimizerKind::Adam,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            warmup_iters: 1000,
            decay_epochs: vec![160, 180],
            decay_rate: 0.3,
            clip_grad_norm: 0.0,
            sam_rho: 0.0,
            sam_adaptive: None,
        }
    }
}

impl OptimConfig {
    /// Rejects values no optimiser can use, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        positive(self.lr, "optim.lr")?;
        if !(0.0..1.0).contains(&self.beta1) {
            bail!("key `optim.beta1` = {}: must be in [0, 1)", self.beta1);
        }
        if !(0.0..1.0).contains(&self.beta2) {
            bail!("key `optim.beta2` = {}: must be in [0, 1)", self.beta2);
        }
        positive(self.eps, "optim.eps")?;
        non_negative(self.momentum, "optim.momentum")?;
        non_negative(self.weight_decay, "optim.weight_decay")?;
        positive(self.decay_rate, "optim.decay_rate")?;
        non_negative(self.clip_grad_norm, "optim.clip_grad_norm")?;
        non_negative(self.sam_rho, "optim.sam_rho")?;
        Ok(())
    }

    /// Whether SAM takes its adaptive form (see `sam_adaptive`).
    pub fn sam_is_adaptive(&self) -> bool {
        self.sam_adaptive.unwrap_or(self.sam_rho >= 0.5)
    }
}
