//! Training objectives: given the network, a data batch and a source of model samples, the loss
//! and its separately logged terms. Chosen by name in the config and built in [`build`].
pub mod hybrid;
pub mod is_mle;
pub mod nce;
pub mod negatives;
pub mod score_matching;

pub use negatives::Negatives;

use crate::config::{IsProposal, ObjectiveKind, TrainConfig};
use crate::models::EnergyNet;
use tch::Tensor;

/// The loss of one step, its terms for the log (0-d tensors, read only at log steps), and the
/// model samples it used (for sample grids).
pub struct Terms {
    pub loss: Tensor,
    pub logs: Vec<(&'static str, Tensor)>,
    pub samples: Option<Tensor>,
}

/// A way to train an energy-based model.
pub trait Objective {
    fn name(&self) -> &'static str;
    /// The loss on a batch `x` (labels `y` when the set is labelled).
    fn loss(&self, net: &EnergyNet, x: &Tensor, y: Option<&Tensor>, negatives: &mut Negatives) -> Terms;
    /// Called once the step of the last `loss` is taken (not when the step is discarded):
    /// objectives with state that follows the model (the adaptive IS proposal) update it here.
    fn commit(&self) {}
}

/// The objective named in the config; objectives with parameters of their own (NCE's log Z) or
/// state (the adaptive IS proposal, untrainable) register them under `objective.*` in `p`.
pub fn build(cfg: &TrainConfig, p: &tch::nn::Path) -> Box<dyn Objective> {
    use score_matching::{ScoreMatching, Variant};
    let o = &cfg.objective;
    match o.name {
        ObjectiveKind::ScoreMatching => Box::new(ScoreMatching { variant: Variant::Exact, sigma: o.dsm_sigma }),
        ObjectiveKind::Ssm => {
            Box::new(ScoreMatching { variant: Variant::Sliced { projections: o.ssm_projections }, sigma: o.dsm_sigma })
        }
        ObjectiveKind::Dsm => Box::new(ScoreMatching { variant: Variant::Denoising, sigma: o.dsm_sigma }),
        ObjectiveKind::Nce => Box::new(nce::Nce::new(&(p / "objective"), o.nce_noise_std)),
        ObjectiveKind::IsMle => {
            let proposal = match o.is_proposal {
                IsProposal::Fixed => is_mle::Proposal::Fixed(crate::sampling::independent::GaussianProposal {
                    mean: 0.0,
                    std: o.is_proposal_std,
                }),
                IsProposal::Adaptive => {
                    let shape: Vec<i64> = cfg.model.input_shape.iter().map(|&d| d as i64).collect();
                    is_mle::Proposal::Adaptive(is_mle::Adaptive::new(
                        &(p / "objective"),
                        &shape,
                        o.is_proposal_std,
                        o.is_adapt_rate,
                        o.is_min_std,
                    ))
                }
            };
            Box::new(is_mle::IsMle { proposal, samples: o.is_samples as i64 })
        }
        ObjectiveKind::Jem => Box::new(hybrid::Hybrid {
            name: "jem",
            ce_weight: o.ce_weight,
            px_weight: o.px_weight,
            pxy_weight: o.pxy_weight,
            alpha: o.alpha,
            chains_from_data: false,
        }),
        ObjectiveKind::Igebm | ObjectiveKind::Pcd | ObjectiveKind::Cd => Box::new(hybrid::Hybrid {
            name: match o.name {
                ObjectiveKind::Igebm => "igebm",
                ObjectiveKind::Pcd => "pcd",
                _ => "cd",
            },
            ce_weight: 0.0,
            px_weight: o.px_weight,
            pxy_weight: 0.0,
            alpha: o.alpha,
            chains_from_data: o.name == ObjectiveKind::Cd,
        }),
    }
}
