//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection.
pub mod classify;
pub mod grid;
