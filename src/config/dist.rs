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
    /// All-reduce each bucket while the backward pass is still computing the others, with c10d's
    /// Reducer (DistributedDataParallel's engine); false: all buckets after the backward pass,
    /// timed alone (`ebm bench` then reports the all-reduce seconds).
    pub overlap: bool,
    /// The collectives' library: `auto` (NCCL when the run's device is CUDA and this build has
    /// NCCL, else Gloo), `gloo` or `nccl`.
    pub backend: BackendChoice,
}

/// `dist.backend` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Gloo,
    Nccl,
}

/// The process group a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ProcessGroupGloo: CPU (and CUDA) tensors, over TCP.
    Gloo,
    /// ProcessGroupNCCL: tensors on this rank's GPU only.
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "Gloo",
            Backend::Nccl => "NCCL",
        }
    }
}

impl BackendChoice {
    /// The backend for a run on `device`, with `nccl_built` telling whether this ebm has NCCL
    /// (`crate::dist::NCCL`). `nccl` on a CPU device or without NCCL is one error naming the key
    /// and the fix.
    pub fn resolve(self, device: tch::Device, nccl_built: bool) -> crate::Result<Backend> {
        match self {
            BackendChoice::Gloo => Ok(Backend::Gloo),
            BackendChoice::Auto if device.is_cuda() && nccl_built => Ok(Backend::Nccl),
            BackendChoice::Auto => Ok(Backend::Gloo),
            BackendChoice::Nccl if !device.is_cuda() => bail!(
                "key `dist.backend` = \"nccl\" needs a CUDA device but the run's device is the CPU: set train.device = \"cuda\" (each rank then uses cuda:LOCAL_RANK), or dist.backend = \"gloo\" (or \"auto\")"
            ),
            BackendChoice::Nccl if !nccl_built => bail!(
                "key `dist.backend` = \"nccl\": this ebm was built without NCCL (libtorch with CUDA, nccl.h and the CUDA runtime's headers are needed at build time; see NCCL_INCLUDE_DIR and CUDA_HOME in build.rs): rebuild with them, or set dist.backend = \"gloo\" (or \"auto\")"
            ),
            BackendChoice::Nccl => Ok(Backend::Nccl),
        }
    }
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig { timeout: 300.0, bucket_mb: 25.0, overlap: true, backend: BackendChoice::Auto }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use tch::Device;

    fn choice(set: &str) -> crate::Result<BackendChoice> {
        Ok(TrainConfig::parse("[model]\npreset = \"mlp-2d\"\n", &[set.to_string()])?.dist.backend)
    }

    /// auto picks NCCL only on CUDA with NCCL built; nccl elsewhere is one error naming the key
    /// and the fix; a misspelt backend is refused naming the key.
    #[test]
    fn backend_resolution_and_its_errors() {
        assert_eq!(choice("dist.backend=\"nccl\"").unwrap(), BackendChoice::Nccl);
        assert_eq!(choice("dist.backend=\"gloo\"").unwrap(), BackendChoice::Gloo);
        assert_eq!(choice("dist.timeout=5").unwrap(), BackendChoice::Auto);
        let bad = format!("{:#}", choice("dist.backend=\"mpi\"").unwrap_err());
        assert!(bad.contains("backend") && bad.contains("mpi"), "{bad}");
        let (cpu, gpu) = (Device::Cpu, Device::Cuda(1));
        assert_eq!(BackendChoice::Auto.resolve(gpu, true).unwrap(), Backend::Nccl);
        assert_eq!(BackendChoice::Auto.resolve(gpu, false).unwrap(), Backend::Gloo);
        assert_eq!(BackendChoice::Auto.resolve(cpu, true).unwrap(), Backend::Gloo);
        assert_eq!(BackendChoice::Gloo.resolve(gpu, true).unwrap(), Backend::Gloo);
        assert_eq!(BackendChoice::Nccl.resolve(gpu, true).unwrap(), Backend::Nccl);
        let on_cpu = format!("{:#}", BackendChoice::Nccl.resolve(cpu, true).unwrap_err());
        assert!(on_cpu.contains("dist.backend") && on_cpu.contains("train.device = \"cuda\""), "{on_cpu}");
        let unbuilt = format!("{:#}", BackendChoice::Nccl.resolve(gpu, false).unwrap_err());
        assert!(unbuilt.contains("dist.backend") && unbuilt.contains("built without NCCL"), "{unbuilt}");
        // The choice round-trips through the resolved config's JSON (checkpoint manifests).
        let cfg = TrainConfig::parse("[model]\npreset = \"mlp-2d\"\n", &["dist.backend=\"nccl\"".into()]).unwrap();
        assert_eq!(TrainConfig::from_json(&cfg.to_json()).unwrap().dist.backend, BackendChoice::Nccl);
    }
}
