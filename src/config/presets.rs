//! The network presets of `models/`, embedded, and the expansion of `[model] preset = "NAME"`.
use super::model::ModelConfig;
use anyhow::{bail, Context};
use std::path::Path;

/// Network presets shipped in `models/`, embedded so a config can name them from anywhere.
const PRESETS: &[(&str, &str)] = &[
    ("wrn-28-10", include_str!("../../models/wrn-28-10.toml")),
    ("wrn-28-2", include_str!("../../models/wrn-28-2.toml")),
    ("wrn-16-2", include_str!("../../models/wrn-16-2.toml")),
    ("convnet-small", include_str!("../../models/convnet-small.toml")),
    ("mlp-2d", include_str!("../../models/mlp-2d.toml")),
];

/// Names of the embedded network presets.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
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
}

/// Replaces `[model] preset = "NAME"` by the preset's keys, the other `[model]` keys overriding them.
pub(super) fn expand_model_preset(root: &mut toml::Value) -> crate::Result<()> {
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
