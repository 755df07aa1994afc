//! Training objectives: given the network, a data batch and a source of model samples, the loss
//! and its separately logged terms. Chosen by name in the config and built in [`build`].
pub mod hybrid;
pub mod negatives;

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

/// The objective named in the config.
pub fn build(cfg: &TrainConfig) -> Box<dyn Objective> {
    let o = &cfg.objective;
    match o.name {
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
