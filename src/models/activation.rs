//! The activation of a config, shared by every backbone: LeakyReLU with slope 0.2,
//! max(x, 0.2 x), or swish (SiLU), x * sigmoid(x).
use crate::config::Activation;
use tch::Tensor;

/// The activation of a config: LeakyReLU(0.2) or swish.
pub fn activate(x: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::LeakyRelu => x.maximum(&(x * 0.2)),
        Activation::Swish => x.silu(),
    }
}
