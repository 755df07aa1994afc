//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection,
//! sample quality (FID and KID with the standard Inception network), and the draws of samples
//! these and `ebm sample` share; chain diagnostics (ESS, R-hat), MMD and the kernel Stein
//! discrepancy.
pub mod attack;
pub mod calibration;
pub mod chains;
pub mod classify;
pub mod diagnose;
pub mod draw;
pub mod fid;
pub mod frechet;
pub mod grid;
pub mod inception;
pub mod judge;
pub mod kid;
pub mod ksd;
pub mod logz;
pub mod mmd;
pub mod ood;
pub mod plots;
pub mod scores;
