//! Resuming with another global batch (another world size W, or another `data.batch_size` B): the
//! checkpoint's position in the epoch counts batches of the old global batch G = W B, so it is
//! carried over through the examples seen.
//!
//! The epoch's order of examples is one permutation whatever the batch size (it depends on
//! (seed, epoch) only, `crate::data::loader::BatchPlan::permutation`), and batch i of G examples
//! is its slice [i G, (i + 1) G). A position (epoch, i) under G has consumed e = i G examples of
//! the epoch; under G' the run goes on at batch i' = floor(e / G'), which starts at example i' G'.
//! When G' does not divide e, the r = e - i' G' examples (r < G') before the cut are seen a second
//! time in this epoch (rounding down repeats a few examples; it never skips one). An epoch of G'
//! has floor(n / G') whole batches (the last incomplete one dropped, as JEM's drop_last): when
//! i' reaches that, the epoch is over under G' and the run goes on at (epoch + 1, 0).
//!
//! The step counter is not converted: it counts the steps taken (checkpoint names, the random
//! stream and the divergence guard's rollbacks order by it, so it must keep growing). The run's
//! end is then the step at which the epochs budget is complete under G':
//! step + (epochs n' - (epoch' n' + i')), with n' = batches per epoch under G', capped by
//! `train.max_steps` (a count of steps taken).

use super::checkpoint::TrainState;

/// A change of global batch at a resume (or a rollback to a checkpoint written before one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from_world: usize,
    pub from_global: u64,
    pub from_epoch: u64,
    pub from_index: u64,
    pub to: Position,
}

/// Carries `state` (as restored from a checkpoint) over to `world` ranks with global batch
/// `global` and `per_epoch` batches per epoch, and marks it as theirs; the change, if any.
/// `batch` is this run's data.batch_size (the old global batch of checkpoints that do not
/// record theirs).
pub fn carry_over(state: &mut TrainState, world: usize, batch: usize, per_epoch: u64) -> Option<Change> {
    let global = (world * batch) as u64;
    let from_global = match state.global_batch {
        0 => (state.world_size * batch) as u64,
        g => g as u64,
    };
    let (from_world, from_epoch, from_index) = (state.world_size, state.epoch, state.index);
    state.world_size = world;
    state.global_batch = global as usize;
    if from_global == global && from_world == world {
        return None;
    }
    let to = position(from_epoch, from_index, from_global, global, per_epoch);
    (state.epoch, state.index) = (to.epoch, to.index);
    Some(Change { from_world, from_global, from_epoch, from_index, to })
}

/// Where a resumed run goes on, and what the conversion cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub index: u64,
    /// Examples of the epoch consumed at the checkpoint (old index x old global batch).
    pub examples: u64,
    /// Examples before the cut that the resumed run sees a second time in this epoch.
    pub repeated: u64,
}

/// The position (`epoch`, `index`) under global batch `from` carried over to global batch `to`,
/// with `per_epoch_to` batches per epoch under `to` (see the module's comment).
pub fn position(epoch: u64, index: u64, from: u64, to: u64, per_epoch_to: u64) -> Position {
    let examples = index * from;
    let new_index = examples / to;
    if new_index >= per_epoch_to {
        return Position { epoch: epoch + 1, index: 0, examples, repeated: 0 };
    }
    Position { epoch, index: new_index, examples, repeated: examples - new_index * to }
}

/// The step at which the run ends: the epochs budget (`epochs` x `per_epoch`) completed from
/// (`epoch`, `index`) at step `step`, capped by `max_steps` (0: no cap); `epochs` = 0 means
/// `max_steps` alone.
pub fn last_step(step: u64, epoch: u64, index: u64, per_epoch: u64, epochs: u64, max_steps: u64) -> u64 {
    let by_epochs = (epochs > 0).then(|| step + (epochs * per_epoch).saturating_sub(epoch * per_epoch + index));
    match (by_epochs, max_steps) {
        (Some(e), 0) => e,
        (Some(e), m) => e.min(m),
        (None, m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 960 training examples: 2 ranks x 16 (G = 32, 30 batches per epoch) stopped at step 45 is
    /// (epoch 1, batch 15), 480 examples into the epoch; on 1 rank (G = 16, 60 per epoch) that is
    /// batch 30, and 3 epochs end 30 + 60 steps later, at step 135.
    #[test]
    fn two_ranks_to_one_continue_at_the_same_example() {
        let p = position(1, 15, 32, 16, 60);
        assert_eq!(p, Position { epoch: 1, index: 30, examples: 480, repeated: 0 });
        assert_eq!(last_step(45, p.epoch, p.index, 60, 3, 0), 135);
        // The same budget without a conversion: epochs x batches per epoch.
        assert_eq!(last_step(45, 1, 15, 30, 3, 0), 90);
        assert_eq!(last_step(45, 1, 15, 30, 3, 50), 50);
        assert_eq!(last_step(45, 1, 15, 30, 0, 70), 70);
    }

    /// 1 rank x 16 stopped at step 25 (400 examples in) on 2 ranks (G = 32): batch 12 starts at
    /// example 384, so 16 examples are seen again; one epoch of 30 batches ends 18 steps later.
    #[test]
    fn one_rank_to_two_rounds_down_and_says_what_repeats() {
        let p = position(0, 25, 16, 32, 30);
        assert_eq!(p, Position { epoch: 0, index: 12, examples: 400, repeated: 16 });
        assert_eq!(last_step(25, p.epoch, p.index, 30, 1, 0), 43);
    }

    /// 100 examples: 10 batches of 10 done = 80 examples, but under G' = 40 the epoch has only 2
    /// whole batches (80 examples): it is over, and the run goes on at the next epoch.
    #[test]
    fn a_position_past_the_last_whole_batch_moves_to_the_next_epoch() {
        assert_eq!(position(2, 8, 10, 40, 100 / 40), Position { epoch: 3, index: 0, examples: 80, repeated: 0 });
        // Budget already spent: the run ends where it stands.
        assert_eq!(last_step(200, 5, 0, 10, 3, 0), 200);
    }
}
