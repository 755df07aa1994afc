//! The `[model]` section: an energy network's architecture, hyper-parameters and head.
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    Wrn,
    Convnet,
    Mlp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    None,
    Batch,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    LeakyRelu,
    Swish,
}

/// How the ConvNet turns its last feature map into the head's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// Global average pooling: the energy is a function of the mean of local features (each sees
    /// 13x13 pixels), blind to where they are.
    Average,
    /// The whole map flattened: the head weighs every feature at its position, so the energy can
    /// depend on the image's global layout (a shape, not only its texture).
    Flatten,
}

/// What the network's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Head {
    /// Logits f(x)[y]; E(x) = -logsumexp_y f(x)[y] (JEM).
    Classifier,
    /// One scalar f(x); E(x) = -f(x) (IGEBM, 2-D densities).
    Energy,
}

/// An energy network: architecture and its hyper-parameters (the TOML files of `models/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Architecture,
    /// WRN depth (6n+4).
    #[serde(default = "d_depth")]
    pub depth: usize,
    /// WRN widen factor, or the ConvNet's base channel count.
    #[serde(default = "d_width")]
    pub width: usize,
    /// Hidden units of the MLP.
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    /// Hidden layers of the MLP.
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_norm")]
    pub norm: Norm,
    #[serde(default = "d_act")]
    pub activation: Activation,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub spectral_norm: bool,
    /// The ConvNet's pooling before the head (average, or flatten).
    #[serde(default = "d_pool")]
    pub pool: Pool,
    #[serde(default = "d_classes")]
    pub num_classes: usize,
    #[serde(default = "d_head")]
    pub head: Head,
    /// Input shape of one example: [C, H, W] for images, [D] for points.
    #[serde(default = "d_input")]
    pub input_shape: Vec<usize>,
}

fn d_depth() -> usize {
    28
}
fn d_width() -> usize {
    10
}
fn d_hidden() -> usize {
    128
}
fn d_layers() -> usize {
    3
}
fn d_norm() -> Norm {
    Norm::None
}
fn d_act() -> Activation {
    Activation::LeakyRelu
}
fn d_pool() -> Pool {
    Pool::Average
}
fn d_classes() -> usize {
    10
}
fn d_head() -> Head {
    Head::Classifier
}
fn d_input() -> Vec<usize> {
    vec![3, 32, 32]
}

impl ModelConfig {
    /// Rejects values no network can be built from, naming the key.
    pub fn validate(&self) -> crate::Result<()> {
        if self.arch == Architecture::Wrn && (self.depth < 10 || !(self.depth - 4).is_multiple_of(6)) {
            bail!("model.depth = {}: a Wide-ResNet needs depth 6n+4 with n >= 1 (10, 16, 22, 28, ...)", self.depth);
        }
        if self.width == 0 {
            bail!("model.width must be positive");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("model.dropout = {}: must be in [0, 1)", self.dropout);
        }
        if self.head == Head::Classifier && self.num_classes < 2 {
            bail!("model.num_classes = {}: a classifier head needs at least 2 classes", self.num_classes);
        }
        match self.arch {
            Architecture::Mlp if self.input_shape.len() != 1 => {
                bail!("model.input_shape = {:?}: the MLP takes flat vectors [D]", self.input_shape)
            }
            Architecture::Wrn | Architecture::Convnet if self.input_shape.len() != 3 => {
                bail!("model.input_shape = {:?}: convolutional networks take images [C, H, W]", self.input_shape)
            }
            _ => {}
        }
        if self.pool == Pool::Flatten && self.arch != Architecture::Convnet {
            bail!("model.pool = \"flatten\": only the ConvNet (model.arch = \"convnet\") has it; remove the key");
        }
        if self.input_shape.contains(&0) {
            bail!("model.input_shape = {:?}: dimensions must be positive", self.input_shape);
        }
        Ok(())
    }

    /// Whether the head is a classifier, so energies can be conditioned on a class.
    pub fn is_conditional(&self) -> bool {
        self.head == Head::Classifier
    }

    /// A short description: WRN-28-10, ConvNet-8, MLP-3x128.
    pub fn label(&self) -> String {
        let m = self;
        match m.arch {
            Architecture::Wrn => format!("WRN-{}-{}", m.depth, m.width),
            Architecture::Convnet if m.pool == Pool::Flatten => format!("ConvNet-{}-flat", m.width),
            Architecture::Convnet => format!("ConvNet-{}", m.width),
            Architecture::Mlp => format!("MLP-{}x{}", m.layers, m.hidden),
        }
    }
}
