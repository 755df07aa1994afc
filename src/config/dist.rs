//! The `[dist]` section: data-parallel training across processes (`ebm train --nproc-per-node`,
//! or torchrun's environment; see `crate::dist`). A one-process run ignores it.
use super::checks::positive;
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// Seconds any rank waits for the others (joining, each collective) before it stops with an
    /// error naming the rank that did not answer (torch.distributed's default is 1800).
    pub timeout: f64,
    /// Size of each gradient all-reduce bucket in MiB (PyTorch DDP's default bucket_cap_mb: 25).
    pub bucket_mb: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig { timeout: 300.0, bucket_mb: 25.0 }
    }
}

impl DistConfig {
    /// Rejects non-positive sizes and timeouts, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        positive(self.timeout, "dist.timeout")?;
        positive(self.bucket_mb, "dist.bucket_mb")?;
        if self.timeout > 86_400.0 {
            bail!("key `dist.timeout` = {}: at most 86400 seconds (a day)", self.timeout);
        }
        Ok(())
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout)
    }
}
