//! MNIST in its original IDX format (`*-images-idx3-ubyte`, `*-labels-idx1-ubyte`, raw or gzipped).
//!
//! An IDX file is a 4-byte big-endian magic number (two zero bytes, a type code, 0x08 for
//! unsigned bytes, and the number of dimensions), one big-endian `u32` per dimension, then the
//! values in row-major order. MNIST images are `[n, rows, cols]` (magic 0x00000803), labels `[n]`
//! (magic 0x00000801). The official test set ships with eoslab ([`load_shipped_test`]);
//! provenance in `data/README.md`.
use super::Dataset;
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The official `t10k-images-idx3-ubyte.gz`, byte for byte.
const TEST_IMAGES_GZ: &[u8] = include_bytes!("../../../data/mnist-test/t10k-images-idx3-ubyte.gz");
/// The official `t10k-labels-idx1-ubyte.gz`, byte for byte.
const TEST_LABELS_GZ: &[u8] = include_bytes!("../../../data/mnist-test/t10k-labels-idx1-ubyte.gz");

/// Number of images in the shipped test set.
pub const N_TEST: usize = 10_000;
/// Number of classes (the digits 0..=9).
pub const N_CLASSES: usize = 10;
/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// zlib's stated bound on deflate's compression ratio (zlib FAQ: "the limit is 1032:1"): a gzip
/// file of `k` bytes cannot decompress to more than `1032 k` bytes, so a larger header is a lie.
const MAX_GZIP_RATIO: usize = 1032;

/// Load MNIST from an images file and its labels file: pixels / 255, shape `[1, rows, cols]`.
pub fn load_files(images: &Path, labels: &Path) -> Result<Dataset> {
    let img = read_file(images)?;
    let lab = read_file(labels)?;
    parse_files(images, &img, labels, &lab)
}

/// Parse an images file's and a labels file's bytes (raw or gzipped) exactly as [`load_files`]
/// reads the files at `images` and `labels`; the paths only name the files in errors.
pub fn parse_files(images: &Path, img: &[u8], labels: &Path, lab: &[u8]) -> Result<Dataset> {
    build(images, img, labels, lab, "mnist")
}

/// Load MNIST from a directory holding one images and one labels IDX file, or from an images
/// file whose labels file lies beside it (`images-idx3` replaced by `labels-idx1` in its name).
pub fn load_path(path: &Path) -> Result<Dataset> {
    if path.is_dir() {
        let (images, labels) = find_in_dir(path)?;
        return load_files(&images, &labels);
    }
    if !path.exists() {
        return Err(Error::data(
            path,
            "not found: expected a directory of MNIST IDX files or an *images-idx3-ubyte[.gz] file",
        ));
    }
    let labels = labels_beside(path)?;
    load_files(path, &labels)
}

/// The shipped MNIST test set (10,000 images 28x28, compiled into the crate), pixels / 255.
pub fn load_shipped_test() -> Result<Dataset> {
    // Only named in errors, which would mean the embedded copy was corrupted at build time.
    let dir = Path::new("data/mnist-test");
    let images = dir.join("t10k-images-idx3-ubyte.gz (embedded in eoslab)");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz (embedded in eoslab)");
    let ds = build(
        &images,
        TEST_IMAGES_GZ,
        &labels,
        TEST_LABELS_GZ,
        "mnist-test",
    )?;
    if ds.n() != N_TEST || ds.d != 28 * 28 {
        return Err(Error::data(
            &images,
            format!(
                "expected {N_TEST} images of 28 x 28, got {} of {} pixels",
                ds.n(),
                ds.d
            ),
        ));
    }
    Ok(ds)
}

/// Read a whole file, naming it in the error.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Parse both files' bytes and check they describe the same images.
fn build(
    images: &Path,
    img_bytes: &[u8],
    labels: &Path,
    lab_bytes: &[u8],
    name: &str,
) -> Result<Dataset> {
    let (dims, pixels) = parse_idx(images, img_bytes, Kind::Images)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let (ldims, y) = parse_idx(labels, lab_bytes, Kind::Labels)?;
    if ldims[0] != n {
        return Err(Error::data(
            labels,
            format!(
                "{} labels, but {} holds {n} images",
                ldims[0],
                file_name(images)
            ),
        ));
    }
    if let Some((i, l)) = y.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(Error::data(
            labels,
            format!(
                "label {l} of item {i} (byte offset {}) is not a digit (0..=9)",
                8 + i
            ),
        ));
    }
    let x = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    let y = y.iter().map(|&l| l as u32).collect();
    let mut ds = Dataset::new(name, x, y, rows * cols, N_CLASSES)?;
    ds.image_shape = Some([1, rows, cols]);
    Ok(ds)
}

/// Which of the two MNIST file types is expected.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn ndim(self) -> usize {
        match self {
            Kind::Images => 3,
            Kind::Labels => 1,
        }
    }
    fn magic(self) -> u32 {
        match self {
            Kind::Images => IMAGES_MAGIC,
            Kind::Labels => LABELS_MAGIC,
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Images => "images",
            Kind::Labels => "labels",
        }
    }
}

/// Name of the type code in byte 2 of an IDX magic number, for error messages.
fn dtype_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not an IDX type",
    }
}

/// Parse an IDX file of `kind` (raw or gzipped) into its dimensions and values.
///
/// The size the header announces is checked against what the file can hold before anything
/// is allocated for it, so a corrupt header cannot trigger a huge allocation.
fn parse_idx(path: &Path, bytes: &[u8], kind: Kind) -> Result<(Vec<usize>, Vec<u8>)> {
    if bytes.is_empty() {
        return Err(Error::data(path, "empty file: no IDX header"));
    }
    // The gzip magic number decides, not the name, as in `csv::decode`.
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read + '_> = if gz {
        // MultiGzDecoder: concatenated gzip members are one valid file, as `gunzip` reads them.
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let after = if gz { " (decompressed)" } else { "" };
    let header_len = 4 + 4 * kind.ndim();
    let mut header = vec![0u8; header_len];
    let got = read_up_to(path, &mut reader, &mut header)?;
    if got < 4 {
        return Err(Error::data(
            path,
            format!("truncated: {got} bytes{after}, shorter than the 4-byte IDX magic number"),
        ));
    }
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if header[0] != 0 || header[1] != 0 {
        return Err(Error::data(
            path,
            format!(
                "not an IDX file: magic number 0x{magic:08x}, expected 0x{:08x} (MNIST {})",
                kind.magic(),
                kind.noun()
            ),
        ));
    }
    if header[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "wrong dtype code 0x{:02x} ({}) in magic number 0x{magic:08x}: MNIST {} are \
                 unsigned bytes (0x08, magic 0x{:08x})",
                header[2],
                dtype_name(header[2]),
                kind.noun(),
                kind.magic()
            ),
        ));
    }
    if magic != kind.magic() {
        // The other MNIST file is the likely mix-up: say so.
        let other = match kind {
            Kind::Images => Kind::Labels,
            Kind::Labels => Kind::Images,
        };
        let hint = if magic == other.magic() {
            format!(" (this is an MNIST {} file)", other.noun())
        } else {
            String::new()
        };
        return Err(Error::data(
            path,
            format!(
                "wrong magic number 0x{magic:08x}: {} dimensions, expected MNIST {} \
                 (0x{:08x}, {} dimensions){hint}",
                header[3],
                kind.noun(),
                kind.magic(),
                kind.ndim()
            ),
        ));
    }
    if got < header_len {
        return Err(Error::data(
            path,
            format!("truncated: {got} bytes{after}, shorter than the {header_len}-byte IDX header"),
        ));
    }
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ");
    if dims.contains(&0) {
        return Err(Error::data(
            path,
            format!("header says {shape} {}: no data", kind.noun()),
        ));
    }
    let want = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "header says {shape} {}: the size overflows (corrupt header)",
                    kind.noun()
                ),
            )
        })?;
    let announced = format!(
        "header says {shape} {} ({want} bytes after the {header_len}-byte header)",
        kind.noun()
    );
    if !gz {
        // A raw file is already in memory: compare sizes, then copy exactly what was announced.
        let have = bytes.len() - header_len;
        if have < want {
            return Err(Error::data(
                path,
                format!("truncated: {announced}, file has {have}"),
            ));
        }
        if have > want {
            return Err(Error::data(
                path,
                format!(
                    "{} trailing bytes: {announced}, file has {have}",
                    have - want
                ),
            ));
        }
        return Ok((dims, bytes[header_len..].to_vec()));
    }
    if want / MAX_GZIP_RATIO >= bytes.len() {
        return Err(Error::data(
            path,
            format!(
                "truncated: {announced}, more than a {}-byte gzip file can hold",
                bytes.len()
            ),
        ));
    }
    // Decompress at most one byte more than announced (to detect trailing bytes); the buffer
    // grows only with data actually decompressed, never to a size taken from the header alone.
    let mut data = Vec::new();
    reader
        .take(want as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| gzip_error(path, e))?;
    if data.len() < want {
        return Err(Error::data(
            path,
            format!("truncated: {announced}, file has {}{after}", data.len()),
        ));
    }
    if data.len() > want {
        return Err(Error::data(
            path,
            format!("trailing bytes{after}: {announced}, file has more"),
        ));
    }
    Ok((dims, data))
}

/// Fill `buf` from `reader` as far as the data goes; the number of bytes read.
fn read_up_to(path: &Path, reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip_error(path, e)),
        }
    }
    Ok(got)
}

/// Reading from memory fails only in the gzip decoder.
fn gzip_error(path: &Path, e: std::io::Error) -> Error {
    Error::data(path, format!("not a valid gzip file: {e}"))
}

/// The file name of `path` (the whole path if it has none), for messages.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// Whether `name` is an IDX file of `stem` (`images-idx3-ubyte` or `labels-idx1-ubyte`).
fn is_idx(name: &str, stem: &str) -> bool {
    name.ends_with(stem) || name.strip_suffix(".gz").is_some_and(|n| n.ends_with(stem))
}

/// The single images file and single labels file in `dir`.
fn find_in_dir(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    // Sorted so the error messages list the same files in the same order on every system.
    names.sort();
    let pick = |stem: &str| -> Result<PathBuf> {
        let found: Vec<&String> = names.iter().filter(|n| is_idx(n, stem)).collect();
        match found.as_slice() {
            [one] => Ok(dir.join(one)),
            [] => {
                let listing = if names.is_empty() {
                    "the directory holds no files".to_string()
                } else {
                    let shown: Vec<&str> = names.iter().take(20).map(String::as_str).collect();
                    let more = names.len().saturating_sub(20);
                    let more = if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    };
                    format!("found {}{more}", shown.join(", "))
                };
                Err(Error::data(
                    dir,
                    format!("no MNIST *{stem}[.gz] file in this directory; {listing}"),
                ))
            }
            many => Err(Error::data(
                dir,
                format!(
                    "ambiguous: {} *{stem}[.gz] files ({}); pass the images file itself",
                    many.len(),
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    };
    Ok((pick("images-idx3-ubyte")?, pick("labels-idx1-ubyte")?))
}

/// The labels file beside an images file: `images-idx3` replaced by `labels-idx1` in the name,
/// with or without `.gz` (the same compression is tried first).
fn labels_beside(images: &Path) -> Result<PathBuf> {
    let name = file_name(images);
    let Some(at) = name.rfind("images-idx3") else {
        let msg = if name.contains("labels-idx1") {
            "this is an MNIST labels file; pass the images file (*images-idx3-ubyte[.gz]) or \
             their directory"
        } else {
            "not an MNIST images file: its name must contain images-idx3 (e.g. \
             t10k-images-idx3-ubyte.gz), or pass a directory of MNIST IDX files"
        };
        return Err(Error::data(images, msg));
    };
    let labels = format!(
        "{}labels-idx1{}",
        &name[..at],
        &name[at + "images-idx3".len()..]
    );
    let other = match labels.strip_suffix(".gz") {
        Some(raw) => raw.to_string(),
        None => format!("{labels}.gz"),
    };
    let dir = images.parent().unwrap_or(Path::new(""));
    let tried = [dir.join(&labels), dir.join(&other)];
    for t in &tried {
        if t.is_file() {
            return Ok(t.clone());
        }
    }
    Err(Error::data(
        images,
        format!(
            "its labels file was not found beside it: tried {} and {}",
            tried[0].display(),
            tried[1].display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An IDX file: `magic`, `dims`, then `data`, big-endian as in the format.
    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// 3 images of 2 x 4 pixels, pixel k of image i = 40 i + 10 k + 5; labels 3, 0, 9.
    fn fixture_pixels() -> Vec<u8> {
        (0..3)
            .flat_map(|i| (0..8).map(move |k| (40 * i + 10 * k + 5) as u8))
            .collect()
    }

    fn images_bytes() -> Vec<u8> {
        idx(IMAGES_MAGIC, &[3, 2, 4], &fixture_pixels())
    }

    fn labels_bytes() -> Vec<u8> {
        idx(LABELS_MAGIC, &[3], &[3, 0, 9])
    }

    /// Write images and labels (gzipped or not) into `dir` under MNIST-style names.
    fn write_fixture(dir: &Path, gz: bool) -> (PathBuf, PathBuf) {
        let ext = if gz { ".gz" } else { "" };
        let img = dir.join(format!("train-images-idx3-ubyte{ext}"));
        let lab = dir.join(format!("train-labels-idx1-ubyte{ext}"));
        let (i, l) = (images_bytes(), labels_bytes());
        if gz {
            std::fs::write(&img, gzip(&i)).unwrap();
            std::fs::write(&lab, gzip(&l)).unwrap();
        } else {
            std::fs::write(&img, i).unwrap();
            std::fs::write(&lab, l).unwrap();
        }
        (img, lab)
    }

    fn check_fixture(ds: &Dataset) {
        assert_eq!(ds.name, "mnist");
        assert_eq!(
            (ds.n(), ds.d, ds.n_classes, ds.image_shape),
            (3, 8, 10, Some([1, 2, 4]))
        );
        assert_eq!(ds.y, vec![3, 0, 9]);
        // Image 1, row 1, column 2 is pixel k = 1 * 4 + 2 = 6: 40 + 60 + 5 = 105.
        assert_eq!(ds.row(1)[6], 105.0 / 255.0);
        let want: Vec<f64> = fixture_pixels().iter().map(|&p| p as f64 / 255.0).collect();
        assert_eq!(ds.x, want);
    }

    #[test]
    fn shipped_test_set_is_the_published_one() {
        let ds = load_shipped_test().unwrap();
        assert_eq!(ds.name, "mnist-test");
        assert_eq!(
            (ds.n(), ds.d, ds.n_classes, ds.image_shape),
            (10_000, 784, 10, Some([1, 28, 28]))
        );
        assert_eq!(
            ds.class_counts(),
            vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        assert_eq!(ds.y[..5], [7, 2, 1, 0, 4]);
        assert!(ds.x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(ds.x.iter().cloned().fold(0.0, f64::max), 1.0);
        // The first image (a 7): its raw pixel bytes sum to 18,454; corners are background.
        let sum: f64 = ds.row(0).iter().map(|v| v * 255.0).sum();
        assert!((sum - 18_454.0).abs() < 1e-6, "{sum}");
        assert_eq!((ds.row(0)[0], ds.row(0)[783]), (0.0, 0.0));
    }

    #[test]
    fn raw_and_gzipped_fixtures_round_trip() {
        for gz in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (img, lab) = write_fixture(dir.path(), gz);
            check_fixture(&load_files(&img, &lab).unwrap());
            check_fixture(&load_path(dir.path()).unwrap());
            check_fixture(&load_path(&img).unwrap());
        }
        // Labels found beside the images with the other compression.
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("t10k-images-idx3-ubyte.gz");
        std::fs::write(&img, gzip(&images_bytes())).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), labels_bytes()).unwrap();
        check_fixture(&load_path(&img).unwrap());
    }

    /// Load `images` and `labels` bytes written as files; the error text.
    fn error_of(images: &[u8], labels: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x-images-idx3-ubyte");
        let lab = dir.path().join("x-labels-idx1-ubyte");
        std::fs::write(&img, images).unwrap();
        std::fs::write(&lab, labels).unwrap();
        load_files(&img, &lab).unwrap_err().to_string()
    }

    #[test]
    fn malformed_files_are_named_and_explained() {
        let (img, lab) = (images_bytes(), labels_bytes());
        let truncated = "truncated: header says 3 x 2 x 4 images (24 bytes after the 16-byte \
                         header), file has 14";
        let bad_images: Vec<(Vec<u8>, &str)> = vec![
            (
                b"P5\n28 28\n".to_vec(),
                "not an IDX file: magic number 0x50350a32",
            ),
            (lab.clone(), "this is an MNIST labels file"),
            (
                idx(0x0D03, &[3, 2, 4], &[0; 96]),
                "wrong dtype code 0x0d (f32)",
            ),
            (img[..30].to_vec(), truncated),
            (
                img[..10].to_vec(),
                "truncated: 10 bytes, shorter than the 16-byte IDX header",
            ),
            ([img.as_slice(), &[1, 2]].concat(), "2 trailing bytes"),
            (idx(IMAGES_MAGIC, &[u32::MAX; 3], &[]), "the size overflows"),
            (
                idx(IMAGES_MAGIC, &[0, 28, 28], &[]),
                "0 x 28 x 28 images: no data",
            ),
            (Vec::new(), "empty file"),
            (gzip(&img[..30]), "file has 14 (decompressed)"),
            (
                gzip(&[img.as_slice(), &[7]].concat()),
                "trailing bytes (decompressed)",
            ),
            (gzip(&img)[..20].to_vec(), "not a valid gzip file"),
        ];
        for (i, (bytes, phrase)) in bad_images.iter().enumerate() {
            let e = error_of(bytes, &lab);
            assert!(
                e.contains("x-images-idx3-ubyte: ") && e.contains(phrase),
                "case {i}: {e}"
            );
        }
        let bad_labels: Vec<(Vec<u8>, &str)> = vec![
            (img.clone(), "wrong magic number 0x00000803"),
            (
                idx(LABELS_MAGIC, &[2], &[3, 0]),
                "2 labels, but x-images-idx3-ubyte holds 3",
            ),
            (
                idx(LABELS_MAGIC, &[3], &[3, 12, 9]),
                "label 12 of item 1 (byte offset 9)",
            ),
            (idx(LABELS_MAGIC, &[4], &[3, 0, 9]), "truncated"),
        ];
        for (i, (bytes, phrase)) in bad_labels.iter().enumerate() {
            let e = error_of(&img, bytes);
            assert!(
                e.contains("x-labels-idx1-ubyte: ") && e.contains(phrase),
                "case {i}: {e}"
            );
        }
    }

    #[test]
    fn huge_header_in_small_file_fails_before_allocating() {
        // 10^9 images of 28 x 28 would be 784 GB: allocating it would abort the test process.
        let mut small = idx(IMAGES_MAGIC, &[1_000_000_000, 28, 28], &[]);
        small.resize(100, 0);
        let e = error_of(&small, &labels_bytes());
        assert!(
            e.contains("x-images-idx3-ubyte")
                && e.contains("header says 1000000000 x 28 x 28 images (784000000000 bytes")
                && e.contains("file has 84"),
            "{e}"
        );
        let e = error_of(&gzip(&small), &labels_bytes());
        assert!(
            e.contains("784000000000 bytes") && e.contains("gzip file can hold"),
            "{e}"
        );
    }

    #[test]
    fn finding_files_by_directory_and_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let e = load_path(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("no MNIST *images-idx3-ubyte[.gz] file") && e.contains("found notes.txt"),
            "{e}"
        );

        write_fixture(dir.path(), false);
        write_fixture(dir.path(), true);
        let e = load_path(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("ambiguous: 2 *images-idx3-ubyte[.gz] files")
                && e.contains("train-images-idx3-ubyte, train-images-idx3-ubyte.gz"),
            "{e}"
        );

        let lone = dir.path().join("t10k-images-idx3-ubyte");
        std::fs::write(&lone, images_bytes()).unwrap();
        let e = load_path(&lone).unwrap_err().to_string();
        assert!(
            e.contains("labels file was not found") && e.contains("t10k-labels-idx1-ubyte.gz"),
            "{e}"
        );
        let e = load_path(&dir.path().join("train-labels-idx1-ubyte"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("this is an MNIST labels file"), "{e}");
        let e = load_path(&dir.path().join("notes.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notes.txt") && e.contains("must contain images-idx3"),
            "{e}"
        );
        let e = load_path(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && e.contains("not found"), "{e}");
    }
}
