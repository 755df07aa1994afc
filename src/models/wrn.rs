//! Wide-ResNet as JEM builds it (wgrathwohl/JEM wideresnet.py): pre-activation blocks
//! norm -> act -> conv1 -> dropout -> norm -> act -> conv2 (stride on conv2), a 1x1 shortcut only
//! where the shape changes, biases on every conv, then norm -> act -> 8x8 average pool.
use super::activation::activate;
use super::layers::{Conv2d, WeightInit};
use super::precision::Precision;
use super::{Backbone, NormLayer};
use crate::config::{Activation, ModelConfig};
use tch::{nn, Tensor};

#[derive(Debug)]
struct Block {
    norm1: NormLayer,
    conv1: Conv2d,
    norm2: NormLayer,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
    dropout: f64,
    act: Activation,
}

impl Block {
    fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64, cfg: &ModelConfig) -> Self {
        let sn = cfg.spectral_norm;
        Block {
            norm1: NormLayer::new(&(p / "bn1"), cin, cfg.norm),
            conv1: Conv2d::new(&(p / "conv1"), cin, cout, 3, 1, 1, sn, WeightInit::PyTorch),
            norm2: NormLayer::new(&(p / "bn2"), cout, cfg.norm),
            conv2: Conv2d::new(&(p / "conv2"), cout, cout, 3, stride, 1, sn, WeightInit::PyTorch),
            shortcut: (stride != 1 || cin != cout)
                .then(|| Conv2d::new(&(p / "shortcut" / "0"), cin, cout, 1, stride, 0, sn, WeightInit::PyTorch)),
            dropout: cfg.dropout,
            act: cfg.activation,
        }
    }

    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let h = self.conv1.forward(&activate(&self.norm1.forward(x, train), self.act), train, p);
        let h = h.dropout(self.dropout, train);
        let h = self.conv2.forward(&activate(&self.norm2.forward(&h, train), self.act), train, p);
        match &self.shortcut {
            Some(s) => h + s.forward(x, train, p),
            None => h + x,
        }
    }
}

/// WRN-depth-width feature extractor; the output has 64 * width features.
#[derive(Debug)]
pub struct WideResNet {
    conv1: Conv2d,
    blocks: Vec<Block>,
    norm: NormLayer,
    act: Activation,
    out_dim: i64,
}

impl WideResNet {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let n = (cfg.depth - 4) / 6;
        let k = cfg.width as i64;
        let widths = [16, 16 * k, 32 * k, 64 * k];
        let conv1 = Conv2d::new(
            &(p / "conv1"),
            cfg.input_shape[0] as i64,
            widths[0],
            3,
            1,
            1,
            cfg.spectral_norm,
            WeightInit::PyTorch,
        );
        let mut blocks = Vec::new();
        let mut cin = widths[0];
        for (stage, (&cout, stride)) in widths[1..].iter().zip([1, 2, 2]).enumerate() {
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(Block::new(&(p / format!("layer{}", stage + 1) / b), cin, cout, s, cfg));
                cin = cout;
            }
        }
        let norm = NormLayer::new(&(p / "bn1"), cin, cfg.norm);
        WideResNet { conv1, blocks, norm, act: cfg.activation, out_dim: cin }
    }
}

impl Backbone for WideResNet {
    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let mut h = self.conv1.forward(x, train, p);
        for b in &self.blocks {
            h = b.forward(&h, train, p);
        }
        // The pooled features, and everything after the backbone, are float32.
        let h = Precision::float(&activate(&self.norm.forward(&h, train), self.act));
        // JEM: F.avg_pool2d(out, 8) on the 8x8 map, i.e. a global mean for 32x32 inputs.
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    fn out_dim(&self) -> i64 {
        self.out_dim
    }
}
