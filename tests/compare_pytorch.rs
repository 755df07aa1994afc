//! The plain-PyTorch reference (scripts/pytorch_reference.py) builds the same networks as ebm: it
//! loads `ebm train` checkpoints (a tiny WRN, the mlp-2d MLP) with exact name and shape matching
//! and gives ebm's energies on the same inputs; `ebm bench --compare-pytorch` runs both sides and
//! prints their ratio. Skipped, with the reason printed, where .venv/bin/python is absent.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The project's Python with torch, or None (and why) when it is not installed.
fn python() -> Option<PathBuf> {
    let p = repo_root().join(".venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent (`make setup` installs Python with torch there)", p.display());
        None
    }
}

/// A WRN-10-1 trained for 3 JEM steps on 64 synthetic images.
const TINY_WRN: &str = r#"
[model]
preset = "wrn-16-2"
depth = 10
width = 1

[data]
spec = "synthetic:shapes:64"
batch_size = 8
valid_fraction = 0.0
augment = false

[optim]
warmup_iters = 0

[sgld]
steps = 2

[buffer]
size = 32

[train]
epochs = 1
max_steps = 3
device = "cpu"
threads = 1
sample_every = 0
ckpt_every = 0
"#;

/// E(x) of the checkpoint in `run` from ebm and from the reference agree within 1e-4 relative
/// (floored at 1), and the reference's parameter names are ebm's.
fn same_energies(py: &Path, run: &Path, x: &Tensor, dir: &Path) {
    let ckpt = ebm::train::checkpoint::resolve(run).unwrap();
    let loaded = ebm::train::checkpoint::load_model(&ckpt, Device::Cpu).unwrap();
    let ours: Vec<f64> = tch::no_grad(|| Vec::try_from(&loaded.net.energy(x, false).to_kind(Kind::Double)).unwrap());
    let shape: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = Vec::try_from(&x.flatten(0, -1)).unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dir.join("x.npy");
    ebm::data::npy::write(&input, "<f4", &shape, &bytes).unwrap();
    let out = std::process::Command::new(py)
        .arg(repo_root().join("scripts/pytorch_reference.py"))
        .arg("--energies")
        .arg(&ckpt)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the reference failed on {}: {stderr}", ckpt.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: Vec<f64> = v["energies"].as_array().unwrap().iter().map(|e| e.as_f64().unwrap()).collect();
    assert_eq!(theirs.len(), ours.len());
    let mut worst = 0f64;
    for (a, b) in ours.iter().zip(&theirs) {
        let rel = (a - b).abs() / a.abs().max(1.0);
        assert!(rel <= 1e-4, "E(x): ebm {a} vs PyTorch {b} ({})", ckpt.display());
        worst = worst.max(rel);
    }
    eprintln!("{}: E(x) of {} inputs agree, largest relative difference {worst:.1e}", ckpt.display(), ours.len());
    let mut names: Vec<String> = loaded.vs.variables().into_keys().collect();
    names.sort();
    let theirs: Vec<String> = v["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    assert_eq!(names, theirs);
}

#[test]
fn the_reference_loads_ebm_checkpoints_strictly_and_gives_the_same_energies() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "wrn.toml", TINY_WRN);
    let wrn = dir.path().join("wrn");
    ok(&["train", "--config", cfg.to_str().unwrap(), "--out", wrn.to_str().unwrap(), "--quiet"]);
    tch::manual_seed(1);
    let x = Tensor::rand([5, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    same_energies(&py, &wrn, &x, dir.path());
    let mlp = train_toy2d(dir.path(), "mlp", &["train.max_steps=3"]);
    let x = Tensor::randn([7, 2], (Kind::Float, Device::Cpu)) * 2.0;
    same_energies(&py, &mlp, &x, dir.path());
}

#[test]
fn compare_pytorch_runs_both_sides_and_prints_the_ratio() {
    let Some(_) = python() else { return };
    let tiny = ["--rounds", "1", "--iters", "1", "--warmup", "0", "--threads", "1", "--device", "cpu"];
    let mut args = vec!["bench", "--compare-pytorch", "--case", "jem", "--depth", "10", "--width", "1"];
    args.extend(["--batch", "4", "--sgld-steps", "1", "--set", "buffer.size=64", "--json"]);
    args.extend(tiny);
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let case = &v["cases"][0];
    assert_eq!(case["case"], "jem");
    assert_eq!(case["ebm"][0]["parameters"], case["pytorch"][0]["parameters"], "the same WRN on both sides");
    assert!(case["ratios"][0].as_f64().unwrap() > 0.0, "{case}");
    let mut args = vec!["bench", "--compare-pytorch", "--case", "sampler2d", "--points", "50", "--sampler-steps", "5"];
    args.extend(tiny);
    let out = ok(&args);
    assert!(out.contains("ebm / PyTorch") && out.contains("target <= 0.50"), "{out}");
}

#[test]
fn a_missing_python_is_named_with_make_setup() {
    let e = fails(&["bench", "--compare-pytorch", "--python", "/nonexistent/bin/python", "--device", "cpu"]);
    assert!(e.contains("/nonexistent/bin/python") && e.contains("make setup"), "{e}");
}
