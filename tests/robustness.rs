//! Crash safety and hostile input: SIGKILL at random moments never leaves a checkpoint that is
//! taken for complete but does not load; the readers return errors, never panic, on mangled bytes.
mod common;
use common::*;
use rand::{Rng, SeedableRng};

#[test]
fn sigkill_at_random_moments_always_leaves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every step, so kills land inside checkpoint writes often.
    let cfg = write_config(dir.path(), "tiny.toml", &format!("{TINY_JEM}\n"));
    let run = dir.path().join("run");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut kills = 0;
    let mut last_step = 0;
    for round in 0..12 {
        let mut args = vec!["train".to_string(), "--out".into(), run.display().to_string(), "--quiet".into()];
        if round == 0 {
            args.extend(["--config".into(), cfg.display().to_string()]);
        } else {
            args.extend(["--resume".into(), run.display().to_string()]);
        }
        args.extend(["--set".into(), "train.ckpt_every=1".into(), "--set".into(), "train.epochs=1000".into()]);
        let mut child =
            ebm().args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        if round == 0 {
            // Let the first run reach its first checkpoint, so that there is something to resume.
            let t0 = std::time::Instant::now();
            while ebm::train::checkpoint::resolve(&run).is_err() {
                assert!(t0.elapsed().as_secs() < 60, "no checkpoint appeared");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(300..1500)));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            kills += 1;
        }
        // The newest complete checkpoint verifies (sizes, checksums) and loads.
        if let Ok(ckpt) = ebm::train::checkpoint::resolve(&run) {
            let m = ebm::train::checkpoint::load_model(&ckpt, tch::Device::Cpu)
                .unwrap_or_else(|e| panic!("round {round}: {} does not load: {e:#}", ckpt.display()));
            assert!(m.state.step >= last_step, "round {round}: went back from {last_step} to {}", m.state.step);
            last_step = m.state.step;
        } else {
            panic!("round {round}: no complete checkpoint");
        }
    }
    assert!(kills >= 10, "only {kills} runs were killed");
    let leftovers = hidden_entries(&run.join("checkpoints"));
    assert!(leftovers.len() <= 1, "temporary folders pile up: {leftovers:?}");
    assert!(last_step > 0, "no progress across kills");
    // A final resume finishes cleanly from whatever the kills left.
    let target = last_step + 3;
    let out =
        ok(&["train", "--resume", run.to_str().unwrap(), "--quiet", "--set", &format!("train.max_steps={target}")]);
    assert!(out.contains(&format!("done: {target} steps")), "{out}");
}

/// Mutations of a valid file: truncations, extensions, flipped bytes, random bytes.
fn mutants(valid: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut v = valid.to_vec();
            match i % 4 {
                0 => v.truncate(rng.gen_range(0..valid.len().max(1))),
                1 => v.extend((0..rng.gen_range(1..200)).map(|_| rng.gen::<u8>())),
                2 => {
                    for _ in 0..rng.gen_range(1..8) {
                        let k = rng.gen_range(0..v.len().max(1));
                        if let Some(b) = v.get_mut(k) {
                            *b = rng.gen();
                        }
                    }
                }
                _ => v = (0..rng.gen_range(0..4096)).map(|_| rng.gen::<u8>()).collect(),
            }
            v
        })
        .collect()
}

fn no_panic(what: &str, f: impl Fn() -> bool) -> usize {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(ok) => ok as usize,
        Err(_) => panic!("{what}: the reader panicked"),
    }
}

#[test]
fn readers_survive_mangled_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut tried = 0;
    // npy
    let npy = dir.path().join("x.npy");
    ebm::data::npy::write(&npy, "|u1", &[2, 32, 32, 3], &vec![7u8; 2 * 3072]).unwrap();
    let valid = std::fs::read(&npy).unwrap();
    for m in mutants(&valid, 600, 1) {
        tried += 1;
        no_panic("npy", || ebm::data::npy::parse(&m, "m.npy").is_ok());
        std::fs::write(&npy, &m).unwrap();
        no_panic("npy dataset", || ebm::data::npy::load_npy_dataset(&npy, None).is_ok());
    }
    // CIFAR-10 binary
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    let mut rec = vec![3u8];
    rec.extend(vec![9u8; 3072]);
    let valid = [rec.clone(), rec].concat();
    for m in mutants(&valid, 200, 2) {
        tried += 1;
        std::fs::write(cifar.join("test_batch.bin"), &m).unwrap();
        no_panic("cifar10", || ebm::data::cifar::load_cifar10(&cifar, ebm::data::spec::Split::Test).is_ok());
        std::fs::write(cifar.join("test.bin"), &m).unwrap();
        no_panic("cifar100", || ebm::data::cifar::load_cifar100(&cifar, ebm::data::spec::Split::Test).is_ok());
    }
    // Image folder (PNG bytes) and the decode cache
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("a")).unwrap();
    let png = folder.join("a/0.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([1, 2, 3])).save(&png).unwrap();
    let valid = std::fs::read(&png).unwrap();
    let opts = ebm::data::LoadOptions { cache_dir: None, ..Default::default() };
    for m in mutants(&valid, 200, 3) {
        tried += 1;
        std::fs::write(&png, &m).unwrap();
        no_panic("folder", || ebm::data::folder::load_folder(&folder, &opts).is_ok());
    }
    let ds = ebm::data::builtin::shapes(3, 0);
    let cache = dir.path().join("c.bin");
    ebm::data::cache::write(&cache, &ds).unwrap();
    let valid = std::fs::read(&cache).unwrap();
    for m in mutants(&valid, 300, 4) {
        tried += 1;
        std::fs::write(&cache, &m).unwrap();
        no_panic("cache", || ebm::data::cache::read(&cache, "c").is_ok());
    }
    // Checkpoint manifests and safetensors
    let run = dir.path().join("run");
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    ok(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--set",
        "train.max_steps=1",
    ]);
    let ckpt = run.join("checkpoints/step-00000001");
    for file in ["manifest.json", "model.safetensors", "optim.safetensors", "buffer.safetensors"] {
        let path = ckpt.join(file);
        let valid = std::fs::read(&path).unwrap();
        for m in mutants(&valid, 60, 5) {
            tried += 1;
            std::fs::write(&path, &m).unwrap();
            no_panic(file, || ebm::train::checkpoint::load_model(&ckpt, tch::Device::Cpu).is_ok());
        }
        std::fs::write(&path, &valid).unwrap();
    }
    // Mangled model weights that keep the manifest's size and checksum cannot exist; fake the
    // manifest too, so the safetensors parser itself meets the bad bytes.
    let model = ckpt.join("model.safetensors");
    let valid = std::fs::read(&model).unwrap();
    let manifest_path = ckpt.join("manifest.json");
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap();
    for m in mutants(&valid, 60, 6) {
        tried += 1;
        std::fs::write(&model, &m).unwrap();
        let mut man: serde_json::Value = serde_json::from_str(&manifest_text).unwrap();
        for f in man["files"].as_array_mut().unwrap() {
            if f["name"] == "model.safetensors" {
                use sha2::Digest;
                f["bytes"] = serde_json::json!(m.len());
                f["sha256"] =
                    serde_json::json!(sha2::Sha256::digest(&m).iter().map(|b| format!("{b:02x}")).collect::<String>());
            }
        }
        std::fs::write(&manifest_path, man.to_string()).unwrap();
        no_panic("safetensors", || ebm::train::checkpoint::load_model(&ckpt, tch::Device::Cpu).is_ok());
    }
    eprintln!("{tried} mangled inputs read without a panic");
    assert!(tried >= 1500);
}

/// The first line of `stderr` that starts with `error: `.
fn error_line(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in: {err}")).to_string()
}

#[test]
fn an_unwritable_output_folder_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tiny.toml", TINY_JEM);
    let cfg = cfg.to_str().unwrap();
    // A parent that is a regular file: no folder can be made under it, whoever runs the test.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out = file.join("run");
    let e = fails(&["train", "--config", cfg, "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(e.contains(&out.display().to_string()) && e.contains("cannot create the output folder"), "{e}");
    assert!(e.contains("Not a directory"), "the OS error is named: {e}");
    // A read-only folder: permission bits bind only an unprivileged user.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped the read-only-folder case: running as root, which ignores permission bits");
        return;
    }
    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = ro.join("run");
    let e = fails(&["train", "--config", cfg, "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(e.contains(&out.display().to_string()) && e.contains("Permission denied"), "{e}");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    // A good checkpoint at step 3 (TINY_JEM writes one every 3 steps).
    let (run, _) = train_tiny(dir.path(), "run", &["--set", "train.max_steps=3"]);
    let good = ebm::train::checkpoint::resolve(&run).unwrap();
    assert!(good.ends_with("step-00000003"), "{}", good.display());
    let good_manifest = std::fs::read(good.join("manifest.json")).unwrap();
    let buffer_bytes = std::fs::metadata(good.join("buffer.safetensors")).unwrap().len();
    // Files may grow to half the buffer file: logs, config and sample grids fit, the checkpoint
    // does not. Writes beyond it fail with EFBIG, as on a full disk (the binary ignores SIGXFSZ).
    let limit = buffer_bytes / 2;
    assert!(limit > 100_000, "the buffer file is too small to tell checkpoints from logs: {buffer_bytes}");
    let run_s = run.to_str().unwrap();
    let mut cmd = ebm();
    cmd.args(["train", "--resume", run_s, "--quiet", "--set", "train.max_steps=6"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "a run whose checkpoint cannot be written must fail");
    assert_eq!(out.status.code(), Some(1), "an error exit, not a signal: {:?}", out.status);
    let e = error_line(&out.stderr);
    let ckpt = run.join("checkpoints/step-00000006");
    assert!(e.contains(&format!("checkpoint {} not written", ckpt.display())), "{e}");
    assert!(e.contains("File too large"), "the OS error is named: {e}");
    // The good checkpoint is untouched and still the newest; nothing half-written is left.
    assert!(!ckpt.exists(), "a partial {} exists", ckpt.display());
    let leftovers = hidden_entries(&run.join("checkpoints"));
    assert!(leftovers.is_empty(), "temporary folders left: {leftovers:?}");
    assert_eq!(ebm::train::checkpoint::resolve(&run).unwrap(), good);
    assert_eq!(std::fs::read(good.join("manifest.json")).unwrap(), good_manifest);
    let m = ebm::train::checkpoint::load_model(&good, tch::Device::Cpu).unwrap();
    assert_eq!(m.state.step, 3);
    // With room again, the run goes on from it.
    let out = ok(&["train", "--resume", run_s, "--quiet", "--set", "train.max_steps=6"]);
    assert!(out.contains("done: 6 steps"), "{out}");
    let newest = ebm::train::checkpoint::resolve(&run).unwrap();
    assert_eq!(ebm::train::checkpoint::load_model(&newest, tch::Device::Cpu).unwrap().state.step, 6);
}

/// Names of the hidden entries (temporary checkpoint folders) of `dir`.
fn hidden_entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}
