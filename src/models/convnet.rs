//! A small ConvNet for fast tests and CPU demos: four 3x3 convolutions (two strided) with the
//! configured activation, then global average pooling (`model.pool = "average"`) or the whole
//! C x H/4 x W/4 map flattened (`"flatten"`). Each last-layer feature sees 13x13 pixels; averaged,
//! the energy is a function of local texture statistics only, so its samples are textures;
//! flattened, the head weighs each feature at its position and the energy can see a layout.
use super::activation::activate;
use super::layers::{Conv2d, WeightInit};
use super::precision::Precision;
use super::{Backbone, NormLayer};
use crate::config::{Activation, ModelConfig, Pool};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct ConvNet {
    convs: Vec<(Conv2d, NormLayer)>,
    act: Activation,
    pool: Pool,
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
        let out_dim = match cfg.pool {
            Pool::Average => 4 * c,
            // Two stride-2 convolutions with padding 1: ceil(n / 2) twice.
            Pool::Flatten => {
                let quarter = |n: usize| n.div_ceil(2).div_ceil(2) as i64;
                4 * c * quarter(cfg.input_shape[1]) * quarter(cfg.input_shape[2])
            }
        };
        ConvNet { convs, act: cfg.activation, pool: cfg.pool, out_dim }
    }
}

impl Backbone for ConvNet {
    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let mut h = x.shallow_clone();
        for (conv, norm) in &self.convs {
            h = activate(&norm.forward(&conv.forward(&h, train, p), train), self.act);
        }
        match self.pool {
            Pool::Average => Precision::float(&h).adaptive_avg_pool2d([1, 1]).flatten(1, -1),
            Pool::Flatten => Precision::float(&h).flatten(1, -1),
        }
    }

    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
