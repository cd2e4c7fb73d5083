//! The shipped UCI optical handwritten digits (8x8 images, 1,797 examples, 10 classes).
//!
//! The file is compiled into the crate, so `load()` works from any working directory
//! (notebooks, the CLI, tests) and needs no download. Provenance: `data/README.md`.
use super::Dataset;
use super::csv::{self, LabelColumn};
use crate::{Error, Result};
use std::path::Path;

/// The gzip-compressed CSV exactly as distributed with scikit-learn 1.5.2.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../../data/digits.csv.gz");

/// Number of examples in the shipped file.
pub const N: usize = 1797;

/// Load the digits: 64 raw pixel values in 0..=16 (unscaled), labels 0..=9, shape `[1, 8, 8]`.
pub fn load() -> Result<Dataset> {
    // Only named in errors, which would mean the embedded copy was corrupted at build time.
    let path = Path::new("data/digits.csv.gz (embedded in eoslab)");
    let text = csv::decode(path, DIGITS_CSV_GZ)?;
    let mut ds = csv::parse(&text, path, &LabelColumn::Last, "digits")?;
    if ds.d != 64 || ds.n() != N || ds.n_classes != 10 {
        return Err(Error::data(
            path,
            format!(
                "expected {N} rows of 64 pixels and 10 classes, got {} x {} and {}",
                ds.n(),
                ds.d,
                ds.n_classes
            ),
        ));
    }
    ds.image_shape = Some([1, 8, 8]);
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_and_range() {
        let ds = load().unwrap();
        assert_eq!(ds.name, "digits");
        assert_eq!(
            (ds.n(), ds.d, ds.n_classes, ds.image_shape),
            (1797, 64, 10, Some([1, 8, 8]))
        );
        let mut counts = [0usize; 10];
        for &c in &ds.y {
            counts[c as usize] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(
            ds.x.iter()
                .all(|&v| (0.0..=16.0).contains(&v) && v.fract() == 0.0)
        );
        assert_eq!(ds.x.iter().cloned().fold(0.0, f64::max), 16.0);
        // First row of the file (a zero), as a spot check of the row-major layout.
        assert_eq!(&ds.row(0)[..8], &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]);
        assert_eq!(ds.y[0], 0);
    }
}
