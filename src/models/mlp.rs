//! An MLP feature extractor for low-dimensional densities (2-D toys).
use super::activation::activate;
use super::layers::{Linear, WeightInit};
use super::precision::Precision;
use super::Backbone;
use crate::config::{Activation, ModelConfig};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Activation,
    out_dim: i64,
}

impl Mlp {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let h = cfg.hidden as i64;
        let mut din = cfg.input_shape[0] as i64;
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = Linear::new(&(p / format!("fc{i}")), din, h, cfg.spectral_norm, WeightInit::He);
                din = h;
                l
            })
            .collect();
        Mlp { layers, act: cfg.activation, out_dim: din }
    }
}

/// The parameters of an MLP energy as an evaluation pass uses them (detached), for code that
/// computes the network by hand (the fused Langevin sampler): hidden layers (W_l [H_l, H_{l-1}],
/// b_l), the energy head (w [1, H], c [1]) and the activation; E(x) = -(a_L . w + c).
#[derive(Debug)]
pub struct MlpWeights {
    pub layers: Vec<(Tensor, Tensor)>,
    pub head: (Tensor, Tensor),
    pub act: Activation,
}

impl Mlp {
    /// The hidden layers' evaluation parameters and the activation.
    pub fn eval_parameters(&self) -> (Vec<(Tensor, Tensor)>, Activation) {
        (self.layers.iter().map(Linear::eval_parameters).collect(), self.act)
    }
}

impl Backbone for Mlp {
    fn as_mlp(&self) -> Option<&Mlp> {
        Some(self)
    }

    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = activate(&l.forward(&h, train, p), self.act);
        }
        Precision::float(&h)
    }

    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
