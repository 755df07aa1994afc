//! `train.tensorboard = true`: TensorBoard's own reader (`EventAccumulator` of the `tensorboard`
//! Python package, which `make setup` installs into .venv) reads back every scalar of
//! metrics.jsonl at its step, and the sample grids as PNG images. Skipped, with the reason
//! printed, where that package cannot be imported.
mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.encoded_image_string[:8].hex()] for e in acc.Images(t)] for t in tags["images"]},
}))
"#;

/// The .venv's Python when it can import TensorBoard's reader, else why not.
fn python_with_tensorboard() -> Result<std::path::PathBuf, String> {
    let python = repo_root().join(".venv/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import tensorboard.backend.event_processing.event_accumulator"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import tensorboard (make setup installs it): {}",
            python.display(),
            String::from_utf8_lossy(&probe.stderr).lines().last().unwrap_or_default()
        ));
    }
    Ok(python)
}

/// Reads the run's event files with TensorBoard's reader and checks them against metrics.jsonl:
/// the same tags, the same (step, value) points, and one `samples` image per sample grid.
fn check_against_metrics_jsonl(python: &Path, run: &Path) {
    let out = Command::new(python).args(["-c", READER]).arg(run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // What metrics.jsonl holds, as (tag -> [(step, value)]) under the tags of src/train/tensorboard.rs.
    let mut want: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = record["step"].as_u64().unwrap();
        for (tag, v) in ebm::train::tensorboard::scalars(&record) {
            want.entry(tag).or_default().push((step, v));
        }
    }
    for tag in ["loss", "lr", "grad_norm", "validation/valid_acc"] {
        assert!(want.contains_key(tag), "metrics.jsonl has no {tag}: {:?}", want.keys());
    }
    let scalars = read["scalars"].as_object().unwrap();
    assert_eq!(scalars.keys().cloned().collect::<Vec<_>>(), want.keys().cloned().collect::<Vec<_>>());
    for (tag, points) in &want {
        let got: Vec<(u64, f64)> =
            scalars[tag].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect();
        assert_eq!(got.len(), points.len(), "{tag}: {got:?} against {points:?}");
        for ((gs, gv), (ws, wv)) in got.iter().zip(points) {
            // Scalars are float32 in the event file.
            assert!(
                gs == ws && (gv - wv).abs() <= 1e-6 * wv.abs().max(1.0),
                "{tag}: ({gs}, {gv}) against ({ws}, {wv})"
            );
        }
    }

    // The sample grids: every 4 steps (the tiny config's sample_every), PNG files.
    let grids = read["images"]["samples"].as_array().expect("a samples image tag");
    let steps: Vec<u64> = grids.iter().map(|g| g[0].as_u64().unwrap()).collect();
    let pngs = std::fs::read_dir(run.join("samples"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().contains("per-class"))
        .count();
    assert_eq!((steps.len(), steps[0]), (pngs, 4), "{steps:?}");
    assert!(grids.iter().all(|g| g[1] == "89504e470d0a1a0a"), "{grids:?}");
}

#[test]
fn tensorboards_reader_reads_back_every_scalar_of_metrics_jsonl() {
    let python = match python_with_tensorboard() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.tensorboard=true"]);
    check_against_metrics_jsonl(&python, &run);

    // As if the run had been killed after step 24 with step 9 its last checkpoint: resumed from
    // there, it writes steps 10-24 again; metrics.jsonl drops its old lines past 9, and TensorBoard
    // must drop the old events (no point twice).
    let ckpt = run.join("checkpoints/step-00000009");
    ok(&["train", "--resume", ckpt.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"]);
    let files = std::fs::read_dir(&run).unwrap().flatten();
    assert_eq!(files.filter(|e| e.file_name().to_string_lossy().starts_with("events.out")).count(), 2);
    check_against_metrics_jsonl(&python, &run);
}

#[test]
fn without_the_key_no_event_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.epochs=1"]);
    let events: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.out.tfevents"))
        .collect();
    assert!(events.is_empty(), "{events:?}");
}
