//! Training: [`Trainer`] holds the network, objective, optimiser and chains and takes one step;
//! [`run::Run`] is the loop around it (data, logging, validation, checkpoints, the divergence
//! guard, exact resume); beside them the optimisers and schedule, checkpoints and metrics.
pub mod checkpoint;
pub mod guard;
pub mod metrics;
pub mod optim;
pub mod output;
pub mod progress;
pub mod run;
pub mod run_data;
pub mod tensor_file;
pub mod trainer;

pub use trainer::{GradientReducer, Step, Trainer};

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Where and how to run, besides the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub out: PathBuf,
    /// A checkpoint (or run folder) to continue from.
    pub resume: Option<PathBuf>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Set (by a signal handler) to stop at the next step boundary with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub steps: u64,
    pub epochs_completed: u64,
    pub seconds: f64,
    pub train_acc: Option<f64>,
    pub valid_acc: Option<f64>,
    pub test_acc: Option<f64>,
    pub e_data: Option<f64>,
    pub e_samples: Option<f64>,
    pub images_per_second: f64,
    pub last_checkpoint: PathBuf,
    pub out: PathBuf,
    /// The run was stopped by a signal before its end (a checkpoint was written).
    pub interrupted: bool,
}

/// Trains a model as configured (or continues the run of `opts.resume`); returns what it reached.
pub fn train(cfg: &crate::config::TrainConfig, opts: &RunOptions) -> crate::Result<Summary> {
    run::Run::start(cfg, opts)?.until_done()
}
