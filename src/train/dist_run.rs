//! A training run as one rank of a data-parallel run (see [`crate::dist`]): joining the group,
//! making the ranks start identical, this rank's rows of each global batch, checkpoints written
//! once with the buffer slices gathered, and the decisions every rank must take together.
use super::all_reduce::{AllReduce, Failure};
use super::checkpoint::TrainState;
use super::trainer::Trainer;
use crate::config::TrainConfig;
use crate::data::loader::Batch;
use crate::dist::{shard, Env, Group};
use anyhow::{anyhow, bail};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::Tensor;

pub struct DistRun {
    pub group: Rc<Group>,
    failure: Failure,
    /// Seconds spent in gradient all-reduce.
    pub reduce_seconds: Rc<Cell<f64>>,
}

impl DistRun {
    /// Joins the run `env` describes, waiting at most `dist.timeout`.
    pub fn join(env: &Env, cfg: &TrainConfig) -> crate::Result<Self> {
        let group = Rc::new(Group::connect(env, cfg.dist.timeout())?);
        Ok(DistRun { group, failure: Rc::default(), reduce_seconds: Rc::default() })
    }

    pub fn rank(&self) -> usize {
        self.group.rank
    }

    pub fn world(&self) -> usize {
        self.group.world
    }

    /// Rank 0's parameters and persistent buffers everywhere (every variable, in name order), this
    /// rank's buffer slice, and the all-reduce of gradients from now on.
    pub fn prepare(&mut self, trainer: &mut Trainer, cfg: &TrainConfig) -> crate::Result<()> {
        let mut vars: Vec<(String, Tensor)> = trainer.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| vars.iter().try_for_each(|(_, t)| self.group.broadcast(t, 0)))?;
        trainer.set_shard(self.rank(), self.world())?;
        let reducer = AllReduce::new(self.group.clone(), cfg.dist.bucket_mb);
        (self.failure, self.reduce_seconds) = (reducer.failure.clone(), reducer.seconds.clone());
        trainer.set_gradient_reducer(Box::new(reducer));
        Ok(())
    }

    /// This rank's rows of a global batch of world x B examples: [rank B, (rank + 1) B).
    pub fn rows(&self, b: Batch) -> Batch {
        let per = b.x.size()[0] / self.world() as i64;
        let start = self.rank() as i64 * per;
        Batch {
            x: b.x.narrow(0, start, per).contiguous(),
            y: b.y.map(|y| y.narrow(0, start, per).contiguous()),
            epoch: b.epoch,
            index: b.index,
        }
    }

    /// A failed gradient all-reduce, as an error (it is recorded by the reducer).
    pub fn check(&self) -> crate::Result<()> {
        match self.failure.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether any rank says yes.
    pub fn any(&self, yes: bool) -> crate::Result<bool> {
        self.group.any(yes)
    }

    /// Checkpoint `name`, written once: the buffer slices gathered on every rank, the files (and
    /// last the manifest) by rank 0; then every rank learns whether it is on disk.
    pub fn save(&self, trainer: &Trainer, root: &Path, name: &str, state: &TrainState) -> crate::Result<PathBuf> {
        let whole = match trainer.buffer() {
            Some(b) => Some(shard::join(&self.group.all_gather(&b.data)?, b.classes.unwrap_or(1))),
            None => None,
        };
        let written = match self.rank() {
            0 => Some(trainer.save_with_buffer(root, name, state, whole.as_ref())),
            _ => None,
        };
        let failed = written.as_ref().is_some_and(|w| w.is_err());
        if self.any(failed)? {
            return match written {
                Some(Err(e)) => Err(e),
                _ => bail!("rank {}: rank 0 could not write checkpoint {name} (see its output)", self.rank()),
            };
        }
        Ok(written.and_then(|w| w.ok()).unwrap_or_else(|| root.join(name)))
    }

    /// The step rank 0 chose to roll back to (every rank then restores the same checkpoint).
    pub fn agree_step(&self, step: Option<u64>) -> crate::Result<u64> {
        let t = Tensor::from_slice(&[step.map_or(-1, |s| s as i64)]);
        self.group.broadcast(&t, 0)?;
        u64::try_from(t.int64_value(&[0])).map_err(|_| anyhow!("rank 0 found no checkpoint to roll back to"))
    }
}
