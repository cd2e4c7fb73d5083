//! Experiments: typed configurations, presets, and one `run` per claim, used alike by the
//! notebooks and the `eoslab` command line.
pub mod cifar_subset;
pub mod claims;
pub mod config;
pub mod eos;
pub mod paper;
pub mod presets;
pub mod regime;
pub mod verdict;

pub use config::{DataConfig, DataSource, RunConfig, Standardize};
pub use verdict::Verdict;
