//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection, and
//! the draws of samples these and `ebm sample` share.
pub mod calibration;
pub mod classify;
pub mod draw;
pub mod grid;
pub mod logz;
pub mod ood;
pub mod plots;
pub mod scores;
