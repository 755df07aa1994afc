//! `ebm`: a trainer for deep energy-based models on libtorch.
//!
//! Data flows one way: [`data`] -> [`models`] -> [`sampling`] -> [`objectives`] -> [`train`] ->
//! [`eval`], with the `ebm` binary (src/main.rs) a thin layer on top.
pub mod config;
pub mod data;
pub mod device;
pub mod models;

/// The crate's error type: `anyhow` with context at every file, config and CLI boundary.
pub type Result<T> = anyhow::Result<T>;
pub mod agreement;
pub mod bench;
pub mod eval;
pub mod experiments;
pub mod gpu_memory;
pub mod objectives;
pub mod sampling;
pub mod train;
