//! `metrics.jsonl`: one JSON object per log step (and per evaluation), appended as training goes;
//! with `train.tensorboard`, the same records (and the sample grids) as TensorBoard events too.
use super::tensorboard::{self, TensorBoard};
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct MetricsLog {
    path: PathBuf,
    /// The step a resumed run continues from.
    resume_step: Option<u64>,
    /// The TensorBoard event file, when `train.tensorboard` is on.
    board: Option<Mutex<TensorBoard>>,
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
        Ok(MetricsLog { path, resume_step, board: None })
    }

    /// Also writes every record (and the sample grids) as TensorBoard events beside the log, when
    /// `on` (`train.tensorboard`).
    pub fn with_tensorboard(mut self, on: bool) -> crate::Result<Self> {
        if on {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            self.board = Some(Mutex::new(TensorBoard::open(dir, self.resume_step)?));
        }
        Ok(self)
    }

    /// The sample grids just written for `step` into `dir`, as TensorBoard images (when on).
    pub fn sample_grids(&self, dir: &Path, step: u64) {
        if let Some(board) = &self.board {
            let mut board = board.lock().unwrap_or_else(|e| e.into_inner());
            for (tag, path) in tensorboard::grids(dir, step) {
                board.image(tag, &path, step);
            }
        }
    }

    pub fn write(&self, record: &serde_json::Value) -> crate::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("{}: cannot open", self.path.display()))?;
        writeln!(f, "{record}").with_context(|| format!("{}: cannot write", self.path.display()))?;
        if let Some(board) = &self.board {
            board.lock().unwrap_or_else(|e| e.into_inner()).record(record);
        }
        Ok(())
    }
}
