//! The run configuration `TrainConfig`: read from TOML with overrides, validated across sections, written as JSON.
mod buffer;
mod checks;
mod data;
mod dist;
mod ema;
mod guard;
mod model;
mod objective;
mod optim;
mod overrides;
mod presets;
mod run;
mod sampler;
#[cfg(test)]
mod tests;

pub use buffer::{BufferConfig, BufferInit};
pub use data::{DataConfig, PxBatch};
pub use dist::{Backend, BackendChoice, DistConfig};
pub use ema::EmaConfig;
pub use guard::GuardConfig;
pub use model::{Activation, Architecture, Head, ModelConfig, Norm, Pool};
pub use objective::{IsProposal, ObjectiveConfig};
pub use optim::{OptimConfig, OptimizerKind};
pub use overrides::{apply_override, json_to_toml};
pub use presets::preset_names;
pub use run::{FastMode, LoopConfig};
pub use sampler::{SamplerConfig, SamplerKind, SgldVariant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// The sampler section: `sgld` in config.json and manifests (old checkpoints load unchanged);
    /// `sampler` is accepted too.
    #[serde(default)]
    #[serde(rename = "sgld", alias = "sampler")]
    pub sampler: SamplerConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub objective: ObjectiveConfig,
    #[serde(default)]
    pub train: LoopConfig,
    #[serde(default)]
    pub guard: GuardConfig,
    #[serde(default)]
    pub ema: EmaConfig,
    #[serde(default)]
    pub dist: DistConfig,
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
        presets::expand_model_preset(&mut value)?;
        Self::from_value(value)
    }

    /// Deserialises a fully resolved config (as written to config.json), naming any bad key. The
    /// sampler section may be spelt `[sgld]` or `[sampler]` (see [`apply_override`]).
    pub fn from_value(mut value: toml::Value) -> crate::Result<Self> {
        overrides::canonicalise(&mut value)?;
        Self::deserialize_validated(value)
    }

    /// Reads a resolved config from JSON (a run's config.json or a checkpoint's manifest); the
    /// sampler section may be `"sgld": {"sampler": ...}` (as written) or `"sampler": {"name": ...}`.
    pub fn from_json(json: &serde_json::Value) -> crate::Result<Self> {
        Self::deserialize_validated(json)
    }

    /// Deserialises and validates, naming the path of a bad key.
    fn deserialize_validated<'de, D: serde::Deserializer<'de>>(d: D) -> crate::Result<Self>
    where
        D::Error: Send + Sync + 'static,
    {
        let cfg: TrainConfig = serde_path_to_error::deserialize(d).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("key `{path}`: {}", e.into_inner())
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values no run can use, naming the key, before any work is done: each section's own
    /// checks, then those that read two sections. The objective's own requirements (a classifier
    /// head for jem, the buffer for pcd, low dimension for sm) are checked by its registration in
    /// `objectives`, when a trainer is built.
    pub fn validate(&self) -> crate::Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        self.optim.validate()?;
        self.sampler.validate()?;
        self.buffer.validate()?;
        self.objective.validate()?;
        self.train.validate()?;
        self.guard.validate()?;
        self.ema.validate()?;
        self.dist.validate()?;
        let shape = &self.model.input_shape;
        if self.train.fid_every > 0 && (shape.len() != 3 || shape[0] != 3) {
            bail!(
                "key `train.fid_every` = {}: FID needs a model of RGB images (model.input_shape [3, H, W]), not {shape:?}; set it to 0",
                self.train.fid_every
            );
        }
        if self.buffer.per_class && !self.model.is_conditional() {
            bail!("key `buffer.per_class` = true: needs a classifier head (model.head = \"classifier\")");
        }
        if self.buffer.per_class && !self.buffer.size.is_multiple_of(self.model.num_classes.max(1)) {
            bail!(
                "key `buffer.size` = {}: per-class blocks need a size that model.num_classes = {} divides (e.g. {})",
                self.buffer.size,
                self.model.num_classes,
                (self.buffer.size / self.model.num_classes.max(1)).max(1) * self.model.num_classes
            );
        }
        Ok(())
    }

    /// The resolved config as JSON (config.json, checkpoint manifests).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a config always serialises")
    }

    /// A short description of the network, for messages.
    pub fn model_label(&self) -> String {
        self.model.label()
    }
}
