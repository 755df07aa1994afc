//! `--set key=value` overrides, the sampler section's two spellings made one, and JSON configs as TOML trees.
use anyhow::{bail, Context};

/// The sampler section's canonical name (config.json, checkpoint manifests, messages) and its
/// alias; inside the section, the chain kind's canonical key and its alias.
const SAMPLER_SECTION: (&str, &str) = ("sgld", "sampler");
const SAMPLER_KIND: (&str, &str) = ("sampler", "name");

/// Brings a config tree's sampler section to its canonical spelling: `[sampler]` merges into
/// `[sgld]`, and `name` becomes `sampler`. A setting written under both spellings is an error
/// naming both; a section that is not a table is left for deserialisation to reject.
pub(super) fn canonicalise(root: &mut toml::Value) -> crate::Result<()> {
    let (canonical, alias) = SAMPLER_SECTION;
    let Some(top) = root.as_table_mut() else { return Ok(()) };
    if [canonical, alias].iter().any(|s| top.get(*s).is_some_and(|v| !v.is_table())) {
        return Ok(());
    }
    let mut merged: Option<toml::Table> = None;
    let mut written_as = std::collections::HashMap::new();
    for section in [canonical, alias] {
        let Some(toml::Value::Table(table)) = top.remove(section) else { continue };
        let merged = merged.get_or_insert_with(toml::Table::new);
        for (key, value) in table {
            let name = if key == SAMPLER_KIND.1 { SAMPLER_KIND.0 } else { key.as_str() }.to_string();
            if let Some(first) = written_as.insert(name.clone(), format!("{section}.{key}")) {
                bail!("keys `{first}` and `{section}.{key}` are the same setting (`[sampler]` is another name of `[sgld]`, `name` of `sampler`): write it once");
            }
            merged.insert(name, value);
        }
    }
    if let Some(merged) = merged {
        top.insert(canonical.to_string(), toml::Value::Table(merged));
    }
    Ok(())
}

/// Sets `a.b.c = value` in a TOML tree; the value is read as a TOML literal (number, bool, array)
/// or, failing that, as a string. The sampler section may be spelt either way, in the key and in
/// the tree: both are brought to the canonical spelling first (see [`canonicalise`]).
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
    let mut parts: Vec<&str> = key.split('.').collect();
    if parts[0] == SAMPLER_SECTION.1 {
        parts[0] = SAMPLER_SECTION.0;
    }
    if parts.len() == 2 && parts[0] == SAMPLER_SECTION.0 && parts[1] == SAMPLER_KIND.1 {
        parts[1] = SAMPLER_KIND.0;
    }
    canonicalise(root)?;
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node.as_table_mut().with_context(|| format!("override `{key}`: `{part}` is not a table"))?;
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().with_context(|| format!("override `{key}`: parent is not a table"))?;
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
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
