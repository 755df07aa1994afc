//! The run folder: `config.json`, `metrics.jsonl`, `samples/` and `checkpoints/`; checked before
//! anything is written, pruned as training goes.
use crate::eval::grid;
use crate::sampling::ReplayBuffer;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Refuses to start a new run in a folder that already holds one, and checks it is writable.
pub fn check_out_dir(out: &Path, resuming: bool) -> crate::Result<()> {
    if !resuming && out.join("metrics.jsonl").exists() {
        bail!(
            "{}: already holds a run (metrics.jsonl); continue it with --resume {} or choose another --out",
            out.display(),
            out.display()
        );
    }
    std::fs::create_dir_all(out.join("checkpoints"))
        .with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let probe = out.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| format!("{}: output folder is not writable", out.display()))?;
    std::fs::remove_file(&probe)?;
    Ok(())
}

/// Removes step checkpoints beyond the newest `keep` good ones, and rejected ones (see
/// [`crate::train::checkpoint::REJECTED`]) that a newer good one has superseded.
pub fn prune(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut steps: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    steps.sort();
    let rejected = |p: &PathBuf| p.join(super::checkpoint::REJECTED).exists();
    let good: Vec<&PathBuf> = steps.iter().filter(|p| !rejected(p)).collect();
    let newest_good = good.last().map(|p| p.to_path_buf());
    for p in good.iter().take(good.len().saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(p);
    }
    for p in steps.iter().filter(|p| rejected(p) && newest_good.as_ref().is_some_and(|g| *p < g)) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// The step's samples as a grid, and with a per-class buffer a conditional grid with one row per
/// class (the first 8 chains of each class block; no extra sampling).
pub fn save_sample_grids(
    samples: Option<&Tensor>,
    buffer: Option<&ReplayBuffer>,
    dir: &Path,
    step: u64,
) -> crate::Result<()> {
    let Some(s) = samples.filter(|s| s.dim() == 4) else { return Ok(()) };
    let n = s.size()[0].min(64);
    grid::save_grid(&s.narrow(0, 0, n), 0, &dir.join(format!("step-{step:08}.png")))?;
    if let Some(b) = buffer {
        if let Some(k) = b.classes {
            let block = b.size() / k;
            let per = block.min(8);
            let idx: Vec<i64> = (0..k).flat_map(|c| (0..per).map(move |i| c * block + i)).collect();
            let rows = b.data.index_select(0, &Tensor::from_slice(&idx).to_device(b.data.device()));
            grid::save_grid(&rows, per as usize, &dir.join(format!("step-{step:08}-per-class.png")))?;
        }
    }
    Ok(())
}
