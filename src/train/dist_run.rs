//! A training run as one rank of a data-parallel run (see [`crate::dist`]): joining the group,
//! making the ranks start identical, checkpoints written
//! once with the buffer slices gathered, and the decisions every rank must take together.
use super::all_reduce::{AllReduce, Failure};
use super::checkpoint::TrainState;
use super::trainer::Trainer;
use crate::config::TrainConfig;
use crate::dist::{shard, Env, Group};
use anyhow::{anyhow, bail};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tch::{Device, Tensor};

pub struct DistRun {
    pub group: Rc<Group>,
    failure: Failure,
    /// Seconds spent in gradient all-reduce.
    pub reduce_seconds: Rc<Cell<f64>>,
}

impl DistRun {
    /// Joins the run `env` describes as the rank on `device` (cuda:LOCAL_RANK or the CPU), on the
    /// backend `dist.backend` resolves to there, waiting at most `dist.timeout`.
    pub fn join(env: &Env, cfg: &TrainConfig, device: Device) -> crate::Result<Self> {
        let backend = cfg.dist.backend.resolve(device, crate::dist::NCCL)?;
        let group = Rc::new(Group::connect(env, cfg.dist.timeout(), backend, device)?);
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
        self.set_overlap(trainer, cfg, cfg.dist.overlap);
        Ok(())
    }

    /// The gradients' all-reduce from now on: overlapped with the backward pass or after it
    /// (`dist.overlap`; `ebm bench` times both).
    pub fn set_overlap(&mut self, trainer: &mut Trainer, cfg: &TrainConfig, overlap: bool) {
        let reducer = AllReduce::new(self.group.clone(), cfg.dist.bucket_mb, overlap);
        (self.failure, self.reduce_seconds) = (reducer.failure.clone(), reducer.seconds.clone());
        trainer.set_gradient_reducer(Box::new(reducer));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::Inputs;
    use crate::train::Step;
    use tch::Kind;

    /// CD-1 with noiseless Langevin steps: the negatives are a fixed function of each example.
    fn config(overlap: bool) -> TrainConfig {
        let sets = [
            "objective.name=\"cd\"",
            "sgld.steps=2",
            "sgld.noise=0",
            "optim.name=\"sgd\"",
            "optim.momentum=0",
            "optim.clip_grad_norm=0",
            &format!("dist.overlap={overlap}"),
            // Small buckets: several, so that the overlapped reducer fills them one by one.
            "dist.bucket_mb=0.02",
        ]
        .map(String::from);
        TrainConfig::parse("[model]\npreset = \"mlp-2d\"\nhead = \"energy\"\n", &sets).unwrap()
    }

    fn weights(t: &Trainer) -> Vec<Tensor> {
        t.opt.parameters().iter().map(|(_, p)| p.detach().copy()).collect()
    }

    /// One step on 2 ranks x batch B (each rank its half, gradients all-reduced, weights from rank
    /// 0) gives the weights of one step on 1 rank x batch 2B from the same start, to float
    /// tolerance: with c10d's Reducer during the backward pass, and with the buckets after it.
    #[test]
    fn two_ranks_of_b_step_as_one_rank_of_2b() {
        two_ranks_of_b_against_one_rank_of_2b(true);
        two_ranks_of_b_against_one_rank_of_2b(false);
    }

    fn two_ranks_of_b_against_one_rank_of_2b(overlap: bool) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        tch::manual_seed(7);
        let x = Tensor::randn([16, 2], (Kind::Float, Device::Cpu));
        let rank = |r: usize| {
            let half = x.narrow(0, 8 * r as i64, 8).copy();
            std::thread::spawn(move || {
                let env = Env::loopback(r, 2, port);
                let cfg = config(overlap);
                let mut d = DistRun::join(&env, &cfg, Device::Cpu).unwrap();
                tch::manual_seed(100 + r as i64); // different starts: the broadcast makes them rank 0's
                let mut t = Trainer::new(&cfg, Device::Cpu, 3.0).unwrap();
                d.prepare(&mut t, &cfg).unwrap();
                let start = weights(&t);
                let Step::Taken { .. } = t.step(&Inputs::new(&half, None), 0.05) else { panic!("diverged") };
                d.check().unwrap();
                (start, weights(&t), d.reduce_seconds.get())
            })
        };
        let (h0, h1) = (rank(0), rank(1));
        let ((start0, end0, secs), (start1, end1, _)) = (h0.join().unwrap(), h1.join().unwrap());
        // Timed when reduced after the pass; hidden in the backward pass when overlapped.
        assert_eq!(secs > 0.0, !overlap, "all-reduce seconds {secs}");
        assert!(start0.iter().zip(&start1).all(|(a, b)| a.equal(b)), "parameters start identical");
        let cfg = config(overlap);
        let mut one = Trainer::new(&cfg, Device::Cpu, 3.0).unwrap();
        tch::no_grad(|| {
            for ((_, p), s) in one.opt.parameters().iter().zip(&start0) {
                p.shallow_clone().copy_(s);
            }
        });
        let Step::Taken { .. } = one.step(&Inputs::new(&x, None), 0.05) else { panic!("diverged") };
        let reference = weights(&one);
        let moved: f64 =
            reference.iter().zip(&start0).map(|(a, b)| (a - b).abs().max().double_value(&[])).fold(0.0, f64::max);
        assert!(moved > 1e-4, "the step moves the weights ({moved})");
        for ((a, b), c) in end0.iter().zip(&end1).zip(&reference) {
            assert!(a.equal(b), "ranks agree exactly");
            let diff = (a - c).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "overlap {overlap}: 2 x B vs 1 x 2B differ by {diff}");
        }
    }
}
