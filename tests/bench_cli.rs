//! `ebm bench` with no network given picks one that finishes on the device at hand and says so
//! (on this CPU: WRN-10-2 at batch 16, not JEM's WRN-28-10), and still reports peak RSS, with the
//! reason NVML has nothing to say; with --nproc-per-node it measures data-parallel scaling.
mod common;
use common::*;

#[test]
fn with_no_network_the_cpu_bench_times_a_small_wrn_and_says_why() {
    let quick = ["--device", "cpu", "--iters", "1", "--warmup", "0", "--fast", "off", "--sgld-steps", "1", "--json"];
    let out = ebm().arg("bench").args(quick).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no network given; on cpu timing WRN-10-2 at batch 16"), "{stderr}");
    assert!(stderr.contains("--preset wrn-28-10"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let t = &v["train"];
    assert_eq!((t["model"].as_str(), t["batch"].as_i64()), (Some("WRN-10-2"), Some(16)), "{t}");
    assert!(t["peak_rss_mib"].as_f64().unwrap() > 10.0, "{t}");
    assert!(t["gpu_memory"].is_null() && t["gpu_memory_unavailable"].as_str().is_some(), "{t}");

    // A network given: that one, and no note.
    let out = ebm().arg("bench").args(quick).args(["--preset", "convnet-small", "--width", "4"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("no network given"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["model"], "ConvNet-4");
}

#[test]
fn a_bad_flag_is_still_one_error_line_the_note_comes_only_before_work() {
    let e = fails(&["bench", "--device", "cpu", "--fast", "sometimes"]);
    assert!(e.contains("--fast `sometimes`"), "{e}");
    let e = fails(&["bench", "--device", "cpu", "--compare-pytorch", "--python", "/nonexistent/bin/python"]);
    assert!(e.contains("/nonexistent/bin/python"), "{e}");
}

/// `ebm bench --nproc-per-node 2`: one process at batch B and 2 ranks (c10d's Gloo) at B each time
/// the same step; the efficiency reported is t1/tN of the two times, and the ranks' all-reduce
/// time per step is part of their step.
#[test]
fn nproc_per_node_reports_weak_scaling_and_all_reduce_time() {
    let args = ["bench", "--device", "cpu", "--preset", "convnet-small", "--width", "4", "--batch", "4"];
    let rest =
        ["--sgld-steps", "1", "--iters", "2", "--warmup", "1", "--threads", "1", "--nproc-per-node", "2", "--json"];
    let out = ebm().args(args).args(rest).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["scaling"];
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert_eq!(
        (s["world"].as_u64(), s["batch_per_rank"].as_u64(), s["threads_per_rank"].as_i64()),
        (Some(2), Some(4), Some(1))
    );
    assert_eq!(v["one_process"]["batch"], 4);
    assert_eq!(v["one_process"]["seconds_per_iter"].as_f64(), Some(f("one_rank_seconds_per_iter")));
    let (t1, tn, reduce) = (f("one_rank_seconds_per_iter"), f("seconds_per_iter"), f("reduce_seconds_per_iter"));
    assert!(t1 > 0.0 && tn > 0.0);
    assert!((f("efficiency") - t1 / tn).abs() < 1e-12 && (f("speedup") - 2.0 * t1 / tn).abs() < 1e-12, "{s}");
    // Timed as training runs (overlapped, by default), then with the all-reduce after the pass.
    assert_eq!(s["overlap"], true, "{s}");
    let after = f("after_pass_seconds_per_iter");
    assert!(reduce > 0.0 && reduce < after, "all-reduce {reduce} s of a {after} s step");
}
