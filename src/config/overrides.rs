//! `--set key=value` overrides on a config's TOML tree, and the JSON-to-TOML conversion that lets
//! them apply to a checkpoint's config as to a file's.
use anyhow::{bail, Context};

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
