//! `ebm diagnose` and `ebm attack` as a user meets them, on small trained checkpoints (the
//! estimators themselves are tested against closed forms in `eval::{chains, mmd, ksd, attack,
//! diagnose}`).
mod common;
use common::*;
use serde_json::Value;

/// `base` then `extra`, as one argument list.
fn joined<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out.lines().last().expect("a JSON line")).expect("JSON")
}

/// A 2-D model with the Metropolis-adjusted sampler: R-hat, bulk-ESS, an acceptance rate in
/// (0, 1] (a step of 0.01 accepts nearly everything), KSD of the draws and of the data, MMD against the data with its bandwidth, and a
/// verdict; the text output states the kernel and the verdict; bad flags get one clear error.
#[test]
fn diagnose_reports_every_statistic_and_refuses_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_toy2d(
        dir.path(),
        "toy",
        &["train.max_steps=60", "data.spec=\"toy2d:8gaussians:2000\"", "sgld.sampler=\"mala\"", "sgld.step_size=0.01"],
    );
    let r = run.to_str().unwrap();
    let base =
        ["diagnose", "--ckpt", r, "--device", "cpu", "--chains", "6", "--sgld-steps", "100", "--max-points", "200"];
    let with = |extra: &[&'static str]| joined(&base, extra);
    let v = json(&ok(&with(&["--data", "toy2d:8gaussians:500:test", "--permutations", "50", "--json"])));
    assert_eq!(
        (v["chains"].as_u64(), v["steps"].as_u64(), v["kept_per_chain"].as_u64()),
        (Some(6), Some(100), Some(50)),
        "{v}"
    );
    assert_eq!(v["sampler"], "mala", "{v}");
    let acc = v["acceptance"].as_f64().expect("MALA has an acceptance rate");
    assert!(acc > 0.0 && acc <= 1.0, "{v}");
    assert!(v["rhat"].as_f64().unwrap() >= 0.99 && v["ess_bulk"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["ksd_samples"]["bandwidth"].as_f64().unwrap() > 0.0 && v["ksd_data"]["ksd2"].is_f64(), "{v}");
    let p = v["mmd"]["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0 && v["mmd"]["permutations"] == 50, "{v}");
    assert!(v["verdict"].as_str().unwrap().contains("R-hat"), "{v}");

    let text = ok(&with(&["--data", "toy2d:8gaussians:200:test", "--permutations", "20"]));
    for want in [
        "R-hat",
        "bulk-ESS",
        "acceptance rate",
        "KSD^2_u(draws | model)",
        "MMD^2_u(draws, toy2d",
        "kernel: RBF",
        "verdict: ",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }

    // --sampler replaces the checkpoint's chain (MALA) by HMC at the checkpoint's step size, which
    // reports its own acceptance rate; an unknown name is refused naming the flag and the choices.
    let v = json(&ok(&with(&["--sampler", "hmc", "--json"])));
    assert_eq!(v["sampler"], "hmc", "{v}");
    assert!(v["acceptance"].as_f64().is_some_and(|a| a > 0.0 && a <= 1.0), "{v}");
    let e = fails(&with(&["--sampler", "gibbs"]));
    assert!(e.contains("--sampler gibbs") && e.contains("independent-mh"), "{e}");

    let e = fails(&["diagnose", "--ckpt", r, "--device", "cpu", "--chains", "1"]);
    assert!(e.contains("--chains"), "{e}");
    let e = fails(&with(&["--burn-in", "1.0"]));
    assert!(e.contains("--burn-in"), "{e}");
    let e = fails(&with(&["--data", "synthetic:shapes:64"]));
    assert!(e.contains("shape"), "{e}");
}

/// On a small JEM classifier: eps 0 gives exactly `ebm eval`'s accuracy, clean and robust; a
/// large L-infinity ball costs accuracy; the defence's refinement runs; an energy-head model,
/// an unknown norm and a negative eps are refused with one clear error.
#[test]
fn attack_at_eps_zero_is_clean_accuracy_and_a_large_eps_costs_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny(dir.path(), "jem", &[]);
    let r = run.to_str().unwrap();
    let data = "synthetic:shapes:128:test";
    let eval = json(&ok(&["eval", "--ckpt", r, "--data", data, "--device", "cpu", "--json"]));
    let acc = eval["accuracy"].as_f64().unwrap();
    let base = ["attack", "--ckpt", r, "--data", data, "--device", "cpu", "--pgd-steps", "5", "--json"];
    let v = json(&ok(&[&base[..], &["--eps", "0", "--eps", "0.5"]].concat()));
    let res = v["results"].as_array().unwrap();
    assert_eq!(res[0]["clean_accuracy"].as_f64(), Some(acc), "{v} vs eval {eval}");
    assert_eq!(res[0]["robust_accuracy"].as_f64(), Some(acc), "{v}");
    assert!(acc > 0.0, "some examples must be right for the attack to have work: {acc}");
    assert!(res[1]["robust_accuracy"].as_f64().unwrap() < acc, "{v}");

    let v = json(&ok(&[&base[..], &["--eps", "0.05", "--norm", "l2", "--sgld-steps", "2", "--n", "32"]].concat()));
    assert_eq!(v["results"][0]["examples"], 32, "{v}");
    assert!(v["defence"].as_str().unwrap().contains("2 "), "{v}");

    let e = fails(&[&base[..], &["--eps", "0.1", "--norm", "l1"]].concat());
    assert!(e.contains("--norm l1"), "{e}");
    let e = fails(&[&base[..], &["--eps=-0.1"]].concat());
    assert!(e.contains("--eps"), "{e}");
    let toy = train_toy2d(dir.path(), "toy", &["train.max_steps=5"]);
    let e = fails(&[
        "attack",
        "--ckpt",
        toy.to_str().unwrap(),
        "--data",
        "toy2d:8gaussians:100",
        "--eps",
        "0.1",
        "--device",
        "cpu",
    ]);
    assert!(e.contains("energy head"), "{e}");
}
