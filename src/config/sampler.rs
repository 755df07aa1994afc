//! The sampler section (`[sampler]`, written out as `[sgld]`): the chain that draws the negatives, and its settings.
use super::checks::{non_negative, positive};
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The form of the Langevin update on the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgldVariant {
    /// JEM: x += step * grad_x f(x) + noise * N(0, I).
    Jem,
    /// IGEBM: x += noise * N(0, I); x -= step * clip(grad_x E(x), +-grad_clip); clamp to the data range.
    Igebm,
    /// Textbook ULA: x += (step/2) * grad_x log p(x) + sqrt(step) * N(0, I), with step = eps^2.
    Textbook,
}

/// The Markov chain that draws the negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// SGLD / ULA in the form `variant` (no accept/reject step).
    Langevin,
    /// Metropolis-adjusted Langevin, with proposal variance `step_size` (= eps^2).
    Mala,
    /// Hamiltonian Monte Carlo: `leapfrog` steps of size `step_size` per transition.
    Hmc,
    /// Metropolis-Hastings with the independent proposal N(0, proposal_std^2 I) (seed 004, sec. 6).
    IndependentMh,
    /// Importance sampling with resampling from `proposals` draws of N(0, proposal_std^2 I).
    ImportanceResampling,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Which chain: `langevin` (the SGLD forms of `variant`), `mala`, `hmc`, `independent-mh` or
    /// `importance-resampling`; written `sampler`, `name` accepted.
    #[serde(rename = "sampler", alias = "name")]
    pub kind: SamplerKind,
    pub variant: SgldVariant,
    pub steps: usize,
    pub step_size: f64,
    pub noise: f64,
    /// Per-pixel gradient clip of the IGEBM variant.
    pub grad_clip: f64,
    /// Clamp samples to the data range [-1, 1] after every step (Langevin only: a clamp would
    /// break the exactness of MALA and HMC).
    pub clamp: bool,
    /// Leapfrog steps per HMC transition.
    pub leapfrog: usize,
    /// Standard deviation of the independent samplers' Gaussian proposal.
    pub proposal_std: f64,
    /// Proposals per draw of importance resampling.
    pub proposals: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            kind: SamplerKind::Langevin,
            variant: SgldVariant::Jem,
            steps: 20,
            step_size: 1.0,
            noise: 0.01,
            grad_clip: 0.01,
            clamp: false,
            leapfrog: 5,
            proposal_std: 1.0,
            proposals: 4096,
        }
    }
}

impl SamplerConfig {
    /// Rejects values no chain can run with, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        non_negative(self.step_size, "sgld.step_size")?;
        non_negative(self.noise, "sgld.noise")?;
        positive(self.grad_clip, "sgld.grad_clip")?;
        if matches!(self.kind, SamplerKind::Mala | SamplerKind::Hmc) {
            positive(self.step_size, "sgld.step_size")?;
        }
        positive(self.proposal_std, "sgld.proposal_std")?;
        if self.kind == SamplerKind::ImportanceResampling && self.proposals == 0 {
            bail!("key `sgld.proposals` = 0: importance resampling needs proposals");
        }
        if self.kind == SamplerKind::Hmc && self.leapfrog == 0 {
            bail!("key `sgld.leapfrog` = 0: HMC needs at least one leapfrog step");
        }
        Ok(())
    }
}
