//! `ebm sample` as a user meets it: `--out` decides the format by its extension (.npy arrays of
//! points or images, PNG grids and scatter plots), the chains' range for models on points.
mod common;
use common::*;
use ebm::data::npy::{self, Dtype};
use std::path::Path;

/// `ebm sample --ckpt RUN --out OUT ARGS... --device cpu`; expects success, returns stdout.
fn sample(run: &Path, out: &Path, args: &[&str]) -> String {
    let mut all = vec!["sample", "--ckpt", run.to_str().unwrap(), "--out", out.to_str().unwrap(), "--device", "cpu"];
    all.extend_from_slice(args);
    ok(&all)
}

/// The float32 array of a `.npy` file, with its shape.
fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = npy::read(path).unwrap();
    assert_eq!(a.dtype, Dtype::F32, "{}", path.display());
    (a.shape.clone(), a.to_f32())
}

/// What `ebm data npy:FILE --json` says of a file.
fn data_json(path: &Path) -> serde_json::Value {
    let out = ok(&["data", &format!("npy:{}", path.display()), "--json"]);
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn a_2d_model_writes_npy_and_scatter_png_and_refuses_other_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "toy2d:8gaussians:2000";
    let run = train_toy2d(dir.path(), "toy", &["train.max_steps=30", &format!("data.spec=\"{spec}\"")]);

    let s = dir.path().join("s.npy");
    let out = sample(&run, &s, &["--n", "500", "--steps", "200"]);
    assert!(out.contains("500 samples") && out.contains("[500, 2]"), "{out}");
    // The chains' range is the trainer's, recomputed from the checkpoint's training data.
    assert!(out.contains(&format!("from the training data {spec}")), "{out}");
    let (shape, v) = read_f32(&s);
    assert_eq!(shape, vec![500, 2]);
    assert!(v.iter().all(|x| x.is_finite()));
    // Mostly within the data's box (a model trained 30 steps is rough; its chains wander a little).
    let data = ebm::data::load(spec, &Default::default()).unwrap();
    let (lo, hi) = data.value_range();
    let inside = v.chunks_exact(2).filter(|p| p.iter().all(|&x| x >= lo && x <= hi)).count();
    assert!(inside >= 400, "{inside} of 500 samples inside the data box [{lo}, {hi}]");
    // `ebm data` reads it back as 500 points.
    let d = data_json(&s);
    assert_eq!((d["count"].as_u64(), d["shape"].clone()), (Some(500), serde_json::json!([2])), "{d}");

    let png = dir.path().join("s.png");
    let out = sample(&run, &png, &["--n", "300", "--steps", "20", "--from", "noise"]);
    assert!(out.contains("scatter plot"), "{out}");
    let img = image::open(&png).unwrap();
    assert!(img.width() >= 400 && img.height() >= 400, "{}x{}", img.width(), img.height());

    let txt = dir.path().join("s.txt");
    let e = fails(&["sample", "--ckpt", run.to_str().unwrap(), "--out", txt.to_str().unwrap(), "--device", "cpu"]);
    assert!(e.contains("s.txt") && e.contains("`.txt`") && e.contains(".npy") && e.contains(".png"), "{e}");
    assert!(!txt.exists());
    let e = fails(&["sample", "--ckpt", run.to_str().unwrap(), "--out", "samples", "--device", "cpu"]);
    assert!(e.contains("no extension"), "{e}");
}

#[test]
fn fresh_chains_start_in_the_init_range_and_clamped_samplers_keep_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let run =
        train_toy2d(dir.path(), "clamped", &["train.max_steps=5", "data.spec=\"toy2d:rings:1000\"", "sgld.clamp=true"]);
    let s = dir.path().join("s.npy");
    let out = sample(&run, &s, &["--n", "400", "--steps", "10", "--from", "noise", "--init-range", "0.5"]);
    assert!(out.contains("[-0.5000, 0.5000] from --init-range"), "{out}");
    let (_, v) = read_f32(&s);
    assert!(v.iter().all(|x| x.abs() <= 0.5), "{:?}", v.iter().fold(0f32, |m, x| m.max(x.abs())));
    // Without --init-range, the training data's extent + 10%: rings reach radius 3 (+ noise).
    let out = sample(&run, &s, &["--n", "400", "--steps", "10", "--from", "noise"]);
    let (_, v) = read_f32(&s);
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(max > 2.0 && max <= 3.3 * 1.1 + 0.5, "{max}: {out}");
    let e = fails(&["sample", "--ckpt", run.to_str().unwrap(), "--out", "x.npy", "--init-range=-1", "--device", "cpu"]);
    assert!(e.contains("--init-range"), "{e}");
}

#[test]
fn points_of_other_dimensions_write_npy_and_ask_for_it_instead_of_png() {
    let dir = tempfile::tempdir().unwrap();
    // 3-D points in [-2, 2]^3, as a user's npy file.
    let pts: Vec<f32> = (0..600).map(|i| ((i * 37 % 101) as f32 / 25.0) - 2.0).collect();
    let bytes: Vec<u8> = pts.iter().flat_map(|v| v.to_le_bytes()).collect();
    let data = dir.path().join("p3.npy");
    npy::write(&data, "<f4", &[200, 3], &bytes).unwrap();
    let rundir = train_toy2d(
        dir.path(),
        "d3",
        &[
            "train.max_steps=3",
            "data.batch_size=32",
            "model.input_shape=[3]",
            &format!("data.spec=\"npy:{}\"", data.display()),
        ],
    );
    let png = dir.path().join("s.png");
    let e = fails(&["sample", "--ckpt", rundir.to_str().unwrap(), "--out", png.to_str().unwrap(), "--device", "cpu"]);
    assert!(e.contains("[3]") && e.contains("2-D") && e.contains(".npy"), "{e}");
    assert!(!png.exists());

    let s = dir.path().join("s.npy");
    let out = sample(&rundir, &s, &["--n", "50", "--steps", "5"]);
    assert!(out.contains("from the training data npy:"), "{out}");
    assert_eq!(read_f32(&s).0, vec![50, 3]);
    // The training data gone, the range comes from the replay buffer, with a note on stderr.
    std::fs::remove_file(&data).unwrap();
    let (success, out, err) = run(&[
        "sample",
        "--ckpt",
        rundir.to_str().unwrap(),
        "--out",
        s.to_str().unwrap(),
        "--from",
        "noise",
        "--steps",
        "5",
        "--device",
        "cpu",
    ]);
    assert!(success, "{err}");
    assert!(out.contains("from the replay buffer's extent") && err.contains("p3.npy"), "{out}\n{err}");
}

#[test]
fn an_image_model_writes_its_samples_as_an_nchw_array() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "img", &["--set", "train.max_steps=3"]);
    let s = dir.path().join("s.npy");
    let out = sample(&run, &s, &["--n", "6", "--steps", "2"]);
    assert!(out.contains("[6, 3, 32, 32]") && out.contains("from images"), "{out}");
    let (shape, v) = read_f32(&s);
    assert_eq!(shape, vec![6, 3, 32, 32]);
    assert!(v.iter().all(|x| x.is_finite()));
    let d = data_json(&s);
    assert_eq!((d["count"].as_u64(), d["shape"].clone()), (Some(6), serde_json::json!([3, 32, 32])), "{d}");
    // Per class: 10 classes x 2, rows grouped by class; the PNG grid still works.
    sample(&run, &s, &["--per-class", "2", "--steps", "2"]);
    assert_eq!(read_f32(&s).0, vec![20, 3, 32, 32]);
    let png = dir.path().join("g.PNG");
    let out = sample(&run, &png, &["--n", "4", "--steps", "2"]);
    assert!(out.contains("as a grid") && png.exists(), "{out}");
}
