//! TensorBoard event files beside metrics.jsonl, when `train.tensorboard = true`: every number of
//! every metrics.jsonl record as a scalar at the record's step, and the sample grids of `samples/`
//! as images, so `tensorboard --logdir RUN` (or the folder holding several runs) shows them.
//!
//! Tags: a training log line's keys as they are (`loss`, `acc`, `e_data`, `lr`, `grad_norm`, ...;
//! `step` is the step, not a scalar); an event line's keys under its event (`validation/valid_acc`,
//! `test/test_acc`, `rollback/lr_scale`, ...; its `epoch` is already in the log line); the grids as
//! `samples` and `samples/per-class`. Strings and booleans are not scalars and are left out.
//!
//! The files are TensorFlow's: TFRecords (length, masked CRC-32C of the length, an `Event` proto,
//! its masked CRC-32C) named `events.out.tfevents.TIME.HOST.PID.0`, written by the
//! `tensorboard-rs` crate (its protos from `tensorboard-proto`). A run resumed from step S starts
//! a new file with a `SessionLog` START event at step S + 1, as TensorFlow's own training loops
//! write on a restart: TensorBoard then drops every earlier event past S (`purge_orphaned_data`),
//! the events an interrupted run wrote after its last checkpoint, as metrics.jsonl drops their lines.
//!
//! tensorboard-rs panics on a failed write instead of returning an error (and writes on a thread of
//! its own). Training does not depend on these files: each call runs under `catch_unwind`, and the
//! first failure turns TensorBoard off for the rest of the run with one warning on stderr.
use anyhow::{bail, Context};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_rs::summary::{image, scalar};
use tensorboard_rs::summary_writer::FileWriter;

pub struct TensorBoard {
    dir: PathBuf,
    writer: Option<FileWriter>,
}

impl TensorBoard {
    /// Starts an event file in the run folder `dir` (which exists and is writable); for a run
    /// resumed at `resume_step`, marks the restart so that TensorBoard drops older events past it.
    pub fn open(dir: &Path, resume_step: Option<u64>) -> crate::Result<Self> {
        if !dir.is_dir() {
            bail!("{}: no run folder to write TensorBoard events into", dir.display());
        }
        let writer = catch_unwind(|| FileWriter::new(dir))
            .ok()
            .with_context(|| format!("{}: cannot start a TensorBoard event file", dir.display()))?;
        let mut board = TensorBoard { dir: dir.to_path_buf(), writer: Some(writer) };
        if let Some(step) = resume_step {
            let mut start = SessionLog::new();
            start.set_status(SessionLog_SessionStatus::START);
            let mut event = Event::new();
            event.set_session_log(start);
            board.with_writer(|w| w.add_event(&event, step as usize + 1));
        }
        Ok(board)
    }

    /// Writes the numbers of one metrics.jsonl record as scalars at its step.
    pub fn record(&mut self, record: &serde_json::Value) {
        let Some(step) = record["step"].as_u64() else { return };
        let scalars = scalars(record);
        self.with_writer(|w| {
            for (tag, value) in &scalars {
                w.add_summary(scalar(tag, *value as f32), step as usize);
            }
        });
    }

    /// Writes the PNG `path` (a sample grid) as the image `tag` at `step`; a missing file is skipped.
    pub fn image(&mut self, tag: &str, path: &Path, step: u64) {
        if self.writer.is_none() || !path.exists() {
            return;
        }
        let rgb = match image::open(path) {
            Ok(img) => img.to_rgb8(),
            Err(e) => return self.give_up(&format!("{}: {e}", path.display())),
        };
        let (w, h) = rgb.dimensions();
        // tensorboard-rs reads `data` as interleaved RGB rows of an image [_, width, height].
        self.with_writer(|writer| {
            writer.add_summary(image(tag, rgb.as_raw(), &[3, w as usize, h as usize]), step as usize)
        });
    }

    /// Runs `f` on the writer; on a panic (a failed write), stops writing and says so once.
    fn with_writer(&mut self, f: impl FnOnce(&mut FileWriter)) {
        let Some(w) = self.writer.as_mut() else { return };
        if catch_unwind(AssertUnwindSafe(|| f(w))).is_err() {
            self.give_up("a write failed");
        }
    }

    fn give_up(&mut self, why: &str) {
        eprintln!("warning: {}: TensorBoard events stopped ({why}); training goes on", self.dir.display());
        if let Some(w) = self.writer.take() {
            // Its Drop joins the writing thread and panics if that thread died.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
        }
    }
}

impl Drop for TensorBoard {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            // Joins the writing thread, so every queued event is in the file when the run ends.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
        }
    }
}

/// The (tag, value) scalars of a metrics.jsonl record (see the module's notes on tags).
pub fn scalars(record: &serde_json::Value) -> Vec<(String, f64)> {
    let Some(fields) = record.as_object() else { return Vec::new() };
    let event = record["event"].as_str();
    fields
        .iter()
        .filter(|(k, _)| *k != "step" && !(event.is_some() && *k == "epoch"))
        .filter_map(|(k, v)| {
            let v = v.as_f64()?;
            Some((event.map_or_else(|| k.clone(), |e| format!("{e}/{k}")), v))
        })
        .collect()
}

/// The sample grids `save_sample_grids` wrote for `step` in `dir`, with their tags.
pub fn grids(dir: &Path, step: u64) -> [(&'static str, PathBuf); 2] {
    [
        ("samples", dir.join(format!("step-{step:08}.png"))),
        ("samples/per-class", dir.join(format!("step-{step:08}-per-class.png"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_lines_keep_their_keys_and_events_are_prefixed() {
        let log = json!({"step": 4, "epoch": 1, "lr": 0.001, "loss": 2.5, "img_per_s": 10.0});
        let mut got = scalars(&log);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let want = [("epoch", 1.0), ("img_per_s", 10.0), ("loss", 2.5), ("lr", 0.001)];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v)));
        let rollback = json!({"step": 9, "epoch": 2, "event": "rollback", "reason": "nan", "lr_scale": 0.5,
                              "buffer_reset": false});
        assert_eq!(scalars(&rollback), vec![("rollback/lr_scale".to_string(), 0.5)]);
    }

    #[test]
    fn events_reach_the_file_and_a_missing_folder_is_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut tb = TensorBoard::open(dir.path(), None).unwrap();
        tb.record(&json!({"step": 1, "loss": 1.5}));
        tb.image("samples", &dir.path().join("absent.png"), 1);
        drop(tb);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        // The file-version event and one scalar event, each a TFRecord of 8 + 4 + n + 4 bytes.
        let bytes = std::fs::read(files[0].path()).unwrap();
        let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let second = u64::from_le_bytes(bytes[16 + first..24 + first].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 16 + first + 16 + second);
        let e = TensorBoard::open(&dir.path().join("nowhere"), None).err().expect("no folder");
        assert!(format!("{e:#}").contains("nowhere"), "{e:#}");
    }
}
