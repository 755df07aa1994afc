//! The training loop and what it stands on: optimisers and schedule, checkpoints, metrics.
pub mod checkpoint;
pub mod metrics;
pub mod optim;
pub mod trainer;

pub use trainer::{train, RunOptions, Summary};
