//! A small ConvNet for fast tests and CPU demos: four 3x3 convolutions (two strided) with the
//! configured activation, then global average pooling.
use super::activation::activate;
use super::layers::{Conv2d, WeightInit};
use super::precision::Precision;
use super::{Backbone, NormLayer};
use crate::config::{Activation, ModelConfig};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct ConvNet {
    convs: Vec<(Conv2d, NormLayer)>,
    act: Activation,
    out_dim: i64,
}

impl ConvNet {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let c = cfg.width as i64;
        let cin = cfg.input_shape[0] as i64;
        let plan = [(cin, c, 1), (c, 2 * c, 2), (2 * c, 2 * c, 1), (2 * c, 4 * c, 2)];
        let convs = plan
            .iter()
            .enumerate()
            .map(|(i, &(a, b, s))| {
                (
                    Conv2d::new(&(p / format!("conv{i}")), a, b, 3, s, 1, cfg.spectral_norm, WeightInit::He),
                    NormLayer::new(&(p / format!("norm{i}")), b, cfg.norm),
                )
            })
            .collect();
        ConvNet { convs, act: cfg.activation, out_dim: 4 * c }
    }
}

impl Backbone for ConvNet {
    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let mut h = x.shallow_clone();
        for (conv, norm) in &self.convs {
            h = activate(&norm.forward(&conv.forward(&h, train, p), train), self.act);
        }
        Precision::float(&h).adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
