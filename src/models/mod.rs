//! Energy networks: a feature extractor ([`Backbone`]: Wide-ResNet, ConvNet or MLP) and a head.
//! With a classifier head, f(x)[y] are logits and E(x) = -logsumexp_y f(x)[y] (JEM); with an energy
//! head, E(x) = -f(x) for one scalar output (IGEBM). Parameter names follow PyTorch
//! (`f.layer1.0.conv1.weight`, `class_output.weight`), so safetensors files read by name in Python.
pub mod convnet;
pub mod layers;
pub mod mlp;
pub mod spectral_norm;
pub mod wrn;

use crate::config::{Architecture, Head, ModelConfig, Norm};
use layers::Linear;
use tch::{nn, Tensor};

/// A feature extractor: [B, ...input] -> [B, out_dim].
pub trait Backbone: std::fmt::Debug {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor;
    fn out_dim(&self) -> i64;
}

/// Optional normalisation: none (JEM's default), BatchNorm (momentum 0.9 as JEM) or GroupNorm.
#[derive(Debug)]
pub enum NormLayer {
    None,
    Batch(nn::BatchNorm),
    Group(nn::GroupNorm),
}

impl NormLayer {
    pub fn new(p: &nn::Path, channels: i64, norm: Norm) -> Self {
        match norm {
            Norm::None => NormLayer::None,
            Norm::Batch => NormLayer::Batch(nn::batch_norm2d(
                p,
                channels,
                nn::BatchNormConfig { momentum: 0.9, ..Default::default() },
            )),
            Norm::Group => {
                let groups = [32, 16, 8, 4, 2, 1].into_iter().find(|g| channels % g == 0).unwrap_or(1);
                NormLayer::Group(nn::group_norm(p, groups, channels, Default::default()))
            }
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        use tch::nn::{Module, ModuleT};
        match self {
            NormLayer::None => x.shallow_clone(),
            NormLayer::Batch(bn) => bn.forward_t(x, train),
            NormLayer::Group(gn) => gn.forward(x),
        }
    }
}

/// The outputs of one forward pass.
pub struct Output {
    /// Class logits [B, K] (classifier head only).
    pub logits: Option<Tensor>,
    /// E(x) [B].
    pub energy: Tensor,
}

/// An energy-based model: backbone + head.
#[derive(Debug)]
pub struct EnergyNet {
    pub cfg: ModelConfig,
    backbone: Box<dyn Backbone>,
    class_output: Option<Linear>,
    energy_output: Option<Linear>,
}

impl EnergyNet {
    /// Builds the network's variables under `p` (`f.*` for the backbone, then the head).
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let f = p / "f";
        let backbone: Box<dyn Backbone> = match cfg.arch {
            Architecture::Wrn => Box::new(wrn::WideResNet::new(&f, cfg)),
            Architecture::Convnet => Box::new(convnet::ConvNet::new(&f, cfg)),
            Architecture::Mlp => Box::new(mlp::Mlp::new(&f, cfg)),
        };
        let d = backbone.out_dim();
        // The heads are not spectrally normalised (IGEBM leaves its last FC free too).
        let (class_output, energy_output) = match cfg.head {
            Head::Classifier => (Some(Linear::new(&(p / "class_output"), d, cfg.num_classes as i64, false)), None),
            Head::Energy => (None, Some(Linear::new(&(p / "energy_output"), d, 1, false))),
        };
        EnergyNet { cfg: cfg.clone(), backbone, class_output, energy_output }
    }

    /// One forward pass giving logits (when there are classes) and the energy.
    pub fn forward(&self, x: &Tensor, train: bool) -> Output {
        let h = self.backbone.forward(x, train);
        match (&self.class_output, &self.energy_output) {
            (Some(c), _) => {
                let logits = c.forward(&h, train);
                let energy = -logits.logsumexp([1], false);
                Output { logits: Some(logits), energy }
            }
            (None, Some(e)) => Output { logits: None, energy: -e.forward(&h, train).squeeze_dim(1) },
            (None, None) => unreachable!("a network always has a head"),
        }
    }

    /// E(x) [B].
    pub fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward(x, train).energy
    }

    /// Shape of one input example.
    pub fn input_shape(&self) -> Vec<i64> {
        self.cfg.input_shape.iter().map(|&d| d as i64).collect()
    }
}

/// Number of trainable parameters in a var store.
pub fn count_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
