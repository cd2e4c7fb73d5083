//! Experiments: typed configurations, presets, and one `run` per claim, used alike by the
//! notebooks and the `eoslab` command line.
pub mod cifar_subset;
pub mod claims;
pub mod options;
pub mod paper;
pub mod presets;
pub mod regime;
pub mod spectra;

pub use crate::config::{
    self, DataConfig, DataSource, DeviceSpec, Precision, RunConfig, Standardize,
};
pub use crate::eos;
pub use crate::verdict::{self, Verdict};
pub use options::{ClaimOptions, DataChoice};
