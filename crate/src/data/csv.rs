//! A user's CSV file: numeric feature columns plus one integer label column.
//!
//! Format: comma-separated, one example per line, an optional header (detected: the first
//! non-blank line has a field that is not a number), blank lines ignored, fields may be wrapped
//! in double quotes but may not contain commas. Paths ending in `.gz` are decompressed.
use super::Dataset;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Largest label accepted; a bigger one is almost always the wrong column (an id, a pixel),
/// and would make a one-hot target of absurd width.
pub const MAX_LABEL: u32 = 65_535;

/// Which column of the CSV holds the integer class label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last column (scikit-learn's `digits.csv.gz` layout).
    Last,
    /// The first column.
    First,
    /// The column at this 0-based index.
    Index(usize),
    /// The column with this header name (the file must have a header).
    Name(String),
}

/// Load a CSV of features and an integer label column; the dataset is named after the file stem.
pub fn load(path: &Path, label: &LabelColumn) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_bytes(path, &bytes, label)
}

/// Parse a CSV file's bytes (plain or gzipped) exactly as [`load`] reads the file at `path`;
/// `path` only names the file in errors and gives the dataset its name.
pub fn parse_bytes(path: &Path, bytes: &[u8], label: &LabelColumn) -> Result<Dataset> {
    let text = decode(path, bytes)?;
    parse(&text, path, label, &stem(path))
}

/// The file name without `.gz` and the last extension (`runs/train.csv.gz` → `train`).
fn stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rfind('.') {
        Some(i) if i > 0 => name[..i].to_string(),
        _ => name.to_string(),
    }
}

/// Decompress (for `.gz` paths) and check the bytes are UTF-8 text.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<String> {
    // The gzip magic number decides, not the name: a `.gz` name on plain text is an error below.
    let gz = bytes.starts_with(&[0x1f, 0x8b])
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let raw = if gz {
        let mut out = Vec::new();
        // MultiGzDecoder: concatenated gzip members (e.g. `cat a.gz b.gz`) are one valid file.
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("not a valid gzip file: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw).map_err(|e| {
        Error::data(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Split a line into trimmed fields, removing one pair of surrounding double quotes.
fn fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            let f = f.trim();
            f.strip_prefix('"')
                .and_then(|g| g.strip_suffix('"'))
                .unwrap_or(f)
        })
        .collect()
}

/// Parse CSV `text`; `path` is only used to name the file in errors.
pub(crate) fn parse(text: &str, path: &Path, label: &LabelColumn, name: &str) -> Result<Dataset> {
    // Excel writes a byte-order mark; it would otherwise make the first field non-numeric.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();

    let Some(&(first_no, first)) = lines.peek() else {
        return Err(Error::data(path, "empty file: no data rows"));
    };
    let first_fields = fields(first);
    let width = first_fields.len();
    // An empty field does not make a header: a data row with a missing value must be
    // reported as such, not silently dropped as a "header".
    let has_header = first_fields
        .iter()
        .any(|f| !f.is_empty() && f.parse::<f64>().is_err());
    let header: Option<Vec<String>> = if has_header {
        lines.next();
        Some(first_fields.iter().map(|s| s.to_string()).collect())
    } else {
        None
    };
    if width < 2 {
        return Err(Error::data(
            path,
            format!(
                "line {first_no}: {width} column(s); need at least one feature column and a label column \
                 (is the file comma-separated?)"
            ),
        ));
    }

    let label_col = match label {
        LabelColumn::Last => width - 1,
        LabelColumn::First => 0,
        LabelColumn::Index(i) if *i < width => *i,
        LabelColumn::Index(i) => {
            return Err(Error::data(
                path,
                format!(
                    "label column index {i} (0-based) is out of range: the file has {width} columns"
                ),
            ));
        }
        LabelColumn::Name(want) => {
            let Some(h) = &header else {
                return Err(Error::data(
                    path,
                    format!(
                        "label column \"{want}\" requested by name, but the file has no header row"
                    ),
                ));
            };
            let hits: Vec<usize> = h
                .iter()
                .enumerate()
                .filter(|(_, c)| *c == want)
                .map(|(i, _)| i)
                .collect();
            match hits.as_slice() {
                [i] => *i,
                [] => {
                    return Err(Error::data(
                        path,
                        format!(
                            "no column named \"{want}\" in the header (columns: {})",
                            h.join(", ")
                        ),
                    ));
                }
                _ => {
                    return Err(Error::data(
                        path,
                        format!("several columns are named \"{want}\""),
                    ));
                }
            }
        }
    };

    // Names a cell in errors: line and 1-based column, plus the header name when there is one.
    let cell = |line: usize, col: usize| match &header {
        Some(h) => format!("line {line}, column {} (\"{}\")", col + 1, h[col]),
        None => format!("line {line}, column {}", col + 1),
    };

    let d = width - 1;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (no, line) in lines {
        let row = fields(line);
        if row.len() != width {
            return Err(Error::data(
                path,
                format!(
                    "line {no}: {} fields, expected {width} (as on line {first_no})",
                    row.len()
                ),
            ));
        }
        for (j, f) in row.iter().enumerate() {
            if f.is_empty() {
                return Err(Error::data(path, format!("{}: missing value", cell(no, j))));
            }
            let v: f64 = f.parse().map_err(|_| {
                Error::data(path, format!("{}: \"{f}\" is not a number", cell(no, j)))
            })?;
            if j == label_col {
                if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0) {
                    return Err(Error::data(
                        path,
                        format!(
                            "{}: label \"{f}\" is not a non-negative integer",
                            cell(no, j)
                        ),
                    ));
                }
                if v > MAX_LABEL as f64 {
                    return Err(Error::data(
                        path,
                        format!(
                            "{}: label {f} exceeds {MAX_LABEL}; labels are class indices 0..n_classes \
                             (is the label column right?)",
                            cell(no, j)
                        ),
                    ));
                }
                y.push(v as u32);
            } else {
                // NaN/inf would poison every loss and Hessian downstream: refuse them here.
                if !v.is_finite() {
                    return Err(Error::data(
                        path,
                        format!("{}: \"{f}\" is not a finite number", cell(no, j)),
                    ));
                }
                x.push(v);
            }
        }
    }
    if y.is_empty() {
        return Err(Error::data(path, "the file has a header but no data rows"));
    }
    let n_classes = *y.iter().max().unwrap_or(&0) as usize + 1;
    Dataset::new(name, x, y, d, n_classes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(path: &Path, label: &LabelColumn) -> String {
        load(path, label).unwrap_err().to_string()
    }

    #[test]
    fn headerless_label_last() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "toy.csv", "1.5,2,0\n-3,4e-1,2\n\n0,0,1.0\n");
        let ds = load(&p, &LabelColumn::Last).unwrap();
        assert_eq!(ds.name, "toy");
        assert_eq!((ds.n(), ds.d, ds.n_classes), (3, 2, 3));
        assert_eq!(ds.x, vec![1.5, 2.0, -3.0, 0.4, 0.0, 0.0]);
        assert_eq!(ds.y, vec![0, 2, 1]);
        assert_eq!(ds.image_shape, None);
    }

    #[test]
    fn header_detected_and_label_by_name_first_or_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "h.csv",
            "\u{feff}a,\"label\",b\r\n1,1,2\r\n3,0,4\r\n",
        );
        let by_name = load(&p, &LabelColumn::Name("label".into())).unwrap();
        assert_eq!(by_name.y, vec![1, 0]);
        assert_eq!(by_name.x, vec![1.0, 2.0, 3.0, 4.0]);
        let by_index = load(&p, &LabelColumn::Index(1)).unwrap();
        assert_eq!(by_index.fingerprint(), by_name.fingerprint());
        let first = load(&p, &LabelColumn::First).unwrap();
        assert_eq!(first.y, vec![1, 3]);
        assert_eq!(first.n_classes, 4);
        assert!(err(&p, &LabelColumn::Name("nope".into())).contains("no column named \"nope\""));
        assert!(err(&p, &LabelColumn::Index(3)).contains("out of range"));
    }

    #[test]
    fn gz_is_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"1,2,1\n3,4,0\n").unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let ds = load(&p, &LabelColumn::Last).unwrap();
        assert_eq!(ds.name, "z");
        assert_eq!(ds.y, vec![1, 0]);
        let bad = write(dir.path(), "bad.csv.gz", "1,2,3\n");
        let e = err(&bad, &LabelColumn::Last);
        assert!(e.contains("bad.csv.gz") && e.contains("gzip"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "frac.csv",
                "1,2,0\n1,2,1.5\n",
                "line 2, column 3: label \"1.5\" is not a non-negative integer",
            ),
            ("neg.csv", "1,2,-1\n", "line 1, column 3: label \"-1\""),
            ("ragged.csv", "1,2,0\n1,0\n", "line 2: 2 fields, expected 3"),
            (
                "text.csv",
                "f,g,y\n1,2,0\n1,x,1\n",
                "line 3, column 2 (\"g\"): \"x\" is not a number",
            ),
            (
                "nan.csv",
                "1,2,0\nnan,2,1\n",
                "line 2, column 1: \"nan\" is not a finite number",
            ),
            ("missing.csv", "1,,0\n", "line 1, column 2: missing value"),
            ("empty.csv", "", "empty file"),
            ("blank.csv", "\n  \n", "empty file"),
            ("header_only.csv", "a,b,y\n", "no data rows"),
            ("one_col.csv", "1\n2\n", "need at least one feature column"),
            ("huge.csv", "1,2,70000\n", "exceeds 65535"),
        ];
        for (name, text, want) in cases {
            let p = write(dir.path(), name, text);
            let e = err(&p, &LabelColumn::Last);
            assert!(e.contains(name), "{name}: {e}");
            assert!(e.contains(want), "{name}: {e}");
        }
        let p = write(dir.path(), "nohdr.csv", "1,2,0\n");
        assert!(err(&p, &LabelColumn::Name("y".into())).contains("no header row"));
        let e = err(&dir.path().join("absent.csv"), &LabelColumn::Last);
        assert!(e.contains("absent.csv"), "{e}");
    }
}
