//! JEM's OOD benchmark sets as a user passes them to `ebm ood`: CIFAR-100 (more classes than the
//! model has) and SVHN (a MATLAB file) against a 10-class model; metrics within [0, 1].
mod common;
use common::*;

#[test]
fn cifar100_and_svhn_are_ood_sets_of_a_ten_class_model() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.max_steps=2"]);
    // A CIFAR-100 test file of three records, fine labels up to 99.
    let c100 = dir.path().join("cifar-100-binary");
    std::fs::create_dir(&c100).unwrap();
    let mut bytes = Vec::new();
    for (i, (coarse, fine)) in [(1u8, 5u8), (19, 99), (7, 42)].into_iter().enumerate() {
        bytes.extend([coarse, fine]);
        bytes.extend((0..3072).map(|p| ((p * (i + 3)) % 251) as u8));
    }
    std::fs::write(c100.join("test.bin"), &bytes).unwrap();
    let c100_spec = format!("cifar100:{}:test", c100.display());
    let svhn_spec = format!("svhn:{}:test", repo_root().join("tests/data/svhn").display());
    let ckpt = run.to_str().unwrap();

    // Before the fix: "cifar100:...: 100 classes, but the model has 10".
    let out = ok(&[
        "ood",
        "--ckpt",
        ckpt,
        "--in",
        "synthetic:shapes:20:test",
        "--ood",
        &c100_spec,
        "--ood",
        &svhn_spec,
        "--json",
        "--device",
        "cpu",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 2 * 3, "{out}");
    for r in results {
        for k in ["auroc", "aupr", "fpr95"] {
            let v = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} = {v} in {r}");
        }
    }
    assert_eq!(
        results.iter().filter(|r| r["ood"] == c100_spec.as_str()).map(|r| r["n_ood"].as_u64()).next(),
        Some(Some(3))
    );

    // As the model's own data, CIFAR-100 still does not fit a 10-class model.
    let e = fails(&["eval", "--ckpt", ckpt, "--data", &c100_spec, "--device", "cpu"]);
    assert!(e.contains("100 classes, but the model has 10"), "{e}");
    // And an OOD set of another shape is still refused.
    let e = fails(&[
        "ood",
        "--ckpt",
        ckpt,
        "--in",
        "synthetic:shapes:20:test",
        "--ood",
        "toy2d:moons:10",
        "--device",
        "cpu",
    ]);
    assert!(e.contains("shape"), "{e}");
}
