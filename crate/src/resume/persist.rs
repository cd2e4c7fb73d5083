//! The one interface between resumable runs and what experiments produce: a completed unit of
//! work (an `eos` run, a seed of a branching claim) implements [`Persist`], and the run
//! directory stores and reloads it without knowing its type. Values are tables of columns
//! ([`TableWriter`]) with floats stored as binary, so a reloaded value is bit-identical.
use super::{TableReader, TableWriter};
use crate::Result;
use std::path::Path;

/// A completed result a run directory can store and read back bit-exactly.
pub trait Persist: Sized {
    /// Write the value as named columns and metadata.
    fn put(&self, w: &mut TableWriter) -> Result<()>;
    /// Read a value back; errors name `t.path` and the missing or malformed column.
    fn get(t: &TableReader) -> Result<Self>;
}

/// Store `value` at `path` (atomically: a reader sees the old file or the new one).
pub fn save<T: Persist>(path: &Path, value: &T) -> Result<()> {
    let mut w = TableWriter::default();
    value.put(&mut w)?;
    w.write(path)
}

/// The value stored at `path`, or `None` if nothing was stored there yet.
pub fn load<T: Persist>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    T::get(&TableReader::open(path)?).map(Some)
}
