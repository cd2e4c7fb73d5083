//! eoslab: reproduce and extend "Edge of Stability Selectively Shapes Learning Across the Data
//! Distribution" with full-batch gradient descent, exact Hessian spectra and per-group analysis.
mod analytic;
pub mod atomic;
pub mod autodiff;
pub mod branch;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod eos;
pub mod error;
pub mod experiment;
pub mod groups;
pub mod hessian;
pub mod kernels;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod objective;
pub mod ops;
pub mod overrides;
pub mod parallel;
pub mod plot;
pub mod report;
pub mod resume;
pub mod rng;
pub mod sharpness;
pub mod stats;
pub mod train;
pub mod verdict;

pub use error::{Error, Result};
