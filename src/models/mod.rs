//! Energy networks: a feature extractor ([`Backbone`]: Wide-ResNet, ConvNet or MLP) and a head.
//! With a classifier head, f(x)[y] are logits and E(x) = -logsumexp_y f(x)[y] (JEM); with an energy
//! head, E(x) = -f(x) for one scalar output (IGEBM). Parameter names follow PyTorch
//! (`f.layer1.0.conv1.weight`, `class_output.weight`), so safetensors files read by name in Python.
pub mod activation;
pub mod convnet;
pub mod fused;
pub mod layers;
pub mod mlp;
pub mod precision;
pub mod rbm;
pub mod spectral_norm;
pub mod wrn;

use crate::config::{Architecture, Head, ModelConfig, Norm};
use layers::{Linear, WeightInit};
pub use precision::Precision;
use tch::{nn, Tensor};

/// A feature extractor: [B, ...input] -> [B, out_dim], float32 out whatever the precision.
pub trait Backbone: std::fmt::Debug {
    fn forward(&self, x: &Tensor, train: bool, p: Precision) -> Tensor;
    fn out_dim(&self) -> i64;
    /// The MLP behind this backbone, if it is one.
    fn as_mlp(&self) -> Option<&mlp::Mlp> {
        None
    }
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

    /// Normalises in float32 (a bf16 input is cast up; without a norm the input passes as is).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        use tch::nn::{Module, ModuleT};
        match self {
            NormLayer::None => x.shallow_clone(),
            NormLayer::Batch(bn) => bn.forward_t(&Precision::float(x), train),
            NormLayer::Group(gn) => gn.forward(&Precision::float(x)),
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
    /// How conv/linear layers compute (float32 unless the fast mode is on).
    pub precision: Precision,
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
            Head::Classifier => {
                (Some(Linear::new(&(p / "class_output"), d, cfg.num_classes as i64, false, WeightInit::PyTorch)), None)
            }
            Head::Energy => (None, Some(Linear::new(&(p / "energy_output"), d, 1, false, WeightInit::PyTorch))),
        };
        EnergyNet { cfg: cfg.clone(), backbone, class_output, energy_output, precision: Precision::FLOAT32 }
    }

    /// The same network computing in precision `p` (the weights are not touched).
    pub fn with_precision(mut self, p: Precision) -> Self {
        self.precision = p;
        self
    }

    /// One forward pass giving logits (when there are classes) and the energy, both float32.
    pub fn forward(&self, x: &Tensor, train: bool) -> Output {
        let p = self.precision;
        let h = self.backbone.forward(x, train, p);
        match (&self.class_output, &self.energy_output) {
            (Some(c), _) => {
                let logits = Precision::float(&c.forward(&h, train, p));
                let energy = -logits.logsumexp([1], false);
                Output { logits: Some(logits), energy }
            }
            (None, Some(e)) => {
                Output { logits: None, energy: -Precision::float(&e.forward(&h, train, p)).squeeze_dim(1) }
            }
            (None, None) => unreachable!("a network always has a head"),
        }
    }

    /// E(x) [B].
    pub fn energy(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward(x, train).energy
    }

    /// The parameters of this network as an evaluation pass uses them, when it is an MLP with an
    /// energy head computing in float32 with at least one hidden layer (None otherwise): what
    /// the fused Langevin sampler (`sampling::mlp_langevin`) runs on.
    pub fn mlp_weights(&self) -> Option<mlp::MlpWeights> {
        let mlp = self.backbone.as_mlp()?;
        let head = self.energy_output.as_ref()?;
        if self.precision.is_fast() {
            return None;
        }
        let (layers, act) = mlp.eval_parameters();
        (!layers.is_empty()).then(|| mlp::MlpWeights { layers, head: head.eval_parameters(), act })
    }

    /// E(x|y) = -f(x)[y] [B], the class-conditional energy (JEM's p(x|y)).
    pub fn conditional_energy(&self, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        let logits = self.forward(x, train).logits.expect("conditional energies need a classifier head");
        -logits.gather(1, &y.view([-1, 1]), false).squeeze_dim(1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use tch::{Device, Kind};

    #[test]
    fn wrn_28_10_has_jems_parameter_count() {
        let cfg = ModelConfig::from_preset("wrn-28-10").unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = EnergyNet::new(&vs.root(), &cfg);
        let n = count_parameters(&vs);
        // JEM's 36.47M: the backbone (every conv with a bias) + the class head 640*10 + 10.
        assert_eq!(n, 36_471_338, "{n}");
        assert_eq!((n as f64 / 1e4).round() / 100.0, 36.47);
    }

    /// With `pool = "flatten"` the head weighs every position of the C x H/4 x W/4 map (odd sizes
    /// round up, as the padded stride-2 convolutions do), so moving a pattern changes the energy;
    /// the pooled head sees C averages. Only the ConvNet has the key.
    #[test]
    fn a_flattened_convnet_head_sees_every_position() {
        let mut cfg = ModelConfig::from_preset("convnet-small").unwrap();
        cfg.width = 4;
        cfg.activation = crate::config::Activation::Swish;
        let pattern = Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu));
        let _ = pattern.narrow(2, 8, 4).narrow(3, 8, 4).fill_(1.0);
        let moved = pattern.roll([4, 4], [2, 3]);
        let mut energies = |pool| {
            cfg.pool = pool;
            let vs = nn::VarStore::new(Device::Cpu);
            let net = EnergyNet::new(&vs.root(), &cfg);
            let classes = vs.variables()["class_output.weight"].size();
            (
                classes,
                f64::try_from(net.energy(&pattern, false)).unwrap(),
                f64::try_from(net.energy(&moved, false)).unwrap(),
            )
        };
        let (avg_w, _, _) = energies(crate::config::Pool::Average);
        let (flat_w, f0, f1) = energies(crate::config::Pool::Flatten);
        assert_eq!(avg_w, vec![10, 16]);
        assert_eq!(flat_w, vec![10, 16 * 8 * 8]);
        assert!((f0 - f1).abs() > 1e-4, "flatten: {f0} vs {f1}");
        cfg.input_shape = vec![3, 30, 29];
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        assert_eq!(vs.variables()["class_output.weight"].size(), vec![10, 16 * 8 * 8]);
        assert_eq!(net.energy(&Tensor::zeros([2, 3, 30, 29], (Kind::Float, Device::Cpu)), false).size(), vec![2]);
        cfg.arch = crate::config::Architecture::Wrn;
        cfg.depth = 10;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("model.pool") && e.contains("only the ConvNet"), "{e}");
    }

    /// The channels-last layout is the same function: energies, input gradients and parameter
    /// gradients of a WRN equal NCHW's to float32 rounding, the convolutions' operands are NHWC,
    /// and the masters and their gradients keep the NCHW layout checkpoints are written in.
    #[test]
    fn channels_last_computes_the_same_energy_and_gradients() {
        let mut cfg = ModelConfig::from_preset("wrn-16-2").unwrap();
        cfg.depth = 10;
        let (vs, mut vs1) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let nchw = EnergyNet::new(&vs.root(), &cfg);
        let nhwc = EnergyNet::new(&vs1.root(), &cfg).with_precision(Precision::Float32 { channels_last: true });
        vs1.copy(&vs).unwrap();
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2 - 1;
        let run = |net: &EnergyNet, vs: &nn::VarStore| {
            let xg = x.copy().set_requires_grad(true);
            let e = net.energy(&xg, true);
            for (_, v) in vs.variables() {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
            e.sum(Kind::Float).backward();
            let mut grads: Vec<(String, Tensor)> = vs
                .variables()
                .into_iter()
                .filter(|(_, v)| v.grad().defined())
                .map(|(n, v)| (n, v.grad().copy()))
                .collect();
            grads.sort_by(|a, b| a.0.cmp(&b.0));
            (e.detach(), xg.grad(), grads)
        };
        let (e0, gx0, g0) = run(&nchw, &vs);
        let (e1, gx1, g1) = run(&nhwc, &vs1);
        let rel = |a: &Tensor, b: &Tensor| f64::try_from((a - b).norm() / b.norm()).unwrap();
        assert!(rel(&e1, &e0) < 1e-5, "energy {}", rel(&e1, &e0));
        assert!(rel(&gx1, &gx0) < 1e-4, "dE/dx {}", rel(&gx1, &gx0));
        let nhwc_operand = Precision::Float32 { channels_last: true }.input(&x);
        assert!(
            precision::is_channels_last(&nhwc_operand) && !precision::is_channels_last(&Precision::FLOAT32.input(&x))
        );
        assert!(g0.len() > 10 && g0.len() == g1.len());
        for ((name, a), (_, b)) in g1.iter().zip(&g0) {
            assert!(rel(a, b) < 1e-4, "{name}: {}", rel(a, b));
        }
        for (name, v) in vs1.variables() {
            assert!(v.is_contiguous() && (!v.grad().defined() || v.grad().is_contiguous()), "{name} is not contiguous");
        }
    }

    /// `train.channels_last = "auto"`: NHWC for float32 on the CPU and bf16 on CUDA; a set switch wins.
    #[test]
    fn the_layout_switch_resolves_per_device_and_precision() {
        use crate::config::FastMode::{Auto, Off, On};
        let (cpu, gpu) = (Device::Cpu, Device::Cuda(0));
        assert_eq!(Precision::new(false, Auto, cpu), Precision::Float32 { channels_last: true });
        assert_eq!(Precision::new(false, Auto, gpu), Precision::FLOAT32);
        assert_eq!(Precision::new(true, Auto, cpu), Precision::Bf16 { channels_last: false });
        assert_eq!(Precision::new(true, Auto, gpu), Precision::Bf16 { channels_last: true });
        assert_eq!(Precision::new(false, Off, cpu), Precision::FLOAT32);
        assert_eq!(Precision::new(false, On, gpu), Precision::Float32 { channels_last: true });
        assert_eq!(Precision::new(true, Off, gpu), Precision::Bf16 { channels_last: false });
    }

    #[test]
    fn energy_is_minus_logsumexp_of_logits_and_names_are_pytorch_style() {
        let mut cfg = ModelConfig::from_preset("convnet-small").unwrap();
        cfg.width = 4;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        let x = Tensor::rand([5, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2 - 1;
        let out = net.forward(&x, false);
        let logits = out.logits.unwrap();
        assert_eq!(logits.size(), vec![5, 10]);
        let manual = -(logits.exp().sum_dim_intlist([1].as_slice(), false, Kind::Float)).log();
        assert!(out.energy.allclose(&manual, 1e-5, 1e-5, false));
        let names = vs.variables();
        assert!(names.contains_key("f.conv0.weight") && names.contains_key("class_output.bias"), "{:?}", names.keys());
    }

    #[test]
    fn spectral_norm_estimate_matches_svd() {
        let mut cfg = ModelConfig::from_preset("mlp-2d").unwrap();
        cfg.spectral_norm = true;
        cfg.layers = 1;
        cfg.hidden = 16;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EnergyNet::new(&vs.root(), &cfg);
        let vars = vs.variables();
        let w = &vars["f.fc0.weight_orig"];
        let u = &vars["f.fc0.weight_u"];
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        // Enough training forward passes for the power iteration to converge.
        for _ in 0..200 {
            let _ = net.forward(&x, true);
        }
        let (_, s, _) = w.svd(true, false);
        let top = s.double_value(&[0]);
        let sn = spectral_norm::SpectralNorm { u: u.shallow_clone(), v: vars["f.fc0.weight_v"].shallow_clone() };
        let est = sn.sigma(w).double_value(&[]);
        assert!((est - top).abs() / top < 0.01, "estimate {est} vs svd {top}");
        let normalised = sn.normalised(w, false);
        let (_, s2, _) = normalised.svd(true, false);
        assert!((s2.double_value(&[0]) - 1.0).abs() < 0.01);
        // Evaluation passes leave u untouched.
        let before = u.copy();
        let _ = net.forward(&x, false);
        assert!(before.equal(u));
        // A training pass moves it (unless already exactly converged).
        assert!(vs.trainable_variables().iter().all(|t| t.requires_grad()));
        assert!(!u.requires_grad());
    }
}
