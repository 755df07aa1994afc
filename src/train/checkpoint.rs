//! Checkpoints: a folder holding `model.safetensors` (PyTorch-style names), `optim.safetensors`
//! (the optimiser's moments), `buffer.safetensors` (the replay buffer), `ema.safetensors` (the
//! moving average of the weights, when kept) and `manifest.json`
//! (config, step, epoch, schedule position, sizes and SHA-256 of the files), written last.
//! The folder is written under a temporary name and renamed, so a kill at any moment leaves the
//! previous checkpoint whole, and a folder without a valid manifest is never taken for one.
use super::optim::Optimizer;
use crate::config::TrainConfig;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

pub use super::tensor_file::{parse_tensors, read_tensors, tensor_bytes};

pub const FORMAT: &str = "ebm-checkpoint-1";
pub const MANIFEST: &str = "manifest.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const BUFFER_FILE: &str = "buffer.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
/// A file the divergence guard writes into checkpoints of a failing stretch it rolled back
/// over: `--resume` of a run folder skips them (a checkpoint folder named explicitly still loads).
pub const REJECTED: &str = "REJECTED";

/// Where training stands: enough to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrainState {
    /// Iterations completed.
    pub step: u64,
    /// Epoch and batch index of the next batch.
    pub epoch: u64,
    pub index: u64,
    /// Optimiser updates taken (Adam's bias correction).
    pub optimizer_steps: u64,
    pub best_valid_acc: Option<f64>,
    /// Divergence-guard rollbacks so far, and what they changed: the learning rate is multiplied
    /// by `lr_scale`; SGLD runs `sgld_steps` steps (0: the config's).
    pub rollbacks: u32,
    pub lr_scale: f64,
    pub sgld_steps: usize,
    /// The divergence guard's memory of the last steps' cross-entropy and energy gap, so that a
    /// resumed run judges its next steps as the uninterrupted run would.
    pub recent_ce: Vec<f64>,
    pub recent_gap: Vec<f64>,
    /// Processes of the data-parallel run that wrote it (1: one process); the buffer file holds
    /// every rank's slice, gathered, so a resume on another count re-shards it.
    pub world_size: usize,
    /// Examples per step of the run that wrote it (world_size x data.batch_size), the unit of
    /// `index`; 0 in checkpoints from before it was kept: world_size x the resuming run's
    /// data.batch_size (see [`super::reshard`]).
    pub global_batch: usize,
}

impl Default for TrainState {
    fn default() -> Self {
        TrainState {
            step: 0,
            epoch: 0,
            index: 0,
            optimizer_steps: 0,
            best_valid_acc: None,
            rollbacks: 0,
            lr_scale: 1.0,
            sgld_steps: 0,
            recent_ce: Vec::new(),
            recent_gap: Vec::new(),
            world_size: 1,
            global_batch: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub ebm_version: String,
    pub state: TrainState,
    pub config: serde_json::Value,
    pub files: Vec<FileEntry>,
}

fn sha256_file(path: &Path) -> crate::Result<(u64, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let digest = Sha256::digest(&bytes);
    Ok((bytes.len() as u64, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

fn fsync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// What a checkpoint holds besides the manifest.
pub struct Contents<'a> {
    pub vs: &'a VarStore,
    pub optimizer: Option<&'a Optimizer>,
    pub buffer: Option<&'a Tensor>,
    pub ema: Option<&'a super::ema::Ema>,
    pub state: &'a TrainState,
    pub config: &'a TrainConfig,
}

/// Estimated bytes of one checkpoint of `c`: the weights, optimiser moments and buffer, plus the
/// safetensors headers and the manifest (bounded by 64 KiB and 512 bytes per tensor name).
pub fn estimate_bytes(c: &Contents) -> u64 {
    let vars = c.vs.variables();
    let weights: u64 = vars.values().map(tensor_bytes).sum();
    let optim = c.optimizer.map_or(0, |o| o.state_bytes());
    let buffer = c.buffer.map_or(0, tensor_bytes);
    let ema = c.ema.map_or(0, |e| e.bytes());
    weights + optim + buffer + ema + 64 * 1024 + 1024 * vars.len() as u64
}

/// Free space asked for before training, in checkpoints: the one being written and room for a
/// `best` checkpoint, logs and sample grids beside it.
pub const SPACE_MARGIN: u64 = 2;

/// The bytes needed when `available` bytes are too few for checkpoints of `estimate` bytes.
pub fn space_shortfall(estimate: u64, available: u64) -> Option<u64> {
    let needed = estimate.saturating_mul(SPACE_MARGIN);
    (available < needed).then_some(needed)
}

/// Bytes an unprivileged process may still write on the file system holding `dir` (statvfs).
pub fn available_bytes(dir: &Path) -> crate::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{}: path holds a NUL byte", dir.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs, as statvfs(3) needs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("{}: cannot read the free space: {e}", dir.display());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Fails, naming `dir` and the bytes needed and free, when the file system holding `dir` has
/// less than [`SPACE_MARGIN`] checkpoints of `estimate` bytes free.
pub fn check_space(dir: &Path, estimate: u64) -> crate::Result<()> {
    let available = available_bytes(dir)?;
    if let Some(needed) = space_shortfall(estimate, available) {
        bail!(
            "{}: not enough free space: {needed} bytes needed ({SPACE_MARGIN} checkpoints of about {estimate} bytes), {available} bytes available; free some space or choose another --out",
            dir.display()
        );
    }
    Ok(())
}

/// Writes checkpoint `name` under `root` atomically, replacing an older one of the same name.
pub fn save(root: &Path, name: &str, c: &Contents) -> crate::Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("{}: cannot create checkpoint folder", root.display()))?;
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let write = || -> crate::Result<()> {
        let model = tmp.join(MODEL_FILE);
        // safetensors needs contiguous CPU tensors.
        let vars: Vec<(String, Tensor)> =
            c.vs.variables()
                .into_iter()
                .map(|(n, t)| (n, t.detach().to_device(tch::Device::Cpu).contiguous()))
                .collect();
        Tensor::write_safetensors(&vars, &model).with_context(|| format!("{}: cannot write", model.display()))?;
        let mut names = vec![MODEL_FILE];
        if let Some(o) = c.optimizer {
            o.save(&tmp.join(OPTIM_FILE))?;
            names.push(OPTIM_FILE);
        }
        if let Some(b) = c.buffer {
            let path = tmp.join(BUFFER_FILE);
            Tensor::write_safetensors(&[("buffer", b.to_device(tch::Device::Cpu).contiguous())], &path)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            names.push(BUFFER_FILE);
        }
        if let Some(e) = c.ema {
            e.save(&tmp.join(EMA_FILE))?;
            names.push(EMA_FILE);
        }
        let mut files = Vec::new();
        for n in names {
            let p = tmp.join(n);
            std::fs::File::open(&p)?.sync_all()?;
            let (bytes, sha256) = sha256_file(&p)?;
            files.push(FileEntry { name: n.into(), bytes, sha256 });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            ebm_version: env!("CARGO_PKG_VERSION").into(),
            state: c.state.clone(),
            config: c.config.to_json(),
            files,
        };
        let mpath = tmp.join(MANIFEST);
        std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("{}: cannot write", mpath.display()))?;
        std::fs::File::open(&mpath)?.sync_all()?;
        fsync_dir(&tmp);
        Ok(())
    };
    let dest = root.join(name);
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(
            e.context(format!("checkpoint {} not written; the previous checkpoints are intact", dest.display()))
        );
    }
    if dest.exists() {
        let old = root.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(&dest, &old)?;
        std::fs::rename(&tmp, &dest)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dest)?;
    }
    fsync_dir(root);
    Ok(dest)
}

/// Tidies what a killed writer left in `root`: a `.NAME.old-PID` whose NAME is missing (a kill
/// between the two renames of a replacement) is put back; other temporary folders are removed.
pub fn recover_interrupted_writes(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix('.') else { continue };
        if let Some((orig, _)) = rest.rsplit_once(".old-") {
            let dest = root.join(orig);
            if !dest.exists() && std::fs::rename(e.path(), &dest).is_ok() {
                continue;
            }
        }
        if rest.contains(".tmp-") || rest.contains(".old-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Parses a manifest's bytes: its JSON, format and file names (not the files themselves);
/// `mpath` is used in error messages.
pub fn parse_manifest(bytes: &[u8], mpath: &Path) -> crate::Result<Manifest> {
    let m: Manifest =
        serde_json::from_slice(bytes).with_context(|| format!("{}: corrupt manifest", mpath.display()))?;
    if m.format != FORMAT {
        bail!("{}: unknown checkpoint format `{}` (expected {FORMAT})", mpath.display(), m.format);
    }
    for f in &m.files {
        if f.name.contains('/') || f.name.contains("..") {
            bail!("{}: bad file name `{}`", mpath.display(), f.name);
        }
    }
    Ok(m)
}

/// Reads and verifies a checkpoint folder's manifest: every file present with its size and checksum.
pub fn read_manifest(dir: &Path) -> crate::Result<Manifest> {
    let mpath = dir.join(MANIFEST);
    if !mpath.exists() {
        bail!("{}: not a checkpoint (no {MANIFEST}; an interrupted write leaves none)", dir.display());
    }
    let text = std::fs::read(&mpath).with_context(|| format!("{}: cannot read", mpath.display()))?;
    let m = parse_manifest(&text, &mpath)?;
    for f in &m.files {
        let p = dir.join(&f.name);
        if !p.exists() {
            bail!("{}: missing (named in the manifest)", p.display());
        }
        let len = std::fs::metadata(&p)?.len();
        if len != f.bytes {
            bail!("{}: {len} bytes, the manifest says {} (truncated or replaced)", p.display(), f.bytes);
        }
        let (_, sha) = sha256_file(&p)?;
        if sha != f.sha256 {
            bail!("{}: checksum mismatch (corrupt)", p.display());
        }
    }
    Ok(m)
}

/// Resolves a path given to `--resume`/`--ckpt`: a checkpoint folder, a run folder or its
/// `checkpoints/` folder (the newest valid checkpoint by step is taken, rejected ones skipped).
pub fn resolve(path: &Path) -> crate::Result<PathBuf> {
    if !path.exists() {
        bail!("{}: no such checkpoint or run folder", path.display());
    }
    if path.join(MANIFEST).exists() {
        read_manifest(path)?;
        return Ok(path.to_path_buf());
    }
    newest_at_most(path, u64::MAX)
}

/// The valid, not rejected checkpoints of a run folder (or its `checkpoints/` folder), by step.
fn listed(path: &Path) -> crate::Result<Vec<(u64, PathBuf)>> {
    let root = if path.join("checkpoints").is_dir() { path.join("checkpoints") } else { path.to_path_buf() };
    let entries = std::fs::read_dir(&root).with_context(|| format!("{}: cannot list", root.display()))?;
    let mut found = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !p.is_dir() || p.join(REJECTED).exists() {
            continue;
        }
        if let Ok(m) = read_manifest(&p) {
            found.push((m.state.step, p));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest valid checkpoint at step `max_step` or before (not rejected) under `path`.
pub fn newest_at_most(path: &Path, max_step: u64) -> crate::Result<PathBuf> {
    newest_of(listed(path)?, path, max_step).map(|(_, p)| p)
}

fn newest_of(found: Vec<(u64, PathBuf)>, path: &Path, max_step: u64) -> crate::Result<(u64, PathBuf)> {
    match found.into_iter().filter(|(s, _)| *s <= max_step).max_by_key(|(s, _)| *s) {
        Some(newest) => Ok(newest),
        None if max_step == u64::MAX => bail!("{}: holds no complete checkpoint", path.display()),
        None => bail!("{}: holds no complete checkpoint at step {max_step} or before", path.display()),
    }
}

/// The divergence guard's rollback target: the newest valid checkpoint at step `max_step` or
/// before under `root`, with every newer one marked rejected (a `REJECTED` file holding `reason`).
/// One listing (each checkpoint is verified once); nothing is marked when there is no target.
pub fn roll_back_to(root: &Path, max_step: u64, reason: &str) -> crate::Result<PathBuf> {
    let found = listed(root)?;
    let newer: Vec<PathBuf> = found.iter().filter(|(s, _)| *s > max_step).map(|(_, p)| p.clone()).collect();
    let (step, target) = newest_of(found, root, max_step)?;
    let note = format!("rolled back over by the divergence guard to step {step}: {reason}\n");
    for p in newer {
        // A checkpoint newer than the target that cannot be marked stays resumable; the log says why
        // the run rolled back, so only resuming the run folder would be affected.
        let _ = std::fs::write(p.join(REJECTED), &note);
    }
    Ok(target)
}

/// Loads model weights into `vs`, checking that names and shapes match exactly first.
pub fn load_weights(vs: &mut VarStore, dir: &Path) -> crate::Result<()> {
    let path = dir.join(MODEL_FILE);
    let file = read_tensors(&path).context("cannot read weights")?;
    assign_weights(vs, file, &path)
}

/// Copies named tensors into `vs`, checking that names and shapes match exactly first; `path`
/// names the file they came from in errors.
pub fn assign_weights(vs: &mut VarStore, tensors: Vec<(String, Tensor)>, path: &Path) -> crate::Result<()> {
    let file: std::collections::BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let vars = vs.variables();
    for (name, t) in &vars {
        match file.get(name) {
            None => bail!("{}: no tensor `{name}`: the checkpoint is of another architecture", path.display()),
            Some(src) if src.size() != t.size() => bail!(
                "{}: `{name}` has shape {:?}, this model needs {:?}: the checkpoint is of another architecture",
                path.display(),
                src.size(),
                t.size()
            ),
            Some(_) => {}
        }
    }
    // `objective.*` tensors belong to the training objective (NCE's log Z), not to the network:
    // a model opened for evaluation does not have them.
    if let Some(extra) = file.keys().find(|k| !vars.contains_key(*k) && !k.starts_with("objective.")) {
        bail!("{}: unexpected tensor `{extra}`: the checkpoint is of another architecture", path.display());
    }
    tch::no_grad(|| {
        for (name, mut t) in vars {
            // Checked above: every variable is in the file.
            t.copy_(&file[&name]);
        }
    });
    Ok(())
}

/// Whether the checkpoint of `m` lists the file `name`.
pub fn has_file(m: &Manifest, name: &str) -> bool {
    m.files.iter().any(|f| f.name == name)
}

/// Loads the replay buffer of a checkpoint, if it has one.
pub fn load_buffer(dir: &Path) -> crate::Result<Option<Tensor>> {
    let path = dir.join(BUFFER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut t = read_tensors(&path).context("cannot read buffer")?;
    match t.iter().position(|(n, _)| n == "buffer") {
        Some(i) => Ok(Some(t.swap_remove(i).1)),
        None => bail!("{}: no `buffer` tensor", path.display()),
    }
}

/// A model restored from a checkpoint for sampling or evaluation.
pub struct Loaded {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub state: TrainState,
    pub vs: VarStore,
    pub net: crate::models::EnergyNet,
    pub buffer: Option<Tensor>,
    /// Which weights were loaded.
    pub weights: Weights,
}

/// Which weights of a checkpoint to evaluate or sample with (`--weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    /// The moving average when the checkpoint has one, else the trained weights.
    Auto,
    /// The moving average of the weights (`[ema]`); an error when the checkpoint has none.
    Ema,
    /// The trained weights themselves.
    Raw,
}

impl Weights {
    pub fn label(self) -> &'static str {
        match self {
            Weights::Auto => "auto",
            Weights::Ema => "ema",
            Weights::Raw => "raw",
        }
    }
}

/// Opens a checkpoint (or the newest in a run folder) on `device`, with the weight average when
/// it has one.
pub fn load_model(path: &Path, device: tch::Device) -> crate::Result<Loaded> {
    load_model_weights(path, device, Weights::Auto)
}

/// Opens a checkpoint (or the newest in a run folder) on `device` with the chosen weights.
pub fn load_model_weights(path: &Path, device: tch::Device, weights: Weights) -> crate::Result<Loaded> {
    let dir = resolve(path)?;
    let manifest = read_manifest(&dir)?;
    let config = TrainConfig::from_json(&manifest.config)
        .with_context(|| format!("{}: the manifest's config is invalid", dir.join(MANIFEST).display()))?;
    let mut vs = VarStore::new(device);
    // Evaluations compute in float32, in the layout the run's config asks for on this device.
    let precision = crate::models::Precision::new(false, config.train.channels_last, device);
    let net = crate::models::EnergyNet::new(&vs.root(), &config.model).with_precision(precision);
    let has_ema = has_file(&manifest, EMA_FILE);
    let weights = match (weights, has_ema) {
        (Weights::Ema, false) => bail!(
            "{}: no weight average in this checkpoint (it was trained without ema.decay); use --weights raw",
            dir.display()
        ),
        (Weights::Auto, true) | (Weights::Ema, true) => Weights::Ema,
        _ => Weights::Raw,
    };
    let file = if weights == Weights::Ema { EMA_FILE } else { MODEL_FILE };
    let path = dir.join(file);
    assign_weights(&mut vs, read_tensors(&path).context("cannot read weights")?, &path)?;
    let buffer = load_buffer(&dir)?.map(|b| b.to_device(device));
    Ok(Loaded { dir, config, state: manifest.state, vs, net, buffer, weights })
}

/// The config of the checkpoint folder `dir` (as [`resolve`] gives it) with `--set` overrides
/// applied, to resume from: the manifest's config becomes a TOML tree, so overrides apply to it
/// as to a config file's.
pub fn load_config(dir: &Path, overrides: &[String]) -> crate::Result<TrainConfig> {
    let manifest = read_manifest(dir)?;
    let mut value = crate::config::json_to_toml(&manifest.config)
        .with_context(|| format!("{}: the manifest holds no config", dir.display()))?;
    for s in overrides {
        crate::config::apply_override(&mut value, s)?;
    }
    TrainConfig::from_value(value).with_context(|| format!("{}: config", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_shortfall_asks_for_the_margin() {
        assert_eq!(space_shortfall(1000, 2000), None);
        assert_eq!(space_shortfall(1000, 1999), Some(2000));
        assert_eq!(space_shortfall(1000, 0), Some(2000));
        assert_eq!(space_shortfall(0, 0), None);
        assert_eq!(space_shortfall(u64::MAX / 2 + 1, u64::MAX - 1), Some(u64::MAX));
    }

    #[test]
    fn the_estimate_covers_a_written_checkpoint() {
        let config = TrainConfig::parse("[model]\npreset = \"mlp-2d\"\n[objective]\nname = \"igebm\"\n", &[]).unwrap();
        let vs = VarStore::new(tch::Device::Cpu);
        let _net = crate::models::EnergyNet::new(&vs.root(), &config.model);
        let opt = super::super::optim::Optimizer::new(&vs, &config.optim);
        let buffer = Tensor::zeros([100, 2], (tch::Kind::Float, tch::Device::Cpu));
        let state = TrainState::default();
        let c = Contents {
            vs: &vs,
            optimizer: Some(&opt),
            buffer: Some(&buffer),
            ema: None,
            state: &state,
            config: &config,
        };
        let weights: u64 = vs.variables().values().map(tensor_bytes).sum();
        assert!(weights > 0);
        // Adam keeps two moments per weight.
        assert_eq!(opt.state_bytes(), 2 * weights);
        let estimate = estimate_bytes(&c);
        assert!(estimate >= 3 * weights + 800, "{estimate}");
        let dir = tempfile::tempdir().unwrap();
        let ckpt = save(dir.path(), "step-1", &c).unwrap();
        let written: u64 = std::fs::read_dir(&ckpt).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(written <= estimate, "written {written} > estimate {estimate}");
        assert!(estimate - written < 64 * 1024 + 1024 * vs.variables().len() as u64);
    }

    #[test]
    fn check_space_names_the_folder_and_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let available = available_bytes(dir.path()).unwrap();
        check_space(dir.path(), 1).unwrap();
        let e = check_space(dir.path(), u64::MAX / 4).unwrap_err().to_string();
        let d = dir.path().display().to_string();
        assert!(e.contains(&d) && e.contains("not enough free space"), "{e}");
        assert!(e.contains(&format!("{} bytes needed", u64::MAX / 4 * 2)), "{e}");
        // Free space changes under other writers: the reported figure is of the same order.
        let reported: u64 = e.split(", ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
        assert!(reported.abs_diff(available) < available / 10 + (1 << 30), "{reported} vs {available}");
        let e = available_bytes(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("cannot read the free space"), "{e}");
    }

    /// A guard rollback over a failing stretch marks the newer checkpoints rejected: the run
    /// folder then resumes from the last good one, the rollback finds the newest one from before
    /// the evidence, and pruning keeps good ones over rejected ones.
    #[test]
    fn rejected_checkpoints_are_skipped_by_resume_and_pruned_first() {
        let config = TrainConfig::parse("[model]\npreset = \"mlp-2d\"\n[objective]\nname = \"igebm\"\n", &[]).unwrap();
        let vs = VarStore::new(tch::Device::Cpu);
        let _net = crate::models::EnergyNet::new(&vs.root(), &config.model);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        let save_at = |step: u64| {
            let state = TrainState { step, ..TrainState::default() };
            let c = Contents { vs: &vs, optimizer: None, buffer: None, ema: None, state: &state, config: &config };
            save(&root, &format!("step-{step:08}"), &c).unwrap()
        };
        let (s1, s5, s9) = (save_at(1), save_at(5), save_at(9));
        assert_eq!(resolve(dir.path()).unwrap(), s9);
        assert_eq!(newest_at_most(&root, 8).unwrap(), s5);
        assert_eq!(roll_back_to(&root, 8, "a test").unwrap(), s5);
        assert!(std::fs::read_to_string(s9.join(REJECTED)).unwrap().contains("to step 5: a test"));
        assert_eq!(resolve(dir.path()).unwrap(), s5, "the run folder resumes from the last good checkpoint");
        assert_eq!(resolve(&s9).unwrap(), s9, "a rejected checkpoint named explicitly still opens");
        let e = newest_at_most(&root, 0).unwrap_err().to_string();
        assert!(e.contains("no complete checkpoint at step 0 or before"), "{e}");
        super::super::output::prune(&root, 1);
        assert!(!s1.exists() && s5.exists() && s9.exists());
        let s12 = save_at(12);
        super::super::output::prune(&root, 1);
        assert!(!s5.exists() && !s9.exists() && s12.exists(), "a superseded rejected checkpoint goes");
    }
}
