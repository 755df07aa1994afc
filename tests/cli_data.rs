//! `ebm info` and `ebm data` as a user runs them, on every data spec, and their errors.
mod common;
use common::*;

/// The version of the libtorch the build linked, from its own files: `version.py` of PyPI's torch
/// (`__version__ = '2.11.0+cu130'`) or `build-version` of a standalone libtorch (`2.11.0+cpu`),
/// without the local suffix.
fn libtorch_version_on_disk() -> Option<String> {
    let root = std::env::var_os("LIBTORCH").map_or_else(|| repo_root().join(".venv/libtorch"), Into::into);
    let text = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("__version__ = ").map(str::to_string)))
        .or_else(|| std::fs::read_to_string(root.join("build-version")).ok())?;
    let v = text.trim().trim_matches(|c| c == '\'' || c == '"');
    Some(v.split('+').next().unwrap_or(v).to_string())
}

/// The version of tch in this build's resolve, as Cargo itself reports it (`cargo pkgid`).
fn tch_version_from_cargo() -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["pkgid", "--offline", "tch"])
        .current_dir(repo_root())
        .output()
        .expect("run cargo pkgid");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    id.rsplit(['@', '#', ':']).next().unwrap_or_default().to_string()
}

#[test]
fn info_reports_the_versions_it_runs_on() {
    let v: serde_json::Value = serde_json::from_str(&ok(&["info", "--json"])).unwrap();
    let (tch, libtorch) = (v["tch_version"].as_str().unwrap(), v["libtorch_version"].as_str().unwrap());
    assert_eq!(tch, tch_version_from_cargo());
    match libtorch_version_on_disk() {
        Some(on_disk) => assert_eq!(libtorch, on_disk),
        None => {
            eprintln!("no version.py or build-version beside the linked libtorch: checking the form only");
            assert!(
                libtorch.split('.').count() == 3 && libtorch.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{libtorch}"
            );
        }
    }
    let out = ok(&["info"]);
    assert!(out.contains(&format!("tch              {tch}\n")), "{out}");
    assert!(out.contains(&format!("libtorch         {libtorch}\n")), "{out}");
    assert!(v["cuda_available"].is_boolean());
    assert!(v["threads"].as_i64().unwrap() >= 1);
}

#[test]
fn every_builtin_spec_resolves() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, count, labelled) in [
        ("synthetic:shapes:50", 50, true),
        ("synthetic:shapes:20:test", 20, true),
        ("noise:uniform:7", 7, false),
        ("noise:gaussian:7", 7, false),
        ("constant:5", 5, false),
        ("interp:synthetic:shapes:10", 10, false),
        ("toy2d:8gaussians:100", 100, false),
        ("toy2d:swissroll:100", 100, false),
    ] {
        let v: serde_json::Value = serde_json::from_str(&ok(&["data", spec, "--json"])).unwrap();
        assert_eq!(v["count"], count, "{spec}");
        assert_eq!(v["labelled"], labelled, "{spec}");
        assert!(v["min"].as_f64().unwrap() >= -8.0 && v["max"].as_f64().unwrap() <= 8.0, "{spec}");
    }
    let grid = dir.path().join("g.png");
    ok(&["data", "synthetic:shapes:30", "--grid", grid.to_str().unwrap()]);
    let img = image::open(&grid).unwrap();
    assert!(img.width() > 200 && img.height() > 100);
}

#[test]
fn cifar_and_npy_files_load_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |l: u8| {
        let mut r = vec![l];
        r.extend(std::iter::repeat_n(l * 20, 3072));
        r
    };
    for b in 1..=5 {
        std::fs::write(dir.path().join(format!("data_batch_{b}.bin")), [rec(1), rec(2)].concat()).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), rec(7)).unwrap();
    let spec = format!("cifar10:{}", dir.path().display());
    let v: serde_json::Value = serde_json::from_str(&ok(&["data", &spec, "--json"])).unwrap();
    assert_eq!(v["count"], 10);
    assert_eq!(v["class_counts"][1], 5);
    let v: serde_json::Value = serde_json::from_str(&ok(&["data", &format!("{spec}:test"), "--json"])).unwrap();
    assert_eq!(v["count"], 1);

    let x = dir.path().join("x.npy");
    ebm::data::npy::write(&x, "|u1", &[3, 32, 32, 3], &vec![128u8; 3 * 3072]).unwrap();
    let y = dir.path().join("y.npy");
    ebm::data::npy::write(&y, "<i8", &[3], &[0i64, 1, 1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["data", &format!("npy:{},{}", x.display(), y.display()), "--json"])).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["shape"], serde_json::json!([3, 32, 32]));
}

#[test]
fn bad_input_gets_one_clear_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let e = fails(&["data", &format!("cifar10:{}", missing.display())]);
    assert!(e.contains("nowhere") && e.contains("not a folder"), "{e}");
    let e = fails(&["data", "imagenet:/x"]);
    assert!(e.contains("unknown data spec `imagenet:/x`"), "{e}");
    let e = fails(&["data", &format!("folder:{}", missing.display())]);
    assert!(e.contains("nowhere"), "{e}");
    std::fs::write(dir.path().join("data_batch_1.bin"), vec![0u8; 3073 + 10]).unwrap();
    let e = fails(&["data", &format!("cifar10:{}", dir.path().display())]);
    assert!(e.contains("data_batch_1.bin") && e.contains("truncated"), "{e}");
    let grid = dir.path().join("never.png");
    let e = fails(&["data", "toy2d:moons:10", "--grid", grid.to_str().unwrap()]);
    assert!(e.contains("--grid needs an image set"), "{e}");
    assert!(!grid.exists());
}

#[test]
fn real_cifar10_jpeg_folder_loads_with_a_cache() {
    let Some(shared) = shared_cifar_jpeg() else {
        eprintln!("skipping: ../shared/data/cifar10-jpeg is not present");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    untar(&shared.join("test.tar.gz"), dir.path());
    let cache = dir.path().join("cache");
    let spec = format!("folder:{}", dir.path().join("test").display());
    let run = || {
        let out = ebm().args(["data", &spec, "--json"]).env("EBM_CACHE_DIR", &cache).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["count"], 10_000);
    assert_eq!(first["classes"][0], "airplane");
    assert_eq!(first["class_counts"][9], 1000);
    let second = run();
    assert_eq!(second["count"], 10_000);
    assert!(second["load_seconds"].as_f64().unwrap() < 2.0, "cached load took {}", second["load_seconds"]);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}
