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

impl Backbone for Mlp {
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
