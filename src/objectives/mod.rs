//! Training objectives: given the network, a data batch and a source of model samples, the loss
//! and its separately logged terms. Chosen by name in the config and built in [`build`].
pub mod hybrid;
pub mod is_mle;
pub mod nce;
pub mod negatives;
pub mod score_matching;

pub use negatives::Negatives;

use crate::config::{ObjectiveKind, TrainConfig};
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
}

/// The objective named in the config; objectives with parameters of their own (NCE's log Z)
/// register them under `objective.*` in `p`.
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
            Box::new(is_mle::IsMle { proposal_std: o.is_proposal_std, samples: o.is_samples as i64 })
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
