//! The crate's error type: every failure names what went wrong and, for files, which file.
use std::path::PathBuf;

/// All errors raised by eoslab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data file is missing, truncated or malformed.
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// A checkpoint cannot be read or does not match the model.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: loss = {loss}")]
    Diverged { step: usize, loss: f64 },
    /// A numerical guard tripped (for example a Hessian-vector product without a graph).
    #[error("{0}")]
    Numerics(String),
    /// A run stopped on purpose (its step budget was spent); rerunning it resumes it.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A table operation failed.
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Attach a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A malformed-data error for `path`.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
