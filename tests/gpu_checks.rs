//! scripts/gpu-checks.sh in its CPU smoke mode, as CI and the GPU machine run it: one report
//! (report.md, report.json), one log and one grid under OUT_DIR; a failing step is FAILED with its
//! exit code, the script goes on and exits non-zero.
mod common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Runs the script with `--smoke --ebm EBM`; returns (exit code, report.json, report.md, stdout).
fn smoke(out: &Path, ebm: &Path) -> (i32, serde_json::Value, String, String) {
    let o = Command::new("bash")
        .arg(repo_root().join("scripts/gpu-checks.sh"))
        .arg(out)
        .args(["--smoke", "--ebm"])
        .arg(ebm)
        .env("EBM_CACHE_DIR", std::env::temp_dir().join("ebm-test-cache"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let json = std::fs::read_to_string(out.join("report.json")).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    (o.status.code().unwrap_or(-1), serde_json::from_str(&json).unwrap(), md, stdout)
}

fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}"))
}

#[test]
fn the_smoke_run_writes_one_report_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, r, md, stdout) = smoke(&out, Path::new(env!("CARGO_BIN_EXE_ebm")));
    assert_eq!(code, 0, "{md}");
    assert_eq!((r["mode"].as_str(), r["passed"].as_bool()), (Some("smoke"), Some(true)), "{md}");
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["checks.log", "report.json", "report.md", "samples.png"]);
    let ids: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "info",
            "bench",
            "pytorch",
            "agreement",
            "train-leg1",
            "train-leg2",
            "eval",
            "sample",
            "dist-leg1",
            "dist-leg2"
        ]
    );
    // The bench times both precisions; the agreement's float32 row passes.
    let bench = &step(&r, "bench")["result"];
    for mode in ["float32", "fast"] {
        assert!(bench[mode]["seconds_per_iter"].as_f64().unwrap() > 0.0, "{bench}");
    }
    // ebm against the PyTorch reference, on a WRN (the reference builds WRNs only).
    let case = &step(&r, "pytorch")["result"]["cases"][0];
    assert!(case["ratio"]["median"].as_f64().unwrap() > 0.0, "{case}");
    assert!(md.contains("ebm float32 against plain PyTorch"), "{md}");
    let rows = step(&r, "agreement")["result"]["agreement"].as_array().unwrap().clone();
    assert!(rows.iter().any(|row| row["precision"] == "float32" && row["pass"] == true), "{rows:?}");
    // Leg 2 resumed leg 1: 3 + 3 steps; eval counted the test set.
    assert_eq!(step(&r, "train-leg1")["result"]["steps"], 3);
    assert_eq!(step(&r, "train-leg2")["result"]["steps"], 6);
    assert_eq!(step(&r, "eval")["result"]["count"], 200);
    // The 1-rank data-parallel run and its resume, on Gloo in the smoke run (NCCL needs a GPU).
    assert_eq!(step(&r, "dist-leg1")["result"]["steps"], 3);
    assert_eq!(step(&r, "dist-leg2")["result"]["steps"], 6);
    assert!(step(&r, "dist-leg1")["command"].as_str().unwrap().contains("--nproc-per-node 1"));
    assert!(md.contains("NCCL skipped, no GPU") && md.contains("resume: continued from step 3 to step 6"), "{md}");
    for section in [
        "## 1. Training step",
        "## 2. Agreement",
        "## 3. A real training run",
        "## 4. A 1-rank",
        "## 5. Fast-mode tests",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert!(
        md.contains("resume: leg 2 continued from step 3 to step 6") && md.contains("NOT RUN: the fast-mode tests")
    );
    assert!(stdout.contains("# GPU checks (smoke)"), "the report is printed: {stdout}");
    let log = std::fs::read_to_string(out.join("checks.log")).unwrap();
    assert!(log.contains("===== [train-leg2]") && log.contains("metrics.jsonl"), "{log}");
}

#[test]
fn a_failing_step_is_reported_and_the_script_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // An ebm whose bench fails (exit 3) and whose other subcommands work.
    let fake = dir.path().join("ebm");
    let real = env!("CARGO_BIN_EXE_ebm");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = bench ] && [ \"$2\" != --help ]; then echo 'error: injected failure' >&2; exit 3; fi\nexec '{real}' \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    let (code, r, md, _) = smoke(&out, &fake);
    assert_eq!(code, 1, "{md}");
    assert_eq!(r["failed"], serde_json::json!(["bench", "pytorch", "agreement"]), "{md}");
    let bench = step(&r, "bench");
    assert_eq!((bench["status"].as_str(), bench["exit_code"].as_i64()), (Some("FAILED"), Some(3)));
    assert!(bench["note"].as_str().unwrap().contains("injected failure"), "{bench}");
    // The training legs after it still ran.
    assert_eq!(step(&r, "train-leg2")["status"], "PASS", "{md}");
    assert!(md.contains("**FAILED: bench, pytorch, agreement**"), "{md}");
}
