//! Training: [`Trainer`] holds the network, objective, optimiser and chains and takes one step;
//! [`run::Run`] is the loop around it (data, logging, validation, checkpoints, the divergence
//! guard, exact resume); beside them the optimisers and schedule, checkpoints and metrics.
pub mod all_reduce;
pub mod checkpoint;
pub mod dist_run;
pub mod ema;
pub mod fid_log;
pub mod guard;
pub mod metrics;
pub mod optim;
pub mod output;
pub mod progress;
pub mod reshard;
pub mod run;
pub mod run_data;
pub mod sam;
pub mod tensor_file;
pub mod tensorboard;
pub mod trainer;

pub use trainer::{GradientReducer, Step, Trainer};

pub use run::{RunOptions, Summary};

/// Trains a model as configured (or continues the run of `opts.resume`); returns what it reached.
pub fn train(cfg: &crate::config::TrainConfig, opts: &RunOptions) -> crate::Result<Summary> {
    run::Run::start(cfg, opts)?.until_done()
}
