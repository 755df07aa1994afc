//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection.
pub mod classify;
pub mod grid;
pub mod calibration;
pub mod ood;
pub mod plots;
pub mod scores;
