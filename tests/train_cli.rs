//! `ebm train`, `ebm sample` and checkpoints as a user meets them: exact resume, non-finite loss,
//! bad configs, checkpoints of another architecture or truncated.
mod common;
use common::*;
use std::path::Path;

fn weights(dir: &Path) -> Vec<(String, tch::Tensor)> {
    let mut w = tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn resume_is_bit_exact_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let cfg = cfg.to_str().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    // 24 steps in one run (12 per epoch, a decay at epoch 1) ...
    ok(&["train", "--config", cfg, "--out", one.to_str().unwrap(), "--quiet"]);
    // ... and 9 steps, then a resume for the remaining 15.
    ok(&["train", "--config", cfg, "--out", two.to_str().unwrap(), "--quiet", "--set", "train.max_steps=9"]);
    let ckpt = two.join("checkpoints/step-00000009");
    assert!(ckpt.join("manifest.json").exists());
    let out = ok(&[
        "train",
        "--resume",
        ckpt.to_str().unwrap(),
        "--out",
        two.to_str().unwrap(),
        "--set",
        "train.max_steps=0",
    ]);
    assert!(out.contains("done: 24 steps"), "{out}");
    let a = weights(&one.join("checkpoints/step-00000024"));
    let b = weights(&two.join("checkpoints/step-00000024"));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    let buf = |d: &Path| tch::Tensor::read_safetensors(d.join("checkpoints/step-00000024/buffer.safetensors")).unwrap();
    assert!(buf(&one)[0].1.equal(&buf(&two)[0].1), "replay buffers differ");
    // The metrics log reads as one run: steps strictly increasing, every log step of the
    // uninterrupted run present (plus the final step 9 of the first half).
    let steps = |d: &Path| -> Vec<u64> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("event"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
            .collect()
    };
    let (s1, s2) = (steps(&one), steps(&two));
    assert!(s2.windows(2).all(|w| w[0] < w[1]), "{s2:?}");
    assert!(s1.iter().all(|s| s2.contains(s)), "{s1:?} vs {s2:?}");
    // A grid was written, and a new run refuses to overwrite the folder.
    assert!(one.join("samples/step-00000004.png").exists());
    let e = fails(&["train", "--config", cfg, "--out", one.to_str().unwrap()]);
    assert!(e.contains("already holds a run"), "{e}");
}

#[test]
fn non_finite_loss_stops_with_the_step_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let out = dir.path().join("run");
    let e = fails(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "optim.lr=1e30",
        "--set",
        "optim.warmup_iters=0",
        "--quiet",
    ]);
    assert!(e.contains("non-finite") && e.contains("at step"), "{e}");
    // The last good state loads and holds only finite weights, and the advice works: resuming the
    // run folder with a lower learning rate trains to the end.
    assert!(e.contains("the last good state is") && e.contains("--set optim.lr=<lower>"), "{e}");
    let ckpt = ebm::train::checkpoint::resolve(&out).unwrap();
    for (name, t) in weights(&ckpt) {
        assert!(t.isfinite().all().int64_value(&[]) == 1, "{name} is not finite");
    }
    assert!(e.contains(&ckpt.display().to_string()), "{e}");
    ok(&["train", "--resume", out.to_str().unwrap(), "--set", "optim.lr=1e-3", "--quiet"]);
    let end = ebm::train::checkpoint::resolve(&out).unwrap();
    let state = ebm::train::checkpoint::read_manifest(&end).unwrap().state;
    assert_eq!(state.step, 24, "the resumed run reached its end");
}

#[test]
fn bad_configs_name_the_key_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let cfg = cfg.to_str().unwrap();
    let out = dir.path().join("never");
    let o = out.to_str().unwrap();
    for (set, expect) in [
        ("optim.lrr=1", "optim.lrr"),
        ("sgld.steps=-3", "sgld.steps"),
        ("buffer.reinit_fraction=1.5", "buffer.reinit_fraction"),
        ("train.device=tpu", "unknown device `tpu`"),
        ("model.dropout=1.5", "model.dropout"),
        ("data.batch_size=0", "data.batch_size"),
    ] {
        let e = fails(&["train", "--config", cfg, "--out", o, "--set", set]);
        assert!(e.contains(expect), "{set}: {e}");
    }
    let bad = write_config(dir.path(), "bad.toml", &format!("{TINY_JEM}\n[extra]\nx = 1\n"));
    let e = fails(&["train", "--config", bad.to_str().unwrap(), "--out", o]);
    assert!(e.contains("extra"), "{e}");
    let e = fails(&["train", "--config", cfg, "--out", o, "--data", "toy2d:moons:100"]);
    assert!(e.contains("shape"), "{e}");
    assert!(!out.exists(), "a failed start wrote {}", out.display());
}

#[test]
fn checkpoints_of_another_architecture_or_truncated_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.max_steps=3"]);
    let cfg = dir.path().join("tiny.toml");
    let ckpt = run.join("checkpoints/step-00000003");
    // Another width: the weights do not fit.
    let e = fails(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--resume",
        ckpt.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--set",
        "model.width=8",
    ]);
    assert!(e.contains("another architecture"), "{e}");
    // Sampling works from it ...
    let png = dir.path().join("s.png");
    let out = ok(&[
        "sample",
        "--ckpt",
        run.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
        "--per-class",
        "2",
        "--steps",
        "3",
        "--device",
        "cpu",
    ]);
    assert!(png.exists() && out.contains("20 samples"), "{out}");
    // ... until the weights are truncated.
    let model = ckpt.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["sample", "--ckpt", ckpt.to_str().unwrap(), "--out", png.to_str().unwrap(), "--device", "cpu"]);
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");
}

#[test]
fn sigterm_saves_a_checkpoint_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let run = dir.path().join("run");
    let child = ebm()
        .args([
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--set",
            "train.epochs=1000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is training (a few log lines), then ask it to stop.
    let metrics = run.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(err.contains("interrupted at step") && err.contains("resume with"), "{err}");
    let ckpt = ebm::train::checkpoint::resolve(&run).unwrap();
    let m = ebm::train::checkpoint::read_manifest(&ckpt).unwrap();
    assert!(m.state.step >= 6, "stopped at step {}", m.state.step);
    // It resumes from there (into the same run folder by default).
    let out = ok(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--set",
        &format!("train.max_steps={}", m.state.step + 2),
        "--quiet",
    ]);
    assert!(out.contains(&format!("done: {} steps", m.state.step + 2)), "{out}");
}

#[test]
fn igebm_and_the_conditional_jem_term_train_finite() {
    let dir = tempfile::tempdir().unwrap();
    // IGEBM: energy head, spectral norm, clipped and clamped Langevin, alpha = 1 (configs/igebm.toml
    // on a tiny network and data set).
    let igebm = repo_root().join("configs/igebm.toml");
    let run = dir.path().join("igebm");
    let out = ok(&[
        "train",
        "--config",
        igebm.to_str().unwrap(),
        "--data",
        "synthetic:shapes:256",
        "--out",
        run.to_str().unwrap(),
        "--set",
        "model.preset=\"convnet-small\"",
        "--set",
        "model.width=4",
        "--set",
        "data.batch_size=16",
        "--set",
        "sgld.steps=3",
        "--set",
        "buffer.size=64",
        "--set",
        "train.max_steps=6",
        "--set",
        "train.device=\"cpu\"",
        "--set",
        "train.sample_every=3",
        "--quiet",
        "--json",
    ]);
    let s: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(s["e_data"].as_f64().unwrap().is_finite() && s["e_samples"].as_f64().unwrap().is_finite());
    let vars = weights(&ebm::train::checkpoint::resolve(&run).unwrap());
    assert!(
        vars.iter().any(|(n, _)| n == "f.conv0.weight_orig") && vars.iter().any(|(n, _)| n == "energy_output.weight")
    );
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(log.contains("\"reg\"") && !log.contains("\"ce\""), "{log}");
    // IGEBM samples stay in the data range (clamped).
    let buf = tch::Tensor::read_safetensors(ebm::train::checkpoint::resolve(&run).unwrap().join("buffer.safetensors"))
        .unwrap();
    assert!(buf[0].1.abs().max().double_value(&[]) <= 1.0);

    // JEM with the p(x|y) term on a per-class buffer: logged, finite, and a per-class grid.
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let run = dir.path().join("pxy");
    ok(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--set",
        "objective.pxy_weight=1.0",
        "--set",
        "buffer.per_class=true",
        "--set",
        "buffer.size=100",
        "--set",
        "train.max_steps=4",
    ]);
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(last["pxy"].as_f64().unwrap().is_finite(), "{last}");
    let grid = image::open(run.join("samples/step-00000004-per-class.png")).unwrap();
    // 10 rows of 8 images of 32 px with 2 px padding.
    assert_eq!((grid.width(), grid.height()), (8 * 34 + 2, 10 * 34 + 2));
}

#[test]
fn a_forced_divergence_is_rolled_back_and_the_run_ends_finite() {
    let dir = tempfile::tempdir().unwrap();
    // Adam at lr 5 blows the energies up within a few steps; each rollback divides the rate by 10.
    let (run, out) = train_tiny(
        dir.path(),
        "run",
        &[
            "--json",
            "--set",
            "optim.lr=5.0",
            "--set",
            "optim.warmup_iters=0",
            "--set",
            "guard.lr_factor=0.1",
            "--set",
            "guard.max_rollbacks=6",
            "--set",
            "guard.max_energy=50",
            "--set",
            "guard.max_gap=50",
        ],
    );
    let s = summary(&out);
    assert_eq!(s["steps"], 24);
    assert!(s["e_data"].as_f64().unwrap().is_finite());
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let rollbacks: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "rollback")
        .collect();
    assert!(!rollbacks.is_empty(), "no rollback happened: {log}");
    for r in &rollbacks {
        assert!(r["to_step"].as_u64().unwrap() <= r["step"].as_u64().unwrap());
        assert!(r["reason"].as_str().unwrap().len() > 5);
    }
    let last = ebm::train::checkpoint::read_manifest(&ebm::train::checkpoint::resolve(&run).unwrap()).unwrap();
    assert_eq!(last.state.rollbacks as usize, rollbacks.len());
    assert!(last.state.lr_scale < 1.0);
    for (name, t) in weights(&ebm::train::checkpoint::resolve(&run).unwrap()) {
        assert!(t.isfinite().all().int64_value(&[]) == 1, "{name}");
    }
}

#[test]
fn deterministic_cpu_runs_repeat_their_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let metrics = |name: &str| -> Vec<serde_json::Value> {
        let run = dir.path().join(name);
        ok(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--quiet",
            "--deterministic",
            "--seed",
            "5",
        ]);
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("time");
                o.remove("img_per_s");
                v
            })
            .collect()
    };
    let (a, b) = (metrics("a"), metrics("b"));
    assert!(a.len() > 5);
    assert_eq!(a, b);
}

#[test]
fn resume_is_exact_with_the_adaptive_is_proposal() {
    // is-mle with the adaptive proposal on 8gaussians: 20 steps in one run, or 5 then a resume.
    let dir = tempfile::tempdir().unwrap();
    let cfg = repo_root().join("configs/toy2d.toml");
    let cfg = cfg.to_str().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let sets = [
        "data.spec=\"toy2d:8gaussians:2560\"",
        "objective.name=\"is-mle\"",
        "objective.is_proposal=\"adaptive\"",
        "objective.is_proposal_std=0.5",
        "train.epochs=2",
        "train.device=\"cpu\"",
        "train.ckpt_every=5",
        "train.keep_checkpoints=10",
    ];
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["train", "--config", cfg, "--out", out.to_str().unwrap(), "--quiet"].map(String::from).to_vec();
        for s in sets.iter().chain(extra) {
            a.extend(["--set".to_string(), s.to_string()]);
        }
        a
    };
    let run = |a: Vec<String>| ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    run(args(&one, &[]));
    run(args(&two, &["train.max_steps=5"]));
    let ckpt = two.join("checkpoints/step-00000005");
    ok(&[
        "train",
        "--resume",
        ckpt.to_str().unwrap(),
        "--out",
        two.to_str().unwrap(),
        "--quiet",
        "--set",
        "train.max_steps=0",
    ]);
    let a = weights(&one.join("checkpoints/step-00000020"));
    let b = weights(&two.join("checkpoints/step-00000020"));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    // The proposal's state is in the checkpoint and has moved away from N(0, 0.5^2 I).
    let std = &a.iter().find(|(n, _)| n == "objective.is_std").expect("the proposal is saved").1;
    let moved = (std - 0.5).abs().max().double_value(&[]);
    assert!(moved > 0.05, "the proposal std did not move: {std:?}");
    assert!(a.iter().any(|(n, _)| n == "objective.is_mean"));
    // A bad proposal name is refused, naming the key.
    let e = fails(
        &args(&dir.path().join("bad"), &["objective.is_proposal=\"wide\""])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(e.contains("objective.is_proposal") && e.contains("adaptive"), "{e}");
    let e = fails(
        &args(&dir.path().join("bad"), &["objective.is_adapt_rate=0"]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(e.contains("objective.is_adapt_rate"), "{e}");
}

/// At two threads, the demo config repeats itself and resumes exactly: weights, optimiser
/// moments and replay buffer, bit for bit. Its buffer of 500 chains with batch 64 is where
/// duplicate slots used to make the write-back depend on thread timing. The tiny config does the
/// same at the default thread count.
#[test]
fn the_demo_config_repeats_and_resumes_exactly_at_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo_root().join("configs/demo.toml");
    let sets = [
        "train.threads=2",
        "data.spec=\"synthetic:shapes:640\"",
        "data.test_spec=\"synthetic:shapes:64:test\"",
        "train.ckpt_every=5",
        "train.sample_every=0",
    ];
    // 9 steps per epoch.
    repeats_and_resumes_exactly(&dir.path().join("demo"), &demo, &sets, 2, 9);
    let tiny = write_config(dir.path(), "tiny.toml", TINY_JEM);
    repeats_and_resumes_exactly(&dir.path().join("tiny"), &tiny, &["train.threads=0"], 2, 12);
}
