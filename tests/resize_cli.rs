//! `--resize N` on every command that loads data: a folder of images that are not 32x32 trains,
//! resumes and evaluates with it (train records it as data.resize, which resume and eval reuse),
//! and stops with one line naming the flag without it.
mod common;
use common::*;
use std::path::Path;

/// An image folder of 2 classes x 24 images of `side` x `side` (a class colour plus a gradient).
fn folder_of(dir: &Path, side: u32) -> String {
    for (c, colour) in [("a", [200u8, 40, 40]), ("b", [40, 40, 200])] {
        let class = dir.join(c);
        std::fs::create_dir_all(&class).unwrap();
        for i in 0..24u32 {
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let g = ((x + y + i) * 255 / (2 * side + 24)) as u8;
                image::Rgb([colour[0].saturating_add(g / 4), colour[1], colour[2].saturating_sub(g / 4)])
            });
            img.save(class.join(format!("{i:02}.png"))).unwrap();
        }
    }
    format!("folder:{}", dir.display())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON")
}

#[test]
fn a_folder_of_other_sizes_trains_resumes_and_evaluates_with_resize() {
    let dir = tempfile::tempdir().unwrap();
    let spec = folder_of(&dir.path().join("img40"), 40);
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let cfg = cfg.to_str().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();

    // Without --resize: one line naming the flag, and no run folder.
    let e = fails(&["train", "--config", cfg, "--data", &spec, "--out", run_s, "--set", "train.epochs=1"]);
    assert!(e.contains("40x40") && e.contains("--resize 32"), "{e}");
    assert!(!run.exists());

    // With it: trains, and the run's config records it.
    ok(&[
        "train",
        "--config",
        cfg,
        "--data",
        &spec,
        "--out",
        run_s,
        "--quiet",
        "--set",
        "train.epochs=1",
        "--resize",
        "32",
    ]);
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["data"]["resize"], 32);

    // Resume and evaluation take the recorded size without being told again.
    ok(&["train", "--resume", run_s, "--quiet", "--set", "train.epochs=2"]);
    let v = json(&ok(&["eval", "--ckpt", run_s, "--data", &spec, "--device", "cpu", "--json"]));
    assert_eq!(v["count"], 48);
    let v = json(&ok(&["calibrate", "--ckpt", run_s, "--data", &spec, "--device", "cpu", "--json"]));
    assert_eq!(v["count"], 48);
}

#[test]
fn evaluations_of_a_32x32_run_take_resize_for_other_sets() {
    let dir = tempfile::tempdir().unwrap();
    let spec = folder_of(&dir.path().join("img48"), 48);
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.epochs=1"]);
    let run = run.to_str().unwrap();
    for cmd in [
        vec!["eval", "--ckpt", run, "--data", &spec],
        vec!["calibrate", "--ckpt", run, "--data", &spec],
        vec!["ood", "--ckpt", run, "--in", "synthetic:shapes:48:test", "--ood", &spec],
        vec!["logz", "--ckpt", run, "--data", &spec, "--chains", "8", "--temps", "3"],
    ] {
        let mut args = cmd.clone();
        args.extend(["--device", "cpu", "--json"]);
        let e = fails(&args);
        assert!(e.contains("48x48") && e.contains("--resize 32"), "{}: {e}", cmd[0]);
        args.extend(["--resize", "32"]);
        ok(&args);
    }
    // The data command has had it all along; a size of 0 is refused by the parser.
    let v = json(&ok(&["data", &spec, "--resize", "32", "--json"]));
    assert_eq!(v["shape"], serde_json::json!([3, 32, 32]));
    let (success, _, err) = common::run(&["data", &spec, "--resize", "0"]);
    assert!(!success && err.contains("--resize"), "{err}");
}
