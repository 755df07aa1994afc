//! Log-partition estimates and the MCMC samplers of the negative phase, through the binary:
//! `ebm logz` (AIS) on a trained 2-D model against its exact grid value, and PCD trained with
//! MALA and HMC chains instead of SGLD.
mod common;
use common::*;
use ebm::train::checkpoint;
use std::path::{Path, PathBuf};
use tch::Device;

/// Trains configs/toy2d-pcd.toml for one epoch of 8gaussians on one CPU thread, with overrides.
fn train_toy(dir: &Path, name: &str, sets: &[&str]) -> PathBuf {
    let run = dir.join(name);
    let cfg = repo_root().join("configs/toy2d-pcd.toml");
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "--quiet".into(),
    ];
    for s in ["train.epochs=1", "train.device=\"cpu\"", "train.threads=1", "data.spec=\"toy2d:8gaussians:10000\""]
        .iter()
        .chain(sets)
    {
        args.extend(["--set".to_string(), s.to_string()]);
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run
}

/// Mean exact held-out log-likelihood of a 2-D run (grid log Z) on 2,000 test points.
fn held_out_ll(run: &Path) -> f64 {
    let m = checkpoint::load_model(run, Device::Cpu).unwrap();
    let log_z = ebm::eval::logz::grid_log_z(&m.net, -8.0, 8.0, 800, Device::Cpu).unwrap();
    let test = ebm::data::load("toy2d:8gaussians:2000:test", &Default::default()).unwrap();
    let (x, _) = test.batch(&(0..2000).collect::<Vec<_>>());
    ebm::eval::logz::mean_log_likelihood(&m.net, &x, log_z)
}

#[test]
fn ais_log_z_of_a_trained_model_matches_the_exact_grid_value() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_toy(dir.path(), "sm", &["objective.name=\"sm\""]);
    let out = ok(&[
        "logz",
        "--ckpt",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--base-std",
        "3",
        "--chains",
        "200",
        "--temps",
        "300",
        "--leapfrog",
        "3",
        "--data",
        "toy2d:8gaussians:2000:test",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (ais, se, grid) =
        (v["log_z"].as_f64().unwrap(), v["std_err"].as_f64().unwrap(), v["grid_log_z"].as_f64().unwrap());
    eprintln!("AIS log Z {ais:.4} ± {se:.4}, grid {grid:.4}, acceptance {}", v["acceptance"]);
    assert!(se > 0.0 && se < 0.1, "standard error {se}");
    // Within four standard errors, plus the grid's own quadrature error.
    assert!((ais - grid).abs() < 4.0 * se + 0.01, "AIS {ais} ± {se} vs grid {grid}");
    let acc = v["acceptance"].as_f64().unwrap();
    assert!(acc > 0.3 && acc < 1.0, "acceptance {acc}");
    // The data log-likelihood is -mean E - log Z(AIS): it equals the exact one shifted by the
    // difference of the two log Z.
    let ll = v["data"]["log_likelihood"].as_f64().unwrap();
    let exact = held_out_ll(&run);
    assert!((ll - (exact - (ais - grid))).abs() < 1e-3, "{ll} vs exact {exact}");

    let e = fails(&["logz", "--ckpt", run.to_str().unwrap(), "--sampler", "gibbs", "--device", "cpu"]);
    assert!(e.contains("--sampler gibbs"), "{e}");
}

/// The acceptance rates PCD logged to metrics.jsonl.
fn logged_acceptance(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["acceptance"].as_f64())
        .collect()
}

#[test]
fn pcd_learns_with_mala_and_hmc_chains_and_logs_their_acceptance() {
    let dir = tempfile::tempdir().unwrap();
    // configs/toy2d-pcd.toml's length (3 epochs of 20,000 points): PCD needs those 234 steps.
    let pcd = ["objective.name=\"pcd\"", "train.epochs=3", "data.spec=\"toy2d:8gaussians:20000\""];
    let mala = train_toy(dir.path(), "mala", &[&pcd[..], &["sgld.sampler=\"mala\"", "sgld.step_size=0.05"]].concat());
    let hmc = train_toy(
        dir.path(),
        "hmc",
        &[&pcd[..], &["sgld.sampler=\"hmc\"", "sgld.step_size=0.05", "sgld.leapfrog=3", "sgld.steps=10"]].concat(),
    );
    for (name, run) in [("MALA", &mala), ("HMC", &hmc)] {
        let acc = logged_acceptance(run);
        let ll = held_out_ll(run);
        eprintln!("PCD with {name}: acceptance {acc:?}, held-out log-likelihood {ll:.3} (truth -2.84)");
        assert!(!acc.is_empty(), "{name}: no acceptance logged");
        assert!(acc.iter().all(|a| *a > 0.2 && *a <= 1.0), "{name}: acceptance {acc:?}");
        // A uniform density over the data's box scores -4.35; the truth -2.84. Seen: MALA -3.11, HMC -3.31.
        assert!(ll > -3.6 && ll < -2.8, "{name}: held-out log-likelihood {ll}");
    }
    let e = fails(&[
        "train",
        "--config",
        repo_root().join("configs/toy2d-pcd.toml").to_str().unwrap(),
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--set",
        "sgld.sampler=\"hmc\"",
        "--set",
        "sgld.leapfrog=0",
    ]);
    assert!(e.contains("sgld.leapfrog"), "{e}");
}
