//! `ebm bench --nproc-per-node N`: how the training step scales across N data-parallel ranks
//! (c10d's Gloo, as `ebm train --nproc-per-node N`). Weak scaling (Gustafson 1988): the batch per
//! rank stays B, so N ranks take N times the work per step; with t1 the time of one step of one
//! process at batch B and tN the time of one step of N ranks at B each (global N B), the
//! efficiency is t1 / tN (1 when the ranks run as fast together as one alone) and the speed-up in
//! examples per second N t1 / tN. tN is timed as training runs (`dist.overlap`: by default c10d's
//! Reducer all-reduces buckets during the backward pass), then again with the all-reduce after
//! the backward pass, whose time per step is the gradient reducer's own clock
//! ([`crate::train::all_reduce::AllReduce::seconds`]), averaged over the ranks; the difference
//! of the two tN is what the overlap saves. The rest of tN beyond t1 is the ranks slowing each
//! other (shared cores, memory bandwidth) and the collective decisions (the divergence guard's
//! verdict).
use super::{timed, JemStep};
use crate::config::TrainConfig;
use crate::dist::group::reduce_scalar;
use crate::dist::{Env, ReduceOp};
use crate::train::dist_run::DistRun;
use serde::{Deserialize, Serialize};
use tch::Device;

/// One rank's measure of N-rank steps, agreed across ranks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankBench {
    pub world: usize,
    /// Batch per rank.
    pub batch: usize,
    pub iters: usize,
    /// The slowest rank's mean seconds per step.
    pub seconds_per_iter: f64,
    /// Seconds per step with the all-reduce after the backward pass (the slowest rank's)...
    pub after_pass_seconds_per_iter: f64,
    /// ... and the all-reduce's share of it, the mean over ranks.
    pub reduce_seconds_per_iter: f64,
    /// Whether `seconds_per_iter` overlapped the all-reduce with the backward pass.
    pub overlap: bool,
    pub diverged: usize,
    pub threads: i32,
}

/// Times `iters` steps (after `warmup` untimed ones) of the trainer `cfg` builds as rank
/// `env.rank` of `env.world`, on random data, gradients all-reduced as in training.
pub fn rank_iterations(
    cfg: &TrainConfig,
    iters: usize,
    warmup: usize,
    device: Device,
    env: &Env,
) -> crate::Result<RankBench> {
    let device = match device {
        Device::Cuda(_) => Device::Cuda(env.local_rank),
        d => d,
    };
    let mut dist = DistRun::join(env, cfg, device)?;
    let mut jem = JemStep::new(cfg, device)?;
    dist.prepare(&mut jem.trainer, cfg)?;
    let iters_f = iters.max(1) as f64;
    let mean_step = |dist: &mut DistRun, jem: &mut JemStep| -> crate::Result<(f64, f64, usize)> {
        timed(0, warmup, device, || jem.step());
        dist.check()?;
        let before = dist.reduce_seconds.get();
        let (times, diverged) = timed(iters, 0, device, || jem.step());
        dist.check()?;
        Ok((times.iter().sum::<f64>() / iters_f, (dist.reduce_seconds.get() - before) / iters_f, diverged))
    };
    let (per_iter, _, diverged) = mean_step(&mut dist, &mut jem)?;
    dist.set_overlap(&mut jem.trainer, cfg, false);
    let (after_pass, reduce, diverged_after) = mean_step(&mut dist, &mut jem)?;
    let world = dist.world();
    Ok(RankBench {
        world,
        batch: cfg.data.batch_size,
        iters,
        seconds_per_iter: reduce_scalar(&dist.group, per_iter, ReduceOp::Max)?,
        after_pass_seconds_per_iter: reduce_scalar(&dist.group, after_pass, ReduceOp::Max)?,
        reduce_seconds_per_iter: reduce_scalar(&dist.group, reduce, ReduceOp::Sum)? / world as f64,
        overlap: cfg.dist.overlap,
        diverged: diverged + diverged_after,
        threads: tch::get_num_threads(),
    })
}

/// The scaling of N ranks against one process (see the module's comment).
#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    pub world: usize,
    pub batch_per_rank: usize,
    pub threads_per_rank: i32,
    /// t1: seconds per step of one process at batch B.
    pub one_rank_seconds_per_iter: f64,
    /// tN: seconds per step of N ranks at batch B each, as training runs (`overlap`).
    pub seconds_per_iter: f64,
    pub overlap: bool,
    /// tN with the all-reduce after the backward pass, and that all-reduce's seconds.
    pub after_pass_seconds_per_iter: f64,
    pub reduce_seconds_per_iter: f64,
    /// t1 / tN.
    pub efficiency: f64,
    /// N t1 / tN: examples per second against one process.
    pub speedup: f64,
}

impl Scaling {
    pub fn new(one_rank_seconds_per_iter: f64, n: &RankBench) -> Self {
        let efficiency = one_rank_seconds_per_iter / n.seconds_per_iter;
        Scaling {
            world: n.world,
            batch_per_rank: n.batch,
            threads_per_rank: n.threads,
            one_rank_seconds_per_iter,
            seconds_per_iter: n.seconds_per_iter,
            overlap: n.overlap,
            after_pass_seconds_per_iter: n.after_pass_seconds_per_iter,
            reduce_seconds_per_iter: n.reduce_seconds_per_iter,
            efficiency,
            speedup: n.world as f64 * efficiency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2 ranks at 0.5 s per step against 0.4 s alone: efficiency 0.8, 1.6 times the examples per
    /// second.
    #[test]
    fn efficiency_is_t1_over_tn_and_speedup_n_times_it() {
        let n = RankBench {
            world: 2,
            batch: 16,
            iters: 5,
            seconds_per_iter: 0.5,
            after_pass_seconds_per_iter: 0.52,
            reduce_seconds_per_iter: 0.01,
            overlap: true,
            diverged: 0,
            threads: 1,
        };
        let s = Scaling::new(0.4, &n);
        assert!((s.efficiency - 0.8).abs() < 1e-12 && (s.speedup - 1.6).abs() < 1e-12);
    }
}
