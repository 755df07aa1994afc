//! A decode cache: a decoded image data set stored as one file (header + labels + uint8 pixels),
//! keyed by a hash of the source files' names and bytes, written under a temporary name and renamed.
use super::{Dataset, Pixels};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EBMCACH1";

/// Path of the cache file for a given content key.
pub fn cache_path(dir: &Path, kind: &str, key: &str) -> PathBuf {
    dir.join(format!("{kind}-{key}.bin"))
}

/// Writes `ds` (uint8 pixels) to `path` atomically.
pub fn write(path: &Path, ds: &Dataset) -> crate::Result<()> {
    let Pixels::U8(pixels) = &ds.pixels else { bail!("only uint8 data sets are cached") };
    let labels = ds.labels.as_deref().unwrap_or(&[]);
    let header = serde_json::json!({
        "shape": ds.shape, "count": ds.len(), "labelled": ds.labels.is_some(), "classes": ds.classes,
    })
    .to_string();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create cache folder", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?,
    );
    f.write_all(MAGIC)?;
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for l in labels {
        f.write_all(&l.to_le_bytes())?;
    }
    f.write_all(pixels)?;
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename cache file", path.display()))?;
    Ok(())
}

/// Reads a cache file; any inconsistency is an error (the caller then decodes afresh).
pub fn read(path: &Path, name: &str) -> crate::Result<Dataset> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read cache", path.display()))?;
    parse(&bytes, path, name)
}

/// Parses the bytes of a cache file read from `path` (used in error messages) as data set `name`.
pub fn parse(bytes: &[u8], path: &Path, name: &str) -> crate::Result<Dataset> {
    let bad = || anyhow::anyhow!("{}: corrupt cache file", path.display());
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad());
    }
    let hlen = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let header_end = 16usize.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(bad)?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[16..header_end]).map_err(|_| bad())?;
    let shape: Vec<usize> = serde_json::from_value(header["shape"].clone()).map_err(|_| bad())?;
    let count = header["count"].as_u64().ok_or_else(bad)? as usize;
    let labelled = header["labelled"].as_bool().ok_or_else(bad)?;
    let classes: Vec<String> = serde_json::from_value(header["classes"].clone()).map_err(|_| bad())?;
    let numel: usize = shape.iter().product();
    let label_bytes = if labelled { count * 8 } else { 0 };
    if bytes.len() != header_end + label_bytes + count * numel {
        return Err(bad());
    }
    let labels = labelled.then(|| {
        bytes[header_end..header_end + label_bytes]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    });
    let pixels = bytes[header_end + label_bytes..].to_vec();
    Dataset::new(name, Pixels::U8(pixels), shape, labels, classes).map_err(|_| bad())
}
