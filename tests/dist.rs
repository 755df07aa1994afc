//! Data-parallel training on c10d's Gloo over 127.0.0.1 with 2 ranks (one thread each): a 2-rank
//! JEM run learns, checkpoints once and resumes exactly on 2 ranks (and, re-sliced, on 1); the
//! same run under the real `torchrun --no-python` gives the same weights as `--nproc-per-node`; a
//! killed rank makes the other exit non-zero naming it; bad rendezvous settings are one error.
mod common;
use common::{ebm, repo_root, summary, write_config};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// JEM on synthetic shapes (10 classes, chance 0.1): 30 steps per epoch of 2 x 16 examples.
const LEARN: &str = r#"
[model]
preset = "convnet-small"
width = 8
[data]
spec = "synthetic:shapes:1200"
batch_size = 16
valid_fraction = 0.2
augment = false
[optim]
lr = 1e-2
warmup_iters = 10
decay_epochs = []
clip_grad_norm = 5.0
[sgld]
steps = 2
step_size = 10.0
[buffer]
size = 200
[objective]
px_weight = 0.1
alpha = 0.01
[train]
epochs = 3
device = "cpu"
threads = 1
log_every = 10
sample_every = 0
ckpt_every = 15
keep_checkpoints = 100
"#;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ebm-dist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ebm args...` expecting success; stdout.
fn ok(args: &[&str]) -> String {
    let out = ebm().args(args).output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ebm {args:?} failed:\n{o}\n{e}");
    format!("{o}{e}")
}

fn bytes(run: &Path, ckpt: &str, file: &str) -> Vec<u8> {
    std::fs::read(run.join("checkpoints").join(ckpt).join(file)).unwrap()
}

#[test]
fn two_ranks_learn_checkpoint_once_and_resume_exactly() {
    let dir = tmp("learn");
    let cfg = write_config(&dir, "jem.toml", LEARN);
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let train = |out: &Path, extra: &[&str]| {
        let mut args =
            vec!["train", "--config", s(&cfg), "--out", s(out), "--quiet", "--json", "--nproc-per-node", "2"];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let full = summary(&train(&a, &[]));
    assert_eq!(full["steps"], 90);
    let acc = full["valid_acc"].as_f64().unwrap();
    assert!(acc > 0.2, "2-rank JEM reaches {acc} validation accuracy, not above twice chance (0.2)");
    // One set of checkpoints, in the run folder; rank 1 wrote only its own log.
    assert!(a.join("checkpoints/step-00000090/manifest.json").exists());
    assert!(!a.join("logs/rank-1/checkpoints/step-00000090").exists());
    let manifest: serde_json::Value = serde_json::from_slice(&bytes(&a, "step-00000090", "manifest.json")).unwrap();
    assert_eq!(manifest["state"]["world_size"], 2);

    // Stopped at step 45 and resumed on 2 ranks: the same bytes as the uninterrupted run.
    train(&b, &["--set", "train.max_steps=45"]);
    let resumed = ["--resume", s(&b), "--set", "train.max_steps=0"];
    let mut args = vec!["train", "--quiet", "--json", "--nproc-per-node", "2"];
    args.extend_from_slice(&resumed);
    ok(&args);
    for f in ["model.safetensors", "optim.safetensors", "buffer.safetensors"] {
        assert!(bytes(&a, "step-00000090", f) == bytes(&b, "step-00000090", f), "{f} differs after a 2-rank resume");
    }

    // The step-45 checkpoint on one process: the whole buffer, re-sliced (and said so).
    let half = b.join("checkpoints/step-00000045");
    let out = ok(&["train", "--resume", s(&half), "--out", s(&c), "--json", "--set", "train.max_steps=0"]);
    assert!(out.contains("written by 2 process(es) on 1: the replay buffer is re-sliced"), "{out}");
    let one = summary(out.lines().rfind(|l| l.starts_with('{')).unwrap());
    assert!(one["steps"].as_u64().unwrap() > 45 && one["epochs_completed"] == 3, "{one}");
}

/// The same tiny run started by the real torchrun (`--no-python`, `--standalone`) and by
/// `ebm train --nproc-per-node 2` ends with the same weights: the environment contract is all
/// a worker reads.
#[test]
fn torchrun_no_python_runs_the_same_training() {
    let torchrun = repo_root().join(".venv/bin/torchrun");
    assert!(torchrun.exists(), "{} is missing (make setup)", torchrun.display());
    let dir = tmp("torchrun");
    let cfg = write_config(&dir, "tiny.toml", &common::TINY_JEM.replace("epochs = 2", "epochs = 1"));
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    ok(&["train", "--config", s(&cfg), "--out", s(&ours), "--quiet", "--nproc-per-node", "2"]);
    let out = std::process::Command::new(&torchrun)
        .args(["--standalone", "--nproc-per-node", "2", "--no-python", env!("CARGO_BIN_EXE_ebm")])
        .args(["train", "--config", s(&cfg), "--out", s(&theirs), "--quiet"])
        .env("EBM_CACHE_DIR", std::env::temp_dir().join("ebm-test-cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "torchrun failed: {}", String::from_utf8_lossy(&out.stderr));
    let last = "step-00000006";
    assert!(bytes(&ours, last, "model.safetensors") == bytes(&theirs, last, "model.safetensors"));
    assert!(bytes(&ours, last, "buffer.safetensors") == bytes(&theirs, last, "buffer.safetensors"));
}

/// One worker of a 2-rank run, started by hand with torchrun's variables.
fn worker(rank: usize, port: u16, cfg: &Path, out: &Path, timeout: &str) -> Child {
    ebm()
        .args(["train", "--config", s(cfg), "--out", s(out), "--quiet", "--set", timeout])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Killing rank 1 mid-run makes rank 0 exit non-zero within dist.timeout, naming rank 1, with
/// its last checkpoint intact.
#[test]
fn a_killed_rank_stops_the_other_with_an_error_naming_it() {
    let dir = tmp("kill");
    let cfg = write_config(&dir, "tiny.toml", &common::TINY_JEM.replace("epochs = 2", "epochs = 200"));
    let run = dir.join("run");
    let port = free_port();
    let r0 = worker(0, port, &cfg, &run, "dist.timeout=20");
    let mut r1 = worker(1, port, &cfg, &run, "dist.timeout=20");
    let started = Instant::now();
    while !run.join("checkpoints/step-00000003/manifest.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    r1.kill().unwrap();
    r1.wait().unwrap();
    let killed = Instant::now();
    let out = r0.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(killed.elapsed() < Duration::from_secs(25), "rank 0 took {:?}", killed.elapsed());
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("rank 1 died or hung"), "{line}");
    // The newest checkpoint folder is whole (its manifest, written last, is there).
    let newest = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .max()
        .unwrap();
    assert!(newest.join("manifest.json").exists(), "{}", newest.display());
}

/// A port that is no port, and a store nobody hosts, are each one clear error.
#[test]
fn bad_rendezvous_settings_are_one_clear_error() {
    let dir = tmp("bad");
    let cfg = write_config(&dir, "tiny.toml", common::TINY_JEM);
    let run = |rank: &str, addr: &str, port: &str| {
        let out = ebm()
            .args(["train", "--config", s(&cfg), "--out", s(&dir.join("r")), "--quiet", "--set", "dist.timeout=3"])
            .env("RANK", rank)
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", addr)
            .env("MASTER_PORT", port)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        lines[0].to_string()
    };
    assert!(run("0", "127.0.0.1", "99999").contains("MASTER_PORT = \"99999\": must be a port number"));
    let port = free_port().to_string();
    let e = run("1", "127.0.0.1", &port);
    assert!(
        e.contains(&format!("cannot reach the rendezvous store at MASTER_ADDR:MASTER_PORT = 127.0.0.1:{port}")),
        "{e}"
    );
}
