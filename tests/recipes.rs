//! The stable JEM successors' tricks as a user turns them on: JEM++'s class-Gaussian buffer,
//! SADA-JEM's SAM and plain p(x) loader with noise-free SGLD, BatchNorm, the weight average
//! (EMA) — each run repeats itself and resumes bit for bit, and `--weights` picks the average.
mod common;
use common::*;

/// Every trick at once on the tiny JEM config: two runs and a resumed one end with the same
/// weights, optimiser moments, buffer and weight average, bit for bit.
#[test]
fn the_successor_tricks_repeat_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let sets = [
        "model.norm=\"batch\"",
        "buffer.init=\"class-gaussian\"",
        "buffer.per_class=true",
        "buffer.size=60",
        "objective.pxy_weight=0.5",
        "data.px_batch=\"plain\"",
        "optim.sam_rho=0.5",
        "optim.weight_decay=5e-4",
        "sgld.noise=0.0",
        "ema.decay=0.99",
        "ema.warmup=10",
    ];
    repeats_and_resumes_exactly(&dir.path().join("all"), &tiny, &sets, 2, 12);
    // The checkpoint holds the average, and it differs from the trained weights.
    let ckpt = dir.path().join("all/a/checkpoints/step-00000024");
    let raw = tch::Tensor::read_safetensors(ckpt.join("model.safetensors")).unwrap();
    let ema = tch::Tensor::read_safetensors(ckpt.join("ema.safetensors")).unwrap();
    assert_eq!(raw.len(), ema.len());
    assert!(raw
        .iter()
        .any(|(n, t)| ema.iter().any(|(m, u)| n == m && t.requires_grad() == u.requires_grad() && !t.equal(u))));
}

/// `ebm eval` of checkpoint `ckpt` on a small test set, on the CPU, with `extra` flags.
fn eval_args<'a>(ckpt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["eval", "--ckpt", ckpt, "--data", "synthetic:shapes:64:test", "--device", "cpu"];
    v.extend_from_slice(extra);
    v
}

/// `--weights ema|raw|auto`: the average when asked (and by default when there is one), the
/// trained weights when asked, one clear error when the checkpoint has no average.
#[test]
fn evaluation_picks_the_weight_average_or_the_raw_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "ema", &["--set", "ema.decay=0.9", "--set", "ema.warmup=0"]);
    let run = run.to_str().unwrap();
    let eval = |w: &str| {
        let out = ok(&eval_args(run, &["--weights", w, "--json"]));
        serde_json::from_str::<serde_json::Value>(out.lines().last().unwrap()).unwrap()
    };
    let (auto, ema, raw) = (eval("auto"), eval("ema"), eval("raw"));
    assert_eq!(auto["weights"], "ema");
    assert_eq!(ema["weights"], "ema");
    assert_eq!(raw["weights"], "raw");
    assert_eq!(auto["mean_energy"], ema["mean_energy"]);
    assert_ne!(ema["mean_energy"], raw["mean_energy"], "a 0.9 average over 24 steps is not the last weights");
    let (plain, _) = train_tiny(dir.path(), "plain", &[]);
    let plain = plain.to_str().unwrap();
    let e = fails(&eval_args(plain, &["--weights", "ema"]));
    assert!(e.contains("no weight average") && e.contains("--weights raw"), "{e}");
    let out = ok(&eval_args(plain, &["--json"]));
    assert!(out.contains("\"weights\":\"raw\""), "{out}");
}

/// Keys of the recipes that cannot work are refused before anything is written, naming the key.
#[test]
fn recipe_keys_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = write_config(dir.path(), "tiny.toml", TINY_JEM);
    for (set, key) in [
        ("objective.pxy_weight=1.0", "objective.pxy_weight"),
        ("ema.decay=1.0", "ema.decay"),
        ("optim.sam_rho=-1", "optim.sam_rho"),
        ("buffer.init=\"gaussian\"", "buffer.init"),
        ("data.px_batch=\"other\"", "data.px_batch"),
    ] {
        let out = dir.path().join("bad");
        let e = fails(&["train", "--config", tiny.to_str().unwrap(), "--out", out.to_str().unwrap(), "--set", set]);
        assert!(e.contains(key), "{set}: {e}");
        assert!(!out.join("checkpoints").exists(), "{set}: wrote a checkpoint");
    }
}

/// Every shipped config parses, validates and meets its objective's requirements; the successor
/// recipes say where their settings come from.
#[test]
fn every_shipped_config_is_valid_and_the_recipes_cite_their_sources() {
    let mut n = 0;
    for e in std::fs::read_dir(repo_root().join("configs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let cfg = ebm::config::TrainConfig::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            ebm::objectives::check(&cfg).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 6, "{n} configs");
    for (file, source) in [("jempp.toml", "sndnyang/JEMPP"), ("sada-jem.toml", "sndnyang/SADAJEM")] {
        let text = std::fs::read_to_string(repo_root().join("configs").join(file)).unwrap();
        assert!(text.contains(source), "{file} does not cite {source}");
    }
    let sada = ebm::config::TrainConfig::load(&repo_root().join("configs/sada-jem.toml"), &[]).unwrap();
    assert!(sada.optim.sam_is_adaptive() && sada.optim.sam_rho == 2.0 && sada.sampler.noise == 0.0);
}
