//! Binary tables in safetensors for resume files: exact floats (NaN included), integers, and
//! strings by dictionary.
use super::*;

/// Columns to write into one safetensors file.
#[derive(Default)]
pub struct TableWriter {
    cols: Vec<(String, StDtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

impl TableWriter {
    /// A `f64` column (any shape whose product is `v.len()`).
    pub fn f64(&mut self, name: &str, v: &[f64], shape: Vec<usize>) {
        let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.cols.push((name.into(), StDtype::F64, shape, b));
    }
    /// A `u64` column.
    pub fn u64(&mut self, name: &str, v: &[u64]) {
        let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.cols
            .push((name.into(), StDtype::U64, vec![v.len()], b));
    }
    /// A string column, stored as indices into a dictionary kept in the metadata.
    pub fn strings<'a>(&mut self, name: &str, v: impl IntoIterator<Item = &'a str>) {
        let mut dict: Vec<String> = Vec::new();
        let mut index: HashMap<String, u64> = HashMap::new();
        let idx: Vec<u64> = v
            .into_iter()
            .map(|s| {
                *index.entry(s.to_string()).or_insert_with(|| {
                    dict.push(s.to_string());
                    dict.len() as u64 - 1
                })
            })
            .collect();
        self.u64(name, &idx);
        self.meta.insert(
            format!("dict.{name}"),
            serde_json::to_string(&dict).expect("json"),
        );
    }
    /// A tensor, in its own dtype (f32 or f64), from any device.
    pub fn tensor(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let (dt, b) = checkpoint::to_bytes(t)?;
        self.cols.push((name.into(), dt, vec![t.elem_count()], b));
        Ok(())
    }
    /// A metadata entry.
    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.meta.insert(key.into(), value.into());
    }
    /// Write atomically.
    pub fn write(mut self, path: &Path) -> Result<()> {
        self.meta.insert("format".into(), FORMAT.into());
        let views = self
            .cols
            .iter()
            .map(|(n, dt, s, b)| TensorView::new(*dt, s.clone(), b).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::data(path, e.to_string()))?;
        let bytes = safetensors::serialize(views, Some(self.meta))
            .map_err(|e| Error::data(path, e.to_string()))?;
        write_safetensors_atomic(path, &bytes)
    }
}

/// Columns read back from a [`TableWriter`] file.
pub struct TableReader {
    pub(super) path: PathBuf,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl TableReader {
    /// The file this table was read from (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read and check the format tag.
    pub fn open(path: &Path) -> Result<TableReader> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        TableReader::from_bytes(path, bytes)
    }
    /// Check a table file's bytes as [`TableReader::open`] does; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<TableReader> {
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::data(path, format!("not a safetensors file ({e})")))?;
        let meta = md.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::data(path, format!("not an {FORMAT} file")));
        }
        Ok(TableReader {
            path: path.into(),
            bytes,
            meta,
        })
    }
    fn raw(&self, name: &str) -> Result<(StDtype, Vec<usize>, Vec<u8>)> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::data(&self.path, format!("corrupt ({e})")))?;
        let v = st
            .tensor(name)
            .map_err(|_| Error::data(&self.path, format!("column {name} missing")))?;
        Ok((v.dtype(), v.shape().to_vec(), v.data().to_vec()))
    }
    /// Whether a column exists.
    pub fn has(&self, name: &str) -> bool {
        self.raw(name).is_ok()
    }
    /// A `f64` column.
    pub fn f64(&self, name: &str) -> Result<Vec<f64>> {
        let (dt, _, b) = self.raw(name)?;
        if dt != StDtype::F64 {
            return Err(Error::data(
                &self.path,
                format!("column {name} is {dt:?}, not F64"),
            ));
        }
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect())
    }
    /// A `u64` column.
    pub fn u64(&self, name: &str) -> Result<Vec<u64>> {
        let (dt, _, b) = self.raw(name)?;
        if dt != StDtype::U64 {
            return Err(Error::data(
                &self.path,
                format!("column {name} is {dt:?}, not U64"),
            ));
        }
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect())
    }
    /// A string column.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let dict: Vec<String> = serde_json::from_str(
            self.meta
                .get(&format!("dict.{name}"))
                .ok_or_else(|| Error::data(&self.path, format!("dictionary of {name} missing")))?,
        )
        .map_err(|e| Error::data(&self.path, e.to_string()))?;
        self.u64(name)?
            .into_iter()
            .map(|i| {
                dict.get(i as usize).cloned().ok_or_else(|| {
                    Error::data(&self.path, format!("{name}: index {i} out of range"))
                })
            })
            .collect()
    }
    /// A tensor column on `device`, in the dtype it was saved in.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let (dt, shape, b) = self.raw(name)?;
        if !checkpoint::shape_fits(&shape) {
            return Err(Error::data(
                &self.path,
                format!("tensor {name} has shape {shape:?}, whose size overflows"),
            ));
        }
        let t = match dt {
            StDtype::F64 => Tensor::from_vec(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            )?,
            StDtype::F32 => Tensor::from_vec(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            )?,
            d => {
                return Err(Error::data(
                    &self.path,
                    format!("tensor {name} has dtype {d:?}"),
                ));
            }
        };
        Ok(t.to_device(device)?)
    }
    /// A metadata entry.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::data(&self.path, format!("metadata {key} missing")))
    }
}
