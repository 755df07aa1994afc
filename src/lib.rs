//! `ebm`: a trainer for deep energy-based models on libtorch.
//!
//! The layers, each importing only from those before it:
//! [`config`] and [`device`] -> [`dist`] (processes of a data-parallel run) -> [`data`] -> [`models`] -> [`sampling`] (samplers, replay buffer,
//! the chains objectives draw) -> [`objectives`] -> [`eval`] (measurements of a model: accuracy,
//! calibration, OOD, log Z, FID and KID, grids and plots) -> [`train`] (the step and the loop; it
//! uses `eval` for validation, sample grids and FID) -> [`experiments`] and [`bench`], which build
//! on training.
//! The `ebm` binary (src/main.rs, src/cli/) is a thin layer on top.
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod eval;
pub mod experiments;
pub mod models;
pub mod objectives;
pub mod sampling;
pub mod train;

/// The crate's error type: `anyhow` with context at every file, config and CLI boundary.
pub type Result<T> = anyhow::Result<T>;
