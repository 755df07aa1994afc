//! `metrics.jsonl`: one JSON object per log step (and per evaluation), appended as training goes.
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens the log of a run; when resuming at `step`, lines of later steps (written by the
    /// interrupted run after its last checkpoint) are dropped so the log reads as one run.
    pub fn open(dir: &Path, resume_step: Option<u64>) -> crate::Result<Self> {
        let path = dir.join("metrics.jsonl");
        if let (Some(step), true) = (resume_step, path.exists()) {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .collect();
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, out)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(MetricsLog { path })
    }

    pub fn write(&self, record: &serde_json::Value) -> crate::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot open", self.path.display()))?;
        writeln!(f, "{record}").with_context(|| format!("{}: cannot write", self.path.display()))
    }
}
