//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection.
pub mod calibration;
pub mod classify;
pub mod grid;
pub mod logz;
pub mod ood;
pub mod plots;
pub mod scores;
