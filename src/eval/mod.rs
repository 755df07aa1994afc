//! Evaluation of a trained model: sample grids, classification, calibration, OOD detection,
//! sample quality (FID and KID with the standard Inception network), and the draws of samples
//! these and `ebm sample` share.
pub mod calibration;
pub mod classify;
pub mod draw;
pub mod fid;
pub mod frechet;
pub mod grid;
pub mod inception;
pub mod judge;
pub mod kid;
pub mod logz;
pub mod ood;
pub mod plots;
pub mod scores;
