//! The activation of a config, shared by every backbone: LeakyReLU with slope 0.2,
//! max(x, 0.2 x) (JEM's WRN), or swish (SiLU), x * sigmoid(x); each one fused libtorch kernel.
use super::fused::leaky_relu;
use crate::config::Activation;
use tch::Tensor;

/// The activation of a config: LeakyReLU(0.2) or swish.
pub fn activate(x: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::LeakyRelu => leaky_relu(x, 0.2),
        Activation::Swish => x.silu(),
    }
}
