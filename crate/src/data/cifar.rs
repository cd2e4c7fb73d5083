//! CIFAR-10 in its standard binary format (`cifar-10-binary.tar.gz`, extracted).
//!
//! Each file is a sequence of 3,073-byte records: one label byte (0..=9), then 3,072 pixel
//! bytes: the red plane (1,024 bytes, row-major 32x32), then green, then blue. CIFAR-10 cannot
//! be downloaded by eoslab; the user points it at a directory holding the extracted batches.
use super::Dataset;
use crate::atomic::write_atomic;
use crate::{Error, Result};
use std::path::Path;

/// Per-channel (R, G, B) mean of the CIFAR-10 training pixels after /255 (the paper's values).
pub const CIFAR10_MEAN: [f64; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel (R, G, B) standard deviation used by the paper for standardisation.
pub const CIFAR10_STD: [f64; 3] = [0.2023, 0.1994, 0.2010];
/// Class names, indexed by label.
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// Pixel bytes per image (3 x 32 x 32).
pub const PIXELS: usize = 3 * 32 * 32;
/// Bytes per record: one label byte plus the pixels.
pub const RECORD: usize = 1 + PIXELS;
/// The five training batch files, in the order they are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Load all of CIFAR-10 from `dir`: (train: 5 batches concatenated, test), pixels /255 in CHW order.
///
/// Note the full training set is 50,000 x 3,072 `f64` (1.2 GB); for class subsets prefer
/// [`load_dir_classes`], which never holds the other classes in memory.
pub fn load_dir(dir: &Path) -> Result<(Dataset, Dataset)> {
    load_dir_classes(dir, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
}

/// Like [`load_dir`], keeping only examples whose label is in `classes` (labels unchanged,
/// `n_classes` stays 10; remap with `select_classes`).
pub fn load_dir_classes(dir: &Path, classes: &[u32]) -> Result<(Dataset, Dataset)> {
    let mut keep = [false; 10];
    for &c in classes {
        if c > 9 {
            return Err(Error::Config(format!(
                "CIFAR-10 class {c} does not exist (classes are 0..=9)"
            )));
        }
        keep[c as usize] = true;
    }
    // Check every file exists before reading 180 MB, so a missing test batch fails at once.
    for f in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(missing(&p));
        }
    }
    let mut train = Parts::default();
    for f in TRAIN_FILES {
        read_into(&dir.join(f), &keep, &mut train)?;
    }
    let mut test = Parts::default();
    read_into(&dir.join(TEST_FILE), &keep, &mut test)?;
    Ok((
        train.into_dataset("cifar10-train")?,
        test.into_dataset("cifar10-test")?,
    ))
}

/// The shipped subset of CIFAR-10 classes 1 (automobile) and 9 (truck), compiled into the
/// crate (`data/cifar10-1v9-subset/`, provenance in `data/README.md`): the same binary batches,
/// read by the same parser as [`load_dir`]. (train: 1,025 images, test: 203), labels 1 and 9
/// as in CIFAR-10 (`n_classes` 10; remap with `select_classes`).
pub fn load_shipped_subset() -> Result<(Dataset, Dataset)> {
    macro_rules! batch {
        ($f:literal) => {
            (
                $f,
                include_bytes!(concat!("../../../data/cifar10-1v9-subset/", $f)).as_slice(),
            )
        };
    }
    let files: [(&str, &[u8]); 6] = [
        batch!("data_batch_1.bin"),
        batch!("data_batch_2.bin"),
        batch!("data_batch_3.bin"),
        batch!("data_batch_4.bin"),
        batch!("data_batch_5.bin"),
        batch!("test_batch.bin"),
    ];
    let (mut train, mut test) = (Parts::default(), Parts::default());
    for (i, (name, bytes)) in files.iter().enumerate() {
        let path = Path::new("data/cifar10-1v9-subset (embedded in eoslab)").join(name);
        let parts = if i < 5 { &mut train } else { &mut test };
        parse_into(&path, bytes, &[true; 10], parts)?;
    }
    Ok((
        train.into_dataset("cifar10-1v9-subset-train")?,
        test.into_dataset("cifar10-1v9-subset-test")?,
    ))
}

/// Load one batch file (any of the six) as a dataset named after the file.
pub fn load_batch(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    parse_batch(path, &bytes)
}

/// Parse one batch file's bytes exactly as [`load_batch`] reads the file at `path`; `path`
/// only names the file in errors and gives the dataset its name.
pub fn parse_batch(path: &Path, bytes: &[u8]) -> Result<Dataset> {
    let mut parts = Parts::default();
    parse_into(path, bytes, &[true; 10], &mut parts)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parts.into_dataset(&name)
}

/// Write a batch file in the CIFAR-10 binary format (for fixtures and tests), atomically.
///
/// `pixels` holds `labels.len()` images of 3,072 bytes each, in the file's CHW order.
pub fn write_batch(path: &Path, labels: &[u8], pixels: &[u8]) -> Result<()> {
    if pixels.len() != labels.len() * PIXELS {
        return Err(Error::data(
            path,
            format!(
                "{} pixel bytes for {} labels; need {} per image",
                pixels.len(),
                labels.len(),
                PIXELS
            ),
        ));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(Error::data(
            path,
            format!("label {l} of image {i} is not a CIFAR-10 class (0..=9)"),
        ));
    }
    let mut bytes = Vec::with_capacity(labels.len() * RECORD);
    for (l, img) in labels.iter().zip(pixels.chunks_exact(PIXELS)) {
        bytes.push(*l);
        bytes.extend_from_slice(img);
    }
    write_atomic(path, &bytes)
}

/// Records read so far.
#[derive(Default)]
struct Parts {
    x: Vec<f64>,
    y: Vec<u32>,
}

impl Parts {
    fn into_dataset(self, name: &str) -> Result<Dataset> {
        let mut ds = Dataset::new(name, self.x, self.y, PIXELS, 10)?;
        ds.image_shape = Some([3, 32, 32]);
        Ok(ds)
    }
}

/// The error for a missing batch file, saying which format is expected.
fn missing(path: &Path) -> Error {
    Error::data(
        path,
        "file not found; the directory must hold the CIFAR-10 binary version (data_batch_1.bin .. \
         data_batch_5.bin and test_batch.bin, extracted from cifar-10-binary.tar.gz)",
    )
}

/// Append the records of one batch file whose label is kept.
fn read_into(path: &Path, keep: &[bool; 10], parts: &mut Parts) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    parse_into(path, &bytes, keep, parts)
}

/// A batch file that cannot be read: a missing one says which format is expected.
fn read_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => missing(path),
        _ => Error::io(path, e),
    }
}

/// Append the kept records of one batch's bytes (`path` names the batch in errors).
fn parse_into(path: &Path, bytes: &[u8], keep: &[bool; 10], parts: &mut Parts) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::data(path, "empty file: no CIFAR-10 records"));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        let mut msg = format!(
            "size {} bytes is not a multiple of {RECORD} (1 label byte + {PIXELS} pixel bytes per record): \
             the file is truncated or not a CIFAR-10 binary batch",
            bytes.len()
        );
        // CIFAR-100's binary records carry two label bytes: a common mix-up worth naming.
        if bytes.len().is_multiple_of(RECORD + 1) {
            msg.push_str(
                " (its size fits CIFAR-100's 3,074-byte records, which are not supported)",
            );
        }
        return Err(Error::data(path, msg));
    }
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0];
        if label > 9 {
            return Err(Error::data(
                path,
                format!(
                    "record {i} (byte offset {}): label {label} is not a CIFAR-10 class (0..=9)",
                    i * RECORD
                ),
            ));
        }
        if keep[label as usize] {
            parts.y.push(label as u32);
            parts.x.extend(rec[1..].iter().map(|&p| p as f64 / 255.0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pixel value for (file, record, byte) so every position is checkable.
    fn px(file: usize, rec: usize, k: usize) -> u8 {
        ((k * 7 + rec * 13 + file * 29) % 256) as u8
    }

    /// Writes 3 records per file; labels (file + rec * 3) % 10.
    fn fixture(dir: &Path) {
        for (f, name) in TRAIN_FILES.iter().chain([&TEST_FILE]).enumerate() {
            let labels: Vec<u8> = (0..3).map(|r| ((f + r * 3) % 10) as u8).collect();
            let pixels: Vec<u8> = (0..3)
                .flat_map(|r| (0..PIXELS).map(move |k| px(f, r, k)))
                .collect();
            write_batch(&dir.join(name), &labels, &pixels).unwrap();
        }
    }

    #[test]
    fn loads_values_labels_and_chw_order() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let (train, test) = load_dir(dir.path()).unwrap();
        assert_eq!((train.n(), test.n()), (15, 3));
        assert_eq!(
            (train.d, train.n_classes, train.image_shape),
            (3072, 10, Some([3, 32, 32]))
        );
        assert_eq!(test.image_shape, Some([3, 32, 32]));
        assert_eq!(train.y[..6], [0, 3, 6, 1, 4, 7]);
        assert_eq!(test.y, vec![5, 8, 1]);
        // Channel c, row h, column w sits at c*1024 + h*32 + w, exactly as in the file.
        for (i, (f, r)) in [(0, 0), (1, 2), (4, 1)].into_iter().enumerate() {
            let row = train.row(f * 3 + r);
            for (c, h, w) in [(0, 0, 0), (0, 5, 31), (1, 0, 3), (2, 31, 31), (2, 17, 2)] {
                let k = c * 1024 + h * 32 + w;
                assert_eq!(row[k], px(f, r, k) as f64 / 255.0, "case {i}, {c},{h},{w}");
            }
        }
        assert!(train.x.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn class_subset_and_single_batch() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let (train, test) = load_dir_classes(dir.path(), &[1, 9]).unwrap();
        assert_eq!(train.y, vec![1, 9]);
        assert_eq!(test.y, vec![1]);
        assert_eq!(train.row(1)[10], px(3, 2, 10) as f64 / 255.0);
        assert!(load_dir_classes(dir.path(), &[10]).is_err());
        let b = load_batch(&dir.path().join("data_batch_2.bin")).unwrap();
        assert_eq!(
            (b.name.as_str(), b.y.clone()),
            ("data_batch_2", vec![1, 4, 7])
        );
    }

    #[test]
    fn missing_truncated_and_bad_label_errors() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let p = dir.path().join("data_batch_3.bin");

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains(&format!("size {}", 3 * RECORD - 100)),
            "{e}"
        );

        let mut bad = bytes.clone();
        bad[2 * RECORD] = 12;
        std::fs::write(&p, &bad).unwrap();
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains("record 2") && e.contains("label 12"),
            "{e}"
        );

        std::fs::write(&p, b"").unwrap();
        assert!(
            load_dir(dir.path())
                .unwrap_err()
                .to_string()
                .contains("empty")
        );

        std::fs::remove_file(&p).unwrap();
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains("binary version"),
            "{e}"
        );

        std::fs::write(dir.path().join(TEST_FILE), vec![0u8; 2 * (RECORD + 1)]).unwrap();
        let e = load_batch(&dir.path().join(TEST_FILE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CIFAR-100"), "{e}");
    }

    #[test]
    fn shipped_subset_is_the_documented_one() {
        let (train, test) = load_shipped_subset().unwrap();
        assert_eq!((train.n(), test.n(), train.d), (1025, 203, PIXELS));
        let counts = train.class_counts();
        assert_eq!((counts[1], counts[9]), (524, 501));
        assert_eq!(counts.iter().sum::<usize>(), 1025);
        assert_eq!(test.class_counts().iter().sum::<usize>(), 203);
        assert!(train.x.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn write_batch_validates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        assert!(write_batch(&p, &[1, 2], &[0; PIXELS]).is_err());
        assert!(
            write_batch(&p, &[10], &[0; PIXELS])
                .unwrap_err()
                .to_string()
                .contains("label 10")
        );
        assert!(!p.exists());
    }
}
