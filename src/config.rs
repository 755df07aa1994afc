//! Run configurations and model presets as serde structs: TOML in, validated, `--set` overrides,
//! and the resolved config written as JSON beside a run.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Network presets shipped in `models/`, embedded so a config can name them from anywhere.
const PRESETS: &[(&str, &str)] = &[
    ("wrn-28-10", include_str!("../models/wrn-28-10.toml")),
    ("wrn-28-2", include_str!("../models/wrn-28-2.toml")),
    ("wrn-16-2", include_str!("../models/wrn-16-2.toml")),
    ("convnet-small", include_str!("../models/convnet-small.toml")),
    ("mlp-2d", include_str!("../models/mlp-2d.toml")),
];

/// Names of the embedded network presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

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
    /// Loads a preset by name (`wrn-28-10`) or from a TOML file path.
    pub fn from_preset(name: &str) -> crate::Result<Self> {
        let (origin, text) = match PRESETS.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => (format!("preset `{name}`"), text.to_string()),
            None => {
                let path = Path::new(name);
                if !path.exists() {
                    bail!("model `{name}`: neither a preset ({}) nor an existing TOML file", preset_names().join(", "));
                }
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read model preset", path.display()))?;
                (path.display().to_string(), text)
            }
        };
        let cfg: ModelConfig = toml::from_str(&text).with_context(|| format!("{origin}: invalid model preset"))?;
        cfg.validate().with_context(|| format!("{origin}: invalid model preset"))?;
        Ok(cfg)
    }

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
        if self.input_shape.contains(&0) {
            bail!("model.input_shape = {:?}: dimensions must be positive", self.input_shape);
        }
        Ok(())
    }

    /// Number of outputs of the head: classes for a classifier, 1 for an energy head.
    pub fn is_conditional(&self) -> bool {
        self.head == Head::Classifier
    }
}

/// A training run: everything `ebm train` needs, as written in `configs/*.toml`.
/// Every section has defaults, so a config only states what differs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The network, fully resolved (a `preset` key in the TOML is expanded by [`TrainConfig::parse`]).
    pub model: ModelConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    #[serde(rename = "sgld")]
    pub sampler: SamplerConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(default)]
    pub guard: GuardConfig,
}

/// The divergence guard: what counts as diverging, and what a rollback changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Roll back instead of stopping when a step diverges.
    pub enabled: bool,
    /// Give up after this many rollbacks in one run.
    pub max_rollbacks: u32,
    /// |mean E(data)| or |mean E(samples)| beyond this is divergence.
    pub max_energy: f64,
    /// |E(data) - E(samples)| beyond this is divergence.
    pub max_gap: f64,
    /// SGLD samples with a value beyond this magnitude are divergence (images live in [-1, 1]).
    pub max_sample: f64,
    /// The learning rate is multiplied by this at every rollback.
    pub lr_factor: f64,
    /// SGLD steps are multiplied by this at every rollback.
    pub sgld_steps_factor: f64,
    /// Restart every chain of the replay buffer from noise at a rollback.
    pub reset_buffer: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            max_rollbacks: 3,
            max_energy: 1e4,
            max_gap: 1e4,
            max_sample: 1e3,
            lr_factor: 0.5,
            sgld_steps_factor: 1.0,
            reset_buffer: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training set spec (see `ebm data --help`).
    pub spec: String,
    /// Optional test set, evaluated at the end of every epoch.
    pub test_spec: Option<String>,
    pub batch_size: usize,
    /// Fraction of the training set held out for validation (JEM: 5,000 of 50,000).
    pub valid_fraction: f64,
    /// JEM's augmentation: reflect-pad 4, random crop, horizontal flip.
    pub augment: bool,
    /// Standard deviation of Gaussian noise added to every data image (JEM: 0.03).
    pub noise_sigma: f64,
    /// Batches prepared ahead by the loader thread.
    pub prefetch: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            spec: "synthetic:shapes".into(),
            test_spec: None,
            batch_size: 64,
            valid_fraction: 0.1,
            augment: true,
            noise_sigma: 0.03,
            prefetch: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub name: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Linear warm-up of the learning rate over this many iterations (0: none).
    pub warmup_iters: u64,
    /// Epochs at which the learning rate is multiplied by `decay_rate`.
    pub decay_epochs: Vec<u64>,
    pub decay_rate: f64,
    /// Clip the global gradient norm to this value (0: off).
    pub clip_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            name: OptimizerKind::Adam,
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            warmup_iters: 1000,
            decay_epochs: vec![160, 180],
            decay_rate: 0.3,
            clip_grad_norm: 0.0,
        }
    }
}

/// The form of the Langevin update on the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SgldVariant {
    /// JEM: x += step * grad_x f(x) + noise * N(0, I).
    Jem,
    /// IGEBM: x += noise * N(0, I); x -= step * clip(grad_x E(x), +-grad_clip); clamp to the data range.
    Igebm,
    /// Textbook ULA: x += (step/2) * grad_x log p(x) + sqrt(step) * N(0, I), with step = eps^2.
    Textbook,
}

/// The Markov chain that draws the negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// SGLD / ULA in the form `variant` (no accept/reject step).
    Langevin,
    /// Metropolis-adjusted Langevin, with proposal variance `step_size` (= eps^2).
    Mala,
    /// Hamiltonian Monte Carlo: `leapfrog` steps of size `step_size` per transition.
    Hmc,
    /// Metropolis-Hastings with the independent proposal N(0, proposal_std^2 I) (seed 004, sec. 6).
    IndependentMh,
    /// Importance sampling with resampling from `proposals` draws of N(0, proposal_std^2 I).
    ImportanceResampling,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Which chain: `langevin` (the SGLD forms of `variant`), `mala` or `hmc`.
    #[serde(rename = "sampler")]
    pub kind: SamplerKind,
    pub variant: SgldVariant,
    pub steps: usize,
    pub step_size: f64,
    pub noise: f64,
    /// Per-pixel gradient clip of the IGEBM variant.
    pub grad_clip: f64,
    /// Clamp samples to the data range [-1, 1] after every step (Langevin only: a clamp would
    /// break the exactness of MALA and HMC).
    pub clamp: bool,
    /// Leapfrog steps per HMC transition.
    pub leapfrog: usize,
    /// Standard deviation of the independent samplers' Gaussian proposal.
    pub proposal_std: f64,
    /// Proposals per draw of importance resampling.
    pub proposals: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            kind: SamplerKind::Langevin,
            variant: SgldVariant::Jem,
            steps: 20,
            step_size: 1.0,
            noise: 0.01,
            grad_clip: 0.01,
            clamp: false,
            leapfrog: 5,
            proposal_std: 1.0,
            proposals: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Use a replay buffer (persistent chains); off: every chain starts from fresh noise.
    pub enabled: bool,
    pub size: usize,
    /// Fraction of chains restarted from uniform noise at every draw (JEM, IGEBM: 0.05).
    pub reinit_fraction: f64,
    /// Split the buffer into one block per class, for conditional sampling.
    pub per_class: bool,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { enabled: true, size: 10_000, reinit_fraction: 0.05, per_class: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectiveKind {
    /// JEM's hybrid: CE on labelled data + the p(x) term [+ the p(x|y) term].
    Jem,
    /// IGEBM's contrastive divergence with the energy-magnitude penalty.
    Igebm,
    /// Persistent contrastive divergence (Tieleman 2008): persistent chains, never restarted.
    Pcd,
    /// CD-k (Hinton 2002): chains started at the data batch, `sgld.steps` = k steps.
    Cd,
    /// Exact score matching (Hyvarinen 2005): 1/2 |s|^2 + tr(ds/dx), for low dimension.
    #[serde(rename = "sm")]
    ScoreMatching,
    /// Denoising score matching (Vincent 2011) at noise level `dsm_sigma`.
    Dsm,
    /// Sliced score matching (Song et al. 2019) with `ssm_projections` random projections.
    Ssm,
    /// Noise-contrastive estimation (Gutmann & Hyvarinen 2010) against N(0, nce_noise_std^2 I),
    /// with log Z a learnt scalar.
    Nce,
    /// Importance-sampling MLE (Geyer 1994; seed 004): log Z estimated from `is_samples` draws of
    /// N(0, is_proposal_std^2 I); its gradient is the self-normalised one.
    IsMle,
}

impl ObjectiveKind {
    /// Whether the objective draws model samples (SGLD chains, a buffer).
    pub fn uses_chains(self) -> bool {
        matches!(self, ObjectiveKind::Jem | ObjectiveKind::Igebm | ObjectiveKind::Pcd | ObjectiveKind::Cd)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    pub name: ObjectiveKind,
    /// Weight of the cross-entropy (p(y|x)) term.
    pub ce_weight: f64,
    /// Weight of the generative p(x) term.
    pub px_weight: f64,
    /// Weight of the class-conditional p(x|y) term.
    pub pxy_weight: f64,
    /// Energy-magnitude penalty alpha * (E(x+)^2 + E(x-)^2) (IGEBM: 1).
    pub alpha: f64,
    /// Noise level of denoising score matching.
    pub dsm_sigma: f64,
    /// Random projections per example of sliced score matching.
    pub ssm_projections: usize,
    /// Standard deviation of NCE's Gaussian noise distribution.
    pub nce_noise_std: f64,
    /// Importance-sampling MLE: proposal standard deviation (the starting one when adaptive) and
    /// draws per step.
    pub is_proposal_std: f64,
    pub is_samples: usize,
    /// Importance-sampling MLE: a fixed N(0, is_proposal_std^2 I) or an adaptive diagonal Gaussian
    /// moment-matched to the previous step's weighted draws.
    pub is_proposal: IsProposal,
    /// Adaptive proposal: damping rate of the moment matching, new = (1 - rate) old + rate matched.
    pub is_adapt_rate: f64,
    /// Adaptive proposal: floor on each dimension's standard deviation.
    pub is_min_std: f64,
}

/// The proposal of the `is-mle` objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsProposal {
    /// N(0, is_proposal_std^2 I), independent of the model.
    Fixed,
    /// N(mu, diag(s^2)), mu and s moment-matched (damped, floored) to the self-normalised weighted
    /// draws of the previous step, so it follows the model through the weights (seed 004's q2).
    Adaptive,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig {
            name: ObjectiveKind::Jem,
            ce_weight: 1.0,
            px_weight: 1.0,
            pxy_weight: 0.0,
            alpha: 0.0,
            dsm_sigma: 0.1,
            ssm_projections: 1,
            nce_noise_std: 1.0,
            is_proposal_std: 1.0,
            is_samples: 256,
            is_proposal: IsProposal::Fixed,
            is_adapt_rate: 0.1,
            is_min_std: 0.05,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub epochs: u64,
    /// Stop after this many iterations in all (0: run all epochs).
    pub max_steps: u64,
    pub seed: u64,
    pub device: String,
    /// Write a line to metrics.jsonl every this many iterations.
    pub log_every: u64,
    /// Save a PNG sample grid every this many iterations (0: off).
    pub sample_every: u64,
    /// Write a checkpoint every this many iterations (0: only at epoch ends and at the end).
    pub ckpt_every: u64,
    /// Step checkpoints kept besides `last` and `best`.
    pub keep_checkpoints: usize,
    /// CPU threads for libtorch (0: its default).
    pub threads: usize,
    /// Reproducible runs: no cuDNN autotuning and deterministic cuBLAS workspaces on CUDA (CPU runs
    /// with the same seed and thread count are reproducible in any case).
    pub deterministic: bool,
    /// The fast mode (bf16 conv/linear on float32 master weights, channels-last on CUDA):
    /// "auto" (on for CUDA, off on the CPU), true or false.
    pub fast: FastMode,
}

/// The fast-mode switch as configs write it: `true`, `false` or `"auto"` (also `"on"`, `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastMode {
    /// On for CUDA devices, off on the CPU.
    #[default]
    Auto,
    On,
    Off,
}

impl FastMode {
    /// Whether the fast mode runs on `device`.
    pub fn resolve(self, device: tch::Device) -> bool {
        match self {
            FastMode::Auto => device.is_cuda(),
            FastMode::On => true,
            FastMode::Off => false,
        }
    }

    /// Reads `auto`, `on`/`true` or `off`/`false` (the CLI's spelling).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "auto" => Some(FastMode::Auto),
            "on" | "true" => Some(FastMode::On),
            "off" | "false" => Some(FastMode::Off),
            _ => None,
        }
    }
}

impl Serialize for FastMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FastMode::Auto => s.serialize_str("auto"),
            FastMode::On => s.serialize_bool(true),
            FastMode::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for FastMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FastMode;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<FastMode, E> {
                Ok(if b { FastMode::On } else { FastMode::Off })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FastMode, E> {
                FastMode::parse(s).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            epochs: 200,
            max_steps: 0,
            seed: 1,
            device: "auto".into(),
            log_every: 100,
            sample_every: 1000,
            ckpt_every: 1000,
            keep_checkpoints: 2,
            threads: 0,
            deterministic: false,
            fast: FastMode::Auto,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config file, applies `key=value` overrides and resolves the model preset.
    pub fn load(path: &Path, overrides: &[String]) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&text, overrides).with_context(|| format!("{}: invalid config", path.display()))
    }

    /// Parses TOML text, applies `key=value` overrides, expands `model.preset` and validates.
    pub fn parse(text: &str, overrides: &[String]) -> crate::Result<Self> {
        let mut value: toml::Value = toml::from_str(text)?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        expand_model_preset(&mut value)?;
        Self::from_value(value)
    }

    /// Deserialises a fully resolved config (as written to config.json), naming any bad key.
    pub fn from_value(value: toml::Value) -> crate::Result<Self> {
        let cfg: TrainConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("key `{path}`: {}", e.into_inner())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a resolved config from JSON (a run's config.json or a checkpoint's manifest).
    pub fn from_json(json: &serde_json::Value) -> crate::Result<Self> {
        let cfg: TrainConfig = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("key `{path}`: {}", e.into_inner())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values no run can use, naming the key, before any work is done.
    pub fn validate(&self) -> crate::Result<()> {
        self.model.validate()?;
        let positive = |v: f64, key: &str| -> crate::Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("key `{key}` = {v}: must be a positive number");
            }
            Ok(())
        };
        let non_negative = |v: f64, key: &str| -> crate::Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                bail!("key `{key}` = {v}: must be a finite number >= 0");
            }
            Ok(())
        };
        if self.data.batch_size == 0 {
            bail!("key `data.batch_size` = 0: must be positive");
        }
        if !(0.0..1.0).contains(&self.data.valid_fraction) {
            bail!("key `data.valid_fraction` = {}: must be in [0, 1)", self.data.valid_fraction);
        }
        non_negative(self.data.noise_sigma, "data.noise_sigma")?;
        positive(self.optim.lr, "optim.lr")?;
        if !(0.0..1.0).contains(&self.optim.beta1) {
            bail!("key `optim.beta1` = {}: must be in [0, 1)", self.optim.beta1);
        }
        if !(0.0..1.0).contains(&self.optim.beta2) {
            bail!("key `optim.beta2` = {}: must be in [0, 1)", self.optim.beta2);
        }
        positive(self.optim.eps, "optim.eps")?;
        non_negative(self.optim.momentum, "optim.momentum")?;
        non_negative(self.optim.weight_decay, "optim.weight_decay")?;
        positive(self.optim.decay_rate, "optim.decay_rate")?;
        non_negative(self.optim.clip_grad_norm, "optim.clip_grad_norm")?;
        non_negative(self.sampler.step_size, "sgld.step_size")?;
        non_negative(self.sampler.noise, "sgld.noise")?;
        positive(self.sampler.grad_clip, "sgld.grad_clip")?;
        if matches!(self.sampler.kind, SamplerKind::Mala | SamplerKind::Hmc) {
            positive(self.sampler.step_size, "sgld.step_size")?;
        }
        positive(self.sampler.proposal_std, "sgld.proposal_std")?;
        if self.sampler.kind == SamplerKind::ImportanceResampling && self.sampler.proposals == 0 {
            bail!("key `sgld.proposals` = 0: importance resampling needs proposals");
        }
        if self.sampler.kind == SamplerKind::Hmc && self.sampler.leapfrog == 0 {
            bail!("key `sgld.leapfrog` = 0: HMC needs at least one leapfrog step");
        }
        if self.objective.name == ObjectiveKind::Pcd && !self.buffer.enabled {
            bail!("key `objective.name` = \"pcd\": persistent chains need the buffer (buffer.enabled = true)");
        }
        if self.buffer.enabled && self.buffer.size == 0 {
            bail!("key `buffer.size` = 0: must be positive when the buffer is enabled");
        }
        if !(0.0..=1.0).contains(&self.buffer.reinit_fraction) {
            bail!("key `buffer.reinit_fraction` = {}: must be in [0, 1]", self.buffer.reinit_fraction);
        }
        if self.buffer.per_class && !self.model.is_conditional() {
            bail!("key `buffer.per_class` = true: needs a classifier head (model.head = \"classifier\")");
        }
        if self.buffer.per_class && self.buffer.size < self.model.num_classes {
            bail!("key `buffer.size` = {}: smaller than the number of classes", self.buffer.size);
        }
        for (v, key) in [
            (self.objective.ce_weight, "objective.ce_weight"),
            (self.objective.px_weight, "objective.px_weight"),
            (self.objective.pxy_weight, "objective.pxy_weight"),
            (self.objective.alpha, "objective.alpha"),
        ] {
            non_negative(v, key)?;
        }
        if self.objective.name == ObjectiveKind::Jem && !self.model.is_conditional() {
            bail!("key `objective.name` = \"jem\": needs a classifier head (model.head = \"classifier\")");
        }
        positive(self.objective.dsm_sigma, "objective.dsm_sigma")?;
        positive(self.objective.nce_noise_std, "objective.nce_noise_std")?;
        positive(self.objective.is_proposal_std, "objective.is_proposal_std")?;
        if !(self.objective.is_adapt_rate > 0.0 && self.objective.is_adapt_rate <= 1.0) {
            bail!("key `objective.is_adapt_rate` = {}: must be in (0, 1]", self.objective.is_adapt_rate);
        }
        positive(self.objective.is_min_std, "objective.is_min_std")?;
        if self.objective.is_samples == 0 {
            bail!("key `objective.is_samples` = 0: must be positive");
        }
        if self.objective.ssm_projections == 0 {
            bail!("key `objective.ssm_projections` = 0: must be positive");
        }
        if self.objective.name == ObjectiveKind::ScoreMatching && self.model.input_shape.iter().product::<usize>() > 64
        {
            bail!(
                "key `objective.name` = \"sm\": exact score matching costs one backward pass per input dimension; use \"ssm\" or \"dsm\" for inputs of {:?}",
                self.model.input_shape
            );
        }
        if self.train.epochs == 0 && self.train.max_steps == 0 {
            bail!("key `train.epochs` = 0 with no `train.max_steps`: nothing to train");
        }
        if self.train.log_every == 0 {
            bail!("key `train.log_every` = 0: must be positive");
        }
        crate::device::parse_device_syntax(&self.train.device).context("key `train.device`")?;
        positive(self.guard.max_energy, "guard.max_energy")?;
        positive(self.guard.max_gap, "guard.max_gap")?;
        positive(self.guard.max_sample, "guard.max_sample")?;
        if !(self.guard.lr_factor > 0.0 && self.guard.lr_factor <= 1.0) {
            bail!("key `guard.lr_factor` = {}: must be in (0, 1]", self.guard.lr_factor);
        }
        if !(self.guard.sgld_steps_factor.is_finite() && self.guard.sgld_steps_factor >= 1.0) {
            bail!("key `guard.sgld_steps_factor` = {}: must be >= 1", self.guard.sgld_steps_factor);
        }
        Ok(())
    }

    /// The resolved config as JSON (config.json, checkpoint manifests).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a config always serialises")
    }
}

/// Sets `a.b.c = value` in a TOML tree; the value is read as a TOML literal (number, bool, array)
/// or, failing that, as a string.
pub fn apply_override(root: &mut toml::Value, assignment: &str) -> crate::Result<()> {
    let (key, raw) =
        assignment.split_once('=').with_context(|| format!("override `{assignment}`: expected key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("override `{assignment}`: empty key");
    }
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().with_context(|| format!("override `{key}`: `{part}` is not a table"))?;
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().with_context(|| format!("override `{key}`: parent is not a table"))?;
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Replaces `[model] preset = "NAME"` by the preset's keys, the other `[model]` keys overriding them.
fn expand_model_preset(root: &mut toml::Value) -> crate::Result<()> {
    let table = root.as_table_mut().context("config: top level is not a table")?;
    let model =
        table.get_mut("model").context("key `model` missing: name a preset with [model] preset = \"wrn-28-10\"")?;
    let model = model.as_table_mut().context("key `model`: expected a table")?;
    if let Some(preset) = model.remove("preset") {
        let name = preset.as_str().context("key `model.preset`: expected a string")?;
        let base = ModelConfig::from_preset(name).context("key `model.preset`")?;
        let mut merged = match toml::Value::try_from(base)? {
            toml::Value::Table(t) => t,
            _ => unreachable!("a struct serialises to a table"),
        };
        for (k, v) in std::mem::take(model) {
            merged.insert(k, v);
        }
        *model = merged;
    }
    Ok(())
}

impl TrainConfig {
    /// A short description of the network, for messages.
    pub fn model_label(&self) -> String {
        self.model.label()
    }
}

impl ModelConfig {
    /// A short description: WRN-28-10, ConvNet-8, MLP-3x128.
    pub fn label(&self) -> String {
        let m = self;
        match m.arch {
            Architecture::Wrn => format!("WRN-{}-{}", m.depth, m.width),
            Architecture::Convnet => format!("ConvNet-{}", m.width),
            Architecture::Mlp => format!("MLP-{}x{}", m.layers, m.hidden),
        }
    }
}

/// Converts a resolved JSON config to a TOML tree (dropping nulls, which TOML cannot hold), so
/// `--set` overrides apply to a checkpoint's config as to a file's.
pub fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        J::Object(o) => toml::Value::Table(o.iter().filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?))).collect()),
    })
}

impl ObjectiveKind {
    /// The name as configs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectiveKind::Jem => "jem",
            ObjectiveKind::Igebm => "igebm",
            ObjectiveKind::Pcd => "pcd",
            ObjectiveKind::Cd => "cd",
            ObjectiveKind::ScoreMatching => "sm",
            ObjectiveKind::Dsm => "dsm",
            ObjectiveKind::Ssm => "ssm",
            ObjectiveKind::Nce => "nce",
            ObjectiveKind::IsMle => "is-mle",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_of(set: &str) -> crate::Result<FastMode> {
        let overrides: Vec<String> = if set.is_empty() { vec![] } else { vec![set.to_string()] };
        Ok(TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &overrides)?.train.fast)
    }

    #[test]
    fn fast_mode_reads_bools_and_auto_and_names_the_key_when_bad() {
        assert_eq!(fast_of("").unwrap(), FastMode::Auto);
        assert_eq!(fast_of("train.fast=true").unwrap(), FastMode::On);
        assert_eq!(fast_of("train.fast=\"off\"").unwrap(), FastMode::Off);
        assert_eq!(fast_of("train.fast=auto").unwrap(), FastMode::Auto);
        let e = format!("{:#}", fast_of("train.fast=sometimes").unwrap_err());
        assert!(e.contains("train.fast") && e.contains("sometimes"), "{e}");
        assert!(FastMode::Auto.resolve(tch::Device::Cuda(0)) && !FastMode::Auto.resolve(tch::Device::Cpu));
        assert!(FastMode::On.resolve(tch::Device::Cpu) && !FastMode::Off.resolve(tch::Device::Cuda(0)));
        // The resolved config round-trips through JSON (config.json, checkpoint manifests).
        for set in [vec!["train.fast=true".to_string()], vec!["train.fast=false".to_string()], vec![]] {
            let cfg = TrainConfig::parse("[model]\npreset = \"convnet-small\"\n", &set).unwrap();
            assert_eq!(TrainConfig::from_json(&cfg.to_json()).unwrap().train.fast, cfg.train.fast);
        }
    }
}
