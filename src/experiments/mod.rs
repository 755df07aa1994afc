//! Experiments that reproduce published findings where the truth is known.
pub mod is_mle;
pub mod rbm;
pub mod toy2d;
