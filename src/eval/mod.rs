//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection.
pub mod grid;
pub mod classify;
