//! Convolution and linear layers with PyTorch's default initialisation and optional spectral norm.
use super::precision::Precision;
use super::spectral_norm::SpectralNorm;
use tch::{nn, nn::Init, Tensor};

/// How weights are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// PyTorch's default for conv/linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (JEM's WRN uses it).
    PyTorch,
    /// He et al. for LeakyReLU(0.2): U(-b, b), b = sqrt(6 / ((1 + 0.2^2) fan_in)), which keeps the
    /// activation scale through plain (non-residual) stacks.
    He,
}

/// PyTorch's default init, also used for every bias.
fn default_init(fan_in: i64) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

fn weight_init(kind: WeightInit, fan_in: i64) -> Init {
    match kind {
        WeightInit::PyTorch => default_init(fan_in),
        WeightInit::He => {
            let b = (6.0 / (1.04 * fan_in as f64)).sqrt();
            Init::Uniform { lo: -b, up: b }
        }
    }
}

/// A weight that is either used as is or spectrally normalised.
#[derive(Debug)]
struct Weight {
    w: Tensor,
    sn: Option<SpectralNorm>,
}

impl Weight {
    fn new(p: &nn::Path, dims: &[i64], fan_in: i64, spectral: bool, init: WeightInit) -> Self {
        let init = weight_init(init, fan_in);
        if spectral {
            let w = p.var("weight_orig", dims, init);
            let sn = SpectralNorm::new(p, &w);
            Weight { w, sn: Some(sn) }
        } else {
            Weight { w: p.var("weight", dims, init), sn: None }
        }
    }

    fn get(&self, train: bool) -> Tensor {
        match &self.sn {
            Some(sn) => sn.normalised(&self.w, train),
            None => self.w.shallow_clone(),
        }
    }
}

/// A 2-D convolution with bias.
#[derive(Debug)]
pub struct Conv2d {
    weight: Weight,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        cin: i64,
        cout: i64,
        k: i64,
        stride: i64,
        padding: i64,
        spectral: bool,
        init: WeightInit,
    ) -> Self {
        let fan_in = cin * k * k;
        let weight = Weight::new(p, &[cout, cin, k, k], fan_in, spectral, init);
        let bias = p.var("bias", &[cout], default_init(fan_in));
        Conv2d { weight, bias, stride, padding }
    }

    /// The convolution in precision `p` (its output is in `p`'s compute kind).
    pub fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        let w = p.weight(&self.weight.get(train));
        p.input(x).conv2d(&w, Some(&p.bias(&self.bias)), [self.stride; 2], [self.padding; 2], [1; 2], 1)
    }
}

/// A fully connected layer with bias.
#[derive(Debug)]
pub struct Linear {
    weight: Weight,
    bias: Tensor,
}

impl Linear {
    pub fn new(p: &nn::Path, din: i64, dout: i64, spectral: bool, init: WeightInit) -> Self {
        let weight = Weight::new(p, &[dout, din], din, spectral, init);
        let bias = p.var("bias", &[dout], default_init(din));
        Linear { weight, bias }
    }

    /// The weight (spectrally normalised when it is) and the bias as an evaluation pass uses them,
    /// detached: what a hand-written pass of this layer multiplies by.
    pub fn eval_parameters(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| (self.weight.get(false).detach(), self.bias.detach()))
    }

    /// The affine map in precision `p` (its output is in `p`'s compute kind).
    pub fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor {
        p.input(x).linear(&p.weight(&self.weight.get(train)), Some(&p.bias(&self.bias)))
    }
}
