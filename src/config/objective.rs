//! The `[objective]` section: the training objective and its weights and estimator settings.
use super::checks::{non_negative, positive};
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// The objective, by its registered name (`objectives::REGISTRY`: jem, igebm, pcd, cd, sm,
    /// dsm, ssm, nce, is-mle, ksd); checked, with the objective's own requirements, when training starts.
    pub name: String,
    /// Weight of the cross-entropy (p(y|x)) term.
    pub ce_weight: f64,
    /// Weight of the generative p(x) term.
    pub px_weight: f64,
    /// Weight of the class-conditional p(x|y) term.
    pub pxy_weight: f64,
    /// Energy-magnitude penalty alpha * (E(x+)^2 + E(x-)^2) (IGEBM: 1).
    pub alpha: f64,
    /// Noise level of denoising score matching.
    pub dsm_sigma: f64,
    /// Random projections per example of sliced score matching.
    pub ssm_projections: usize,
    /// Standard deviation of NCE's Gaussian noise distribution.
    pub nce_noise_std: f64,
    /// Importance-sampling MLE: proposal standard deviation (the starting one when adaptive) and
    /// draws per step.
    pub is_proposal_std: f64,
    pub is_samples: usize,
    /// Importance-sampling MLE: a fixed N(0, is_proposal_std^2 I) or an adaptive diagonal Gaussian
    /// moment-matched to the previous step's weighted draws.
    pub is_proposal: IsProposal,
    /// Adaptive proposal: damping rate of the moment matching, new = (1 - rate) old + rate matched.
    pub is_adapt_rate: f64,
    /// Adaptive proposal: floor on each dimension's standard deviation.
    pub is_min_std: f64,
    /// Minimum probability flow: std of the Gaussian connectivity (how far each data point's
    /// neighbour lies).
    pub mpf_sigma: f64,
    /// Learned sampler x = g(z) + gen_sigma eps: latent size, hidden width of the generator MLP,
    /// output noise std, and the MALA steps (count, size) on p(z|x) of its entropy gradient.
    pub gen_latent: usize,
    pub gen_hidden: usize,
    pub gen_sigma: f64,
    pub gen_posterior_steps: usize,
    pub gen_posterior_step: f64,
    /// Learned sampler: weight of the gradient penalty gen_grad_penalty * E_data[|grad_x E(x)|^2]
    /// on the energy (VERA's stabiliser, Grathwohl et al. 2021); 0 = none.
    pub gen_grad_penalty: f64,
    /// Learned sampler: learn the noise level (one scalar, starting at gen_sigma) with the
    /// generator, instead of keeping gen_sigma fixed.
    pub gen_learn_sigma: bool,
    /// Kernel Stein discrepancy (`ksd`): the RBF bandwidth h; 0 = the median heuristic on each batch.
    pub ksd_bandwidth: f64,
}

/// The proposal of the `is-mle` objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsProposal {
    /// N(0, is_proposal_std^2 I), independent of the model.
    Fixed,
    /// N(mu, diag(s^2)), mu and s moment-matched (damped, floored) to the self-normalised weighted
    /// draws of the previous step, so it follows the model through the weights (seed 004's q2).
    Adaptive,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig {
            name: "jem".into(),
            ce_weight: 1.0,
            px_weight: 1.0,
            pxy_weight: 0.0,
            alpha: 0.0,
            dsm_sigma: 0.1,
            ssm_projections: 1,
            nce_noise_std: 1.0,
            is_proposal_std: 1.0,
            is_samples: 256,
            is_proposal: IsProposal::Fixed,
            is_adapt_rate: 0.1,
            is_min_std: 0.05,
            mpf_sigma: 0.1,
            gen_latent: 2,
            gen_hidden: 128,
            gen_sigma: 0.1,
            gen_posterior_steps: 5,
            gen_posterior_step: 0.01,
            gen_grad_penalty: 0.0,
            gen_learn_sigma: false,
            ksd_bandwidth: 0.0,
        }
    }
}

impl ObjectiveConfig {
    /// Rejects weights and estimator settings no objective can use, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        for (v, key) in [
            (self.ce_weight, "objective.ce_weight"),
            (self.px_weight, "objective.px_weight"),
            (self.pxy_weight, "objective.pxy_weight"),
            (self.alpha, "objective.alpha"),
            (self.gen_grad_penalty, "objective.gen_grad_penalty"),
        ] {
            non_negative(v, key)?;
        }
        positive(self.dsm_sigma, "objective.dsm_sigma")?;
        positive(self.nce_noise_std, "objective.nce_noise_std")?;
        positive(self.is_proposal_std, "objective.is_proposal_std")?;
        if !(self.is_adapt_rate > 0.0 && self.is_adapt_rate <= 1.0) {
            bail!("key `objective.is_adapt_rate` = {}: must be in (0, 1]", self.is_adapt_rate);
        }
        positive(self.is_min_std, "objective.is_min_std")?;
        positive(self.mpf_sigma, "objective.mpf_sigma")?;
        positive(self.gen_sigma, "objective.gen_sigma")?;
        positive(self.gen_posterior_step, "objective.gen_posterior_step")?;
        if self.gen_latent == 0 || self.gen_hidden == 0 {
            bail!(
                "keys `objective.gen_latent` and `objective.gen_hidden` must be positive (got {}, {})",
                self.gen_latent,
                self.gen_hidden
            );
        }
        non_negative(self.ksd_bandwidth, "objective.ksd_bandwidth")?;
        if self.is_samples == 0 {
            bail!("key `objective.is_samples` = 0: must be positive");
        }
        if self.ssm_projections == 0 {
            bail!("key `objective.ssm_projections` = 0: must be positive");
        }
        Ok(())
    }
}
