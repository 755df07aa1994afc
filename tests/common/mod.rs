//! Helpers shared by the integration tests: run the `ebm` binary as a user would.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn ebm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ebm"));
    // Decode caches of tests stay out of the project's datasets/ folder.
    c.env("EBM_CACHE_DIR", std::env::temp_dir().join("ebm-test-cache"));
    c
}

/// Runs `ebm args...`, returning (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out: Output = ebm().args(args).output().expect("run ebm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs and expects success, returning stdout.
pub fn ok(args: &[&str]) -> String {
    let (success, out, err) = run(args);
    assert!(success, "ebm {args:?} failed:\nstdout: {out}\nstderr: {err}");
    out
}

/// Runs and expects failure with a one-line error, returning it.
pub fn fails(args: &[&str]) -> String {
    let (success, out, err) = run(args);
    assert!(!success, "ebm {args:?} should fail; stdout: {out}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real CIFAR-10 JPEG copy beside the repository, when present.
pub fn shared_cifar_jpeg() -> Option<PathBuf> {
    let p = repo_root().join("../shared/data/cifar10-jpeg");
    p.join("test.tar.gz").exists().then_some(p)
}

/// Unpacks `tarball` into `dest` with the system tar.
pub fn untar(tarball: &Path, dest: &Path) {
    let st = Command::new("tar").arg("xzf").arg(tarball).arg("-C").arg(dest).status().expect("tar");
    assert!(st.success(), "tar failed on {}", tarball.display());
}

/// Writes a small TOML config into `dir` and returns its path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A tiny JEM config on synthetic shapes, for fast CLI tests.
pub const TINY_JEM: &str = r#"
[model]
preset = "convnet-small"
width = 4

[data]
spec = "synthetic:shapes:256"
batch_size = 16
valid_fraction = 0.25
augment = true

[optim]
lr = 1e-3
warmup_iters = 5
decay_epochs = [1]

[sgld]
steps = 3

[buffer]
size = 64

[objective]
alpha = 0.1

[train]
epochs = 2
device = "cpu"
threads = 1
log_every = 2
sample_every = 4
ckpt_every = 3
keep_checkpoints = 100
"#;

/// Runs `ebm train` on the tiny JEM config (written into `dir`) into `dir/name`, with extra
/// arguments; expects success and returns (run folder, stdout).
pub fn train_tiny(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, String) {
    let cfg = write_config(dir, "tiny.toml", TINY_JEM);
    let run = dir.join(name);
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = ok(&args);
    (run, out)
}

/// The JSON summary `ebm train --json` prints last.
pub fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("JSON summary")
}

/// Trains configs/toy2d.toml on the CPU (one thread, as the config says) into `dir/name`,
/// with `--set` overrides; returns the run folder.
pub fn train_toy2d(dir: &Path, name: &str, sets: &[&str]) -> PathBuf {
    let run = dir.join(name);
    let cfg = repo_root().join("configs/toy2d.toml");
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "--quiet".into(),
    ];
    for s in ["train.device=\"cpu\""].iter().chain(sets) {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run
}

/// The files of a checkpoint that must agree for two runs to be the same run.
pub fn checkpoint_tensors(ckpt: &Path) -> Vec<(String, tch::Tensor)> {
    let mut all = Vec::new();
    for f in ["model.safetensors", "optim.safetensors", "buffer.safetensors", "ema.safetensors"] {
        if f == "ema.safetensors" && !ckpt.join(f).exists() {
            continue;
        }
        let mut t = tch::Tensor::read_safetensors(ckpt.join(f)).unwrap();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        all.extend(t.into_iter().map(|(n, t)| (format!("{f}:{n}"), t)));
    }
    all
}

/// Runs `config` three times into `dir`: twice for `epochs` epochs, once for one epoch then
/// resumed to `epochs`; asserts the final checkpoints hold the same weights, optimiser moments
/// and replay buffer (and weight average, when kept), bit for bit.
pub fn repeats_and_resumes_exactly(dir: &Path, config: &Path, sets: &[&str], epochs: u64, per_epoch: u64) {
    let run = |name: &str, extra: &[String]| {
        let out = dir.join(name);
        let mut args = vec!["train", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"];
        for s in sets {
            args.extend(["--set", s]);
        }
        args.extend(extra.iter().map(String::as_str));
        ok(&args);
        out
    };
    let all = ["--set".to_string(), format!("train.epochs={epochs}")];
    let (a, b) = (run("a", &all), run("b", &all));
    let c = run("c", &["--set".to_string(), "train.epochs=1".to_string()]);
    ok(&["train", "--resume", c.to_str().unwrap(), "--set", &format!("train.epochs={epochs}"), "--quiet"]);
    let last = |d: &Path| d.join(format!("checkpoints/step-{:08}", epochs * per_epoch));
    let ta = checkpoint_tensors(&last(&a));
    for other in [&b, &c] {
        let to = checkpoint_tensors(&last(other));
        assert_eq!(ta.len(), to.len());
        for ((na, x), (nb, y)) in ta.iter().zip(&to) {
            assert_eq!(na, nb);
            assert!(x.equal(y), "{na} differs between {} and {}", a.display(), other.display());
        }
    }
}
