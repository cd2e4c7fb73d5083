//! Datasets as safetensors files: `x` [n, d] float, `y` [n] integer, optional `group` [n] u8.
//!
//! The layout is what a PyTorch user expects (`safetensors.torch.load_file(p)["x"]`), so any run's
//! exact training set can be recomputed from outside eoslab. Dataset facts that are not tensors
//! (`name`, `n_classes`, `image_shape`, `fingerprint`) live in the file's `__metadata__`.
use super::csv::MAX_LABEL;
use super::{Dataset, ORDINARY};
use crate::atomic::write_safetensors_atomic;
use crate::{Error, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Metadata keys written by [`export`]; `extra_metadata` may not reuse them.
pub const RESERVED_KEYS: [&str; 4] = ["name", "n_classes", "image_shape", "fingerprint"];

/// Load a dataset from a safetensors file (`x` F64/F32/F16/BF16 [n, d] or [n, C, H, W],
/// `y` any integer dtype [n], optional `group` integer [n] in 0..=255).
///
/// Optional metadata: `name` (default: the file stem), `n_classes` (default: max label + 1),
/// `image_shape` as JSON `"[C,H,W]"`, and `fingerprint`, which must then match the data.
pub fn load(path: &Path) -> Result<Dataset> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_bytes(path, &buf)
}

/// Parse a safetensors training set's bytes exactly as [`load`] reads the file at `path`;
/// `path` only names the file in errors and gives the default dataset name.
pub fn parse_bytes(path: &Path, buf: &[u8]) -> Result<Dataset> {
    let bad = |msg: String| Error::data(path, msg);
    let st = SafeTensors::deserialize(buf)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(buf)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let names = || {
        let mut v = st.names();
        v.sort();
        v.join(", ")
    };

    let xv = st.tensor("x").map_err(|_| {
        bad(format!(
            "no tensor \"x\" (found: [{}]); expected x [n, d] float and y [n] integer",
            names()
        ))
    })?;
    let (n, d, x_image) = match *xv.shape() {
        [n, d] => (n, d, None),
        // safetensors accepts [0, C, H, W] whatever C x H x W is (it multiplies n first).
        [n, c, h, w] => match c.checked_mul(h).and_then(|ch| ch.checked_mul(w)) {
            Some(d) => (n, d, Some([c, h, w])),
            None => {
                return Err(bad(format!(
                    "tensor x has shape {:?}: C x H x W overflows (corrupt header)",
                    xv.shape()
                )));
            }
        },
        ref s => {
            return Err(bad(format!(
                "tensor x has shape {s:?}; expected [n, d] (or [n, C, H, W] images)"
            )));
        }
    };
    if n == 0 {
        return Err(bad(format!(
            "tensor x has shape {:?}: no examples",
            xv.shape()
        )));
    }
    if d == 0 {
        return Err(bad(format!(
            "tensor x has shape {:?}: no features",
            xv.shape()
        )));
    }
    let x = floats(&xv).map_err(|dt| {
        bad(format!(
            "tensor x has dtype {dt:?}; expected F64, F32, F16 or BF16 (integer pixels: convert to float first)"
        ))
    })?;
    if let Some(k) = x.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "x[{}, {}] = {} is not finite",
            k / d,
            k % d,
            x[k]
        )));
    }

    let yv = st.tensor("y").map_err(|_| {
        bad(format!(
            "no tensor \"y\" (found: [{}]); expected y [n] integer",
            names()
        ))
    })?;
    let y_raw = vector(path, "y", &yv, n)?;
    let mut y = Vec::with_capacity(n);
    for (i, &v) in y_raw.iter().enumerate() {
        if v < 0 {
            return Err(bad(format!(
                "y[{i}] = {v}: labels must be non-negative class indices"
            )));
        }
        if v > MAX_LABEL as i128 {
            return Err(bad(format!(
                "y[{i}] = {v} exceeds {MAX_LABEL}: labels must be class indices"
            )));
        }
        y.push(v as u32);
    }

    let group = match st.tensor("group") {
        Ok(gv) => {
            let g = vector(path, "group", &gv, n)?;
            if let Some(i) = g.iter().position(|v| !(0..=255).contains(v)) {
                return Err(bad(format!("group[{i}] = {} is outside 0..=255", g[i])));
            }
            g.into_iter().map(|v| v as u8).collect()
        }
        Err(_) => vec![ORDINARY; n],
    };

    let max_label = y.iter().max().map_or(0, |&m| m as usize + 1);
    let n_classes = match meta.get("n_classes") {
        Some(s) => {
            let k: usize = s
                .trim()
                .parse()
                .map_err(|_| bad(format!("metadata n_classes = {s:?} is not an integer")))?;
            if k == 0 {
                return Err(bad(
                    "metadata n_classes = 0; it must be at least 1".to_string()
                ));
            }
            if k < max_label {
                return Err(bad(format!(
                    "metadata n_classes = {k} but the largest label is {}",
                    max_label - 1
                )));
            }
            k
        }
        None => max_label.max(1),
    };

    let image_shape = match meta.get("image_shape") {
        Some(s) => {
            let v: Vec<usize> = serde_json::from_str(s).map_err(|_| {
                bad(format!(
                    "metadata image_shape = {s:?} is not a JSON list like \"[1,8,8]\""
                ))
            })?;
            let shape: [usize; 3] = v.try_into().map_err(|_| {
                bad(format!(
                    "metadata image_shape = {s:?} must have 3 entries [C, H, W]"
                ))
            })?;
            // Checked: the entries come from the file and may overflow when multiplied.
            if shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) != Some(d) {
                return Err(bad(format!(
                    "metadata image_shape {shape:?} does not hold the {d} features of x"
                )));
            }
            if x_image.is_some_and(|xs| xs != shape) {
                return Err(bad(format!(
                    "metadata image_shape {shape:?} disagrees with x's shape {:?}",
                    xv.shape()
                )));
            }
            Some(shape)
        }
        None => x_image,
    };

    let name = match meta.get("name") {
        Some(s) => s.clone(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mut ds = Dataset::new(name, x, y, d, n_classes)?;
    ds.group = group;
    ds.image_shape = image_shape;
    // A stored fingerprint is a promise about the data: a mismatch means the tensors were
    // changed after export (or converted lossily) while the metadata was kept.
    if let Some(fp) = meta.get("fingerprint") {
        let got = ds.fingerprint();
        if *fp != got {
            return Err(bad(format!(
                "fingerprint mismatch: metadata says {fp}, the data give {got} (the tensors were modified \
                 after export; drop the fingerprint key if that was intended)"
            )));
        }
    }
    Ok(ds)
}

/// Write `ds` as safetensors (`x` F64 [n, d], `y` I64 [n], `group` U8 [n]) with metadata
/// `name`, `n_classes`, `image_shape` (if any), `fingerprint` and `extra_metadata`, atomically.
pub fn export(ds: &Dataset, path: &Path, extra_metadata: &[(String, String)]) -> Result<()> {
    let n = ds.n();
    if ds.x.len() != n * ds.d || ds.group.len() != n {
        return Err(Error::Config(format!(
            "dataset {}: {} inputs, {} labels and {} group ids are inconsistent with d = {}",
            ds.name,
            ds.x.len(),
            n,
            ds.group.len(),
            ds.d
        )));
    }
    let mut meta = HashMap::new();
    meta.insert("name".to_string(), ds.name.clone());
    meta.insert("n_classes".to_string(), ds.n_classes.to_string());
    if let Some([c, h, w]) = ds.image_shape {
        meta.insert("image_shape".to_string(), format!("[{c},{h},{w}]"));
    }
    meta.insert("fingerprint".to_string(), ds.fingerprint());
    for (k, v) in extra_metadata {
        if RESERVED_KEYS.contains(&k.as_str()) {
            return Err(Error::Config(format!(
                "extra metadata key {k:?} is reserved by the dataset export"
            )));
        }
        if meta.insert(k.clone(), v.clone()).is_some() {
            return Err(Error::Config(format!(
                "extra metadata key {k:?} given twice"
            )));
        }
    }

    let xb: Vec<u8> = ds.x.iter().flat_map(|v| v.to_le_bytes()).collect();
    // i64 labels: PyTorch's default integer dtype, what `cross_entropy` and indexing expect.
    let yb: Vec<u8> =
        ds.y.iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect();
    let view_err =
        |e: safetensors::SafeTensorError| Error::data(path, format!("cannot encode tensors: {e}"));
    let tensors = [
        (
            "x",
            TensorView::new(Dtype::F64, vec![n, ds.d], &xb).map_err(view_err)?,
        ),
        (
            "y",
            TensorView::new(Dtype::I64, vec![n], &yb).map_err(view_err)?,
        ),
        (
            "group",
            TensorView::new(Dtype::U8, vec![n], &ds.group).map_err(view_err)?,
        ),
    ];
    let bytes = safetensors::serialize(tensors, Some(meta)).map_err(view_err)?;
    write_safetensors_atomic(path, &bytes)
}

/// Decode a float tensor to f64 (exactly: every F32/F16/BF16 value is an f64), or return its dtype.
fn floats(t: &TensorView) -> std::result::Result<Vec<f64>, Dtype> {
    let b = t.data();
    Ok(match t.dtype() {
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        // bf16 is the top half of an f32.
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
            .collect(),
        other => return Err(other),
    })
}

/// IEEE binary16 to f64 (exact), written out to avoid a dependency for four lines of bit fiddling.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Decode a rank-1 integer tensor of length `n` (any signed or unsigned width).
fn vector(path: &Path, name: &str, t: &TensorView, n: usize) -> Result<Vec<i128>> {
    match *t.shape() {
        [m] if m == n => {}
        [m] => {
            return Err(Error::data(
                path,
                format!("x has {n} rows but {name} has {m} entries"),
            ));
        }
        ref s => {
            return Err(Error::data(
                path,
                format!("tensor {name} has shape {s:?}; expected [n] = [{n}]"),
            ));
        }
    }
    let b = t.data();
    macro_rules! le {
        ($ty:ty, $w:expr) => {
            b.chunks_exact($w)
                .map(|c| <$ty>::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect()
        };
    }
    Ok(match t.dtype() {
        Dtype::I64 => le!(i64, 8),
        Dtype::I32 => le!(i32, 4),
        Dtype::I16 => le!(i16, 2),
        Dtype::I8 => le!(i8, 1),
        Dtype::U64 => le!(u64, 8),
        Dtype::U32 => le!(u32, 4),
        Dtype::U16 => le!(u16, 2),
        Dtype::U8 => le!(u8, 1),
        other => {
            return Err(Error::data(
                path,
                format!(
                    "tensor {name} has dtype {other:?}; expected an integer dtype (I64, I32, U8, ...)"
                ),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    fn sample() -> Dataset {
        let x: Vec<f64> = (0..24)
            .map(|i| (i as f64 * 0.37).sin() * 1e3 + 1e-300 * i as f64)
            .collect();
        let mut ds = Dataset::new("toy[1,2]", x, vec![0, 1, 2, 1, 0, 2], 4, 3).unwrap();
        ds.group = vec![0, 1, 2, 3, 4, 0];
        ds.image_shape = Some([1, 2, 2]);
        ds
    }

    /// A raw tensor: name, dtype, shape, little-endian bytes.
    type Raw<'a> = (&'a str, Dtype, Vec<usize>, Vec<u8>);
    /// An error case: file name, tensors, metadata, expected message fragment.
    type Case<'a> = (&'a str, Vec<Raw<'a>>, Vec<(&'a str, &'a str)>, &'a str);

    /// Write raw tensors with metadata.
    fn raw(path: &Path, tensors: &[Raw], meta: &[(&str, &str)]) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, dt, s, b)| (n.to_string(), TensorView::new(*dt, s.clone(), b).unwrap()))
            .collect();
        let meta: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.safetensors");
        let ds = sample();
        export(&ds, &p, &[("run".into(), "abc".into())]).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.name, ds.name);
        assert_eq!(
            back.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            ds.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(
            (back.y.clone(), back.group.clone()),
            (ds.y.clone(), ds.group.clone())
        );
        assert_eq!(
            (back.d, back.n_classes, back.image_shape),
            (4, 3, Some([1, 2, 2]))
        );
        assert_eq!(back.fingerprint(), ds.fingerprint());
        // Overwriting an existing file works (atomic replace).
        export(&back, &p, &[]).unwrap();
        assert_eq!(load(&p).unwrap().fingerprint(), ds.fingerprint());
    }

    #[test]
    fn layout_is_what_pytorch_expects() {
        // Read the header as raw JSON, independently of the safetensors crate's reader.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.safetensors");
        let ds = sample();
        export(&ds, &p, &[("seed".into(), "7".into())]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
        assert_eq!(h["x"]["dtype"], "F64");
        assert_eq!(h["x"]["shape"], serde_json::json!([6, 4]));
        assert_eq!(h["y"]["dtype"], "I64");
        assert_eq!(h["y"]["shape"], serde_json::json!([6]));
        assert_eq!(h["group"]["dtype"], "U8");
        assert_eq!(h["group"]["shape"], serde_json::json!([6]));
        let m = &h["__metadata__"];
        assert_eq!(m["n_classes"], "3");
        assert_eq!(m["image_shape"], "[1,2,2]");
        assert_eq!(m["fingerprint"], ds.fingerprint().as_str());
        assert_eq!(m["name"], "toy[1,2]");
        assert_eq!(m["seed"], "7");
        let off = h["y"]["data_offsets"][0].as_u64().unwrap() as usize + 8 + hlen;
        assert_eq!(
            i64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap()),
            1
        );
    }

    #[test]
    fn reserved_metadata_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.safetensors");
        assert!(export(&sample(), &p, &[("fingerprint".into(), "0".into())]).is_err());
        assert!(!p.exists());
    }

    #[test]
    fn foreign_dtypes_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("user_data.safetensors");
        let y: Vec<u8> = [0i32, 4, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        raw(
            &p,
            &[
                (
                    "x",
                    Dtype::F32,
                    vec![3, 2],
                    f32s(&[0.5, -1.0, 2.0, 3.25, 1e-3, 7.0]),
                ),
                ("y", Dtype::I32, vec![3], y),
            ],
            &[],
        );
        let ds = load(&p).unwrap();
        assert_eq!(ds.name, "user_data");
        assert_eq!((ds.d, ds.n_classes, ds.image_shape), (2, 5, None));
        assert_eq!(ds.x[5], 7.0);
        assert_eq!(ds.x[4], 1e-3f32 as f64);
        assert_eq!(ds.group, vec![ORDINARY; 3]);

        // Images saved as [n, C, H, W] uint8 labels, bf16 inputs; n_classes from metadata.
        let bf: Vec<u8> = [1.0f32, -2.5, 0.15625, 3.0]
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        raw(
            &p,
            &[
                ("x", Dtype::BF16, vec![1, 1, 2, 2], bf),
                ("y", Dtype::U8, vec![1], vec![1]),
            ],
            &[("n_classes", "10"), ("name", "imgs")],
        );
        let ds = load(&p).unwrap();
        assert_eq!(
            (ds.name.as_str(), ds.d, ds.n_classes, ds.image_shape),
            ("imgs", 4, 10, Some([1, 2, 2]))
        );
        assert_eq!(ds.x, vec![1.0, -2.5, 0.15625, 3.0]);
    }

    #[test]
    fn f16_decoding_matches_candle_for_every_finite_value() {
        let bits: Vec<u16> = (0..=u16::MAX).filter(|h| (h >> 10) & 0x1f != 31).collect();
        let bytes: Vec<u8> = bits.iter().flat_map(|h| h.to_le_bytes()).collect();
        let t = Tensor::from_raw_buffer(&bytes, DType::F16, &[bits.len()], &Device::Cpu).unwrap();
        let want: Vec<f64> = t.to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        for (h, w) in bits.iter().zip(want) {
            assert_eq!(f16_to_f64(*h).to_bits(), w.to_bits(), "bits {h:#06x}");
        }
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let x = || ("x", Dtype::F32, vec![2, 2], f32s(&[1.0, 2.0, 3.0, 4.0]));
        let y64 = |v: &[i64]| {
            (
                "y",
                Dtype::I64,
                vec![v.len()],
                v.iter().flat_map(|a| a.to_le_bytes()).collect::<Vec<u8>>(),
            )
        };
        let cases: Vec<Case> = vec![
            ("no_y", vec![x()], vec![], "no tensor \"y\""),
            ("no_x", vec![y64(&[0, 1])], vec![], "no tensor \"x\""),
            (
                "rank_x",
                vec![("x", Dtype::F32, vec![4], f32s(&[1.0; 4])), y64(&[0, 1])],
                vec![],
                "tensor x has shape [4]",
            ),
            (
                "rank_y",
                vec![x(), ("y", Dtype::I64, vec![2, 1], vec![0; 16])],
                vec![],
                "tensor y has shape [2, 1]",
            ),
            (
                "n_mismatch",
                vec![x(), y64(&[0, 1, 1])],
                vec![],
                "x has 2 rows but y has 3 entries",
            ),
            ("negative", vec![x(), y64(&[0, -1])], vec![], "y[1] = -1"),
            (
                "x_int",
                vec![("x", Dtype::U8, vec![2, 2], vec![1; 4]), y64(&[0, 1])],
                vec![],
                "tensor x has dtype U8",
            ),
            (
                "y_float",
                vec![x(), ("y", Dtype::F32, vec![2], f32s(&[0.0, 1.0]))],
                vec![],
                "tensor y has dtype F32",
            ),
            (
                "group_range",
                vec![
                    x(),
                    y64(&[0, 1]),
                    (
                        "group",
                        Dtype::I64,
                        vec![2],
                        [0i64, 300].iter().flat_map(|a| a.to_le_bytes()).collect(),
                    ),
                ],
                vec![],
                "group[1] = 300",
            ),
            (
                "nan",
                vec![
                    (
                        "x",
                        Dtype::F32,
                        vec![2, 2],
                        f32s(&[1.0, 2.0, f32::NAN, 4.0]),
                    ),
                    y64(&[0, 1]),
                ],
                vec![],
                "x[1, 0] = NaN",
            ),
            (
                "n_classes",
                vec![x(), y64(&[0, 3])],
                vec![("n_classes", "2")],
                "n_classes = 2 but the largest label is 3",
            ),
            (
                "image_shape",
                vec![x(), y64(&[0, 1])],
                vec![("image_shape", "[1,3,3]")],
                "does not hold the 2 features",
            ),
            (
                "image_json",
                vec![x(), y64(&[0, 1])],
                vec![("image_shape", "1x2")],
                "not a JSON list",
            ),
            (
                "fingerprint",
                vec![x(), y64(&[0, 1])],
                vec![("fingerprint", "0123456789abcdef")],
                "fingerprint mismatch",
            ),
        ];
        for (name, tensors, meta, want) in cases {
            let p = dir.path().join(format!("{name}.safetensors"));
            raw(&p, &tensors, &meta);
            let e = load(&p).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{name}.safetensors")) && e.contains(want),
                "{name}: {e}"
            );
        }
        let p = dir.path().join("garbage.safetensors");
        std::fs::write(&p, b"definitely not safetensors").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("garbage.safetensors") && e.contains("not a valid safetensors"),
            "{e}"
        );
        let e = load(&dir.path().join("absent.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.safetensors"), "{e}");
    }
}
