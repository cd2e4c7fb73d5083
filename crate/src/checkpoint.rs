//! Checkpoints: parameters (PyTorch state-dict names), momentum buffers and run metadata in one
//! safetensors file, written atomically and validated on load.
//!
//! A PyTorch user loads one with `safetensors.torch.load_file(path)`: the keys `net.0.weight`, …
//! match an `nn.Sequential` of the same architecture; metadata is in the file's header.
use crate::atomic::write_safetensors_atomic;
use crate::loss::LossKind;
use crate::model::{InitSpec, Model, ModelSpec};
use crate::objective::Objective;
use crate::train::{GdState, GradientDescent};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Format tag written in every checkpoint.
pub const FORMAT: &str = "eoslab-checkpoint-v1";
/// Key prefix of momentum buffers.
pub const MOMENTUM_PREFIX: &str = "optimizer.momentum_buffer.";

/// Everything about a run that is not a tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Architecture.
    pub spec: ModelSpec,
    /// Training loss.
    pub loss: LossKind,
    /// Optimiser state (step, t_eff, η, β).
    pub state: GdState,
    /// Parameter dtype when saved (`f32` / `f64`).
    pub dtype: String,
    /// Named seeds of the run (init, data, groups, …).
    pub seeds: BTreeMap<String, u64>,
    /// Fingerprint of the exact training set (see `Dataset::fingerprint`).
    pub dataset_fingerprint: String,
    /// The full run configuration, as JSON.
    pub config: serde_json::Value,
    /// eoslab version that wrote the file.
    pub eoslab_version: String,
}

impl CheckpointMeta {
    /// Metadata for `gd` with the given run details.
    pub fn for_process(
        gd: &GradientDescent,
        seeds: BTreeMap<String, u64>,
        fingerprint: &str,
        config: serde_json::Value,
    ) -> Self {
        CheckpointMeta {
            spec: gd.model.spec().clone(),
            loss: gd.objective.loss,
            state: gd.state.clone(),
            dtype: dtype_name(gd.model.dtype()).to_string(),
            seeds,
            dataset_fingerprint: fingerprint.to_string(),
            config,
            eoslab_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// A checkpoint read from disk (tensors on the host).
#[derive(Debug)]
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// Run metadata.
    pub meta: CheckpointMeta,
    /// Parameters by state-dict name.
    pub params: BTreeMap<String, Tensor>,
    /// Momentum buffers by parameter name (empty without momentum).
    pub momentum: BTreeMap<String, Tensor>,
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "f64",
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

/// Parse `f32` / `f64`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    Ok(s.parse::<crate::config::Precision>()?.dtype())
}

/// A tensor's values as little-endian bytes in its own dtype (f32 or f64), from any device.
pub(crate) fn to_bytes(t: &Tensor) -> Result<(StDtype, Vec<u8>)> {
    let t = t.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match t.dtype() {
        DType::F64 => (
            StDtype::F64,
            t.to_vec1::<f64>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::F32 => (
            StDtype::F32,
            t.to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        d => {
            return Err(Error::Config(format!(
                "checkpoints store f32 or f64 tensors, not {d:?}"
            )));
        }
    })
}

/// Whether candle can hold a tensor of `shape`: the product of its non-zero dimensions fits in
/// `usize`. safetensors accepts `[0, 2^40, 2^40]` (its element count is 0), but candle's strides
/// of such a shape overflow.
pub(crate) fn shape_fits(shape: &[usize]) -> bool {
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .is_some()
}

fn from_view(path: &Path, name: &str, v: &TensorView) -> Result<Tensor> {
    let shape = v.shape().to_vec();
    if !shape_fits(&shape) {
        return Err(Error::Checkpoint {
            path: path.into(),
            msg: format!("tensor {name} has shape {shape:?}, whose size overflows"),
        });
    }
    let data = v.data();
    let t = match v.dtype() {
        StDtype::F64 => {
            let vals: Vec<f64> = data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            Tensor::from_vec(vals, shape, &Device::Cpu)?
        }
        StDtype::F32 => {
            let vals: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            Tensor::from_vec(vals, shape, &Device::Cpu)?
        }
        d => {
            return Err(Error::Checkpoint {
                path: path.into(),
                msg: format!("tensor {name} has dtype {d:?}; expected F32 or F64"),
            });
        }
    };
    Ok(t)
}

/// Save a process: parameters, momentum buffers and `meta`.
pub fn save(path: &Path, gd: &GradientDescent, meta: &CheckpointMeta) -> Result<()> {
    let mut owned: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, var) in gd.model.params() {
        let (dt, b) = to_bytes(var.as_tensor())?;
        owned.push((name.clone(), dt, var.dims().to_vec(), b));
    }
    if let Some(vel) = &gd.velocity {
        for ((name, _), t) in gd.model.params().iter().zip(vel) {
            let (dt, b) = to_bytes(t)?;
            owned.push((format!("{MOMENTUM_PREFIX}{name}"), dt, t.dims().to_vec(), b));
        }
    }
    let views = owned
        .iter()
        .map(|(n, dt, s, b)| TensorView::new(*dt, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint {
            path: path.into(),
            msg: e.to_string(),
        })?;
    let mut header = HashMap::new();
    header.insert("format".to_string(), FORMAT.to_string());
    header.insert(
        "eoslab".to_string(),
        serde_json::to_string(meta).map_err(|e| Error::Checkpoint {
            path: path.into(),
            msg: e.to_string(),
        })?,
    );
    let bytes = safetensors::serialize(views, Some(header)).map_err(|e| Error::Checkpoint {
        path: path.into(),
        msg: e.to_string(),
    })?;
    write_safetensors_atomic(path, &bytes)
}

impl Checkpoint {
    /// Read and validate a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Checkpoint::from_bytes(path, &bytes)
    }

    /// Parse and validate a checkpoint's bytes exactly as [`Checkpoint::load`] reads the file
    /// at `path`; `path` names the file in errors and is kept as [`Checkpoint::path`].
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
        let err = |msg: String| Error::Checkpoint {
            path: path.into(),
            msg,
        };
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| err(format!("not a safetensors file ({e})")))?;
        let header = md.metadata().clone().unwrap_or_default();
        match header.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => return Err(err(format!("format {f:?}, expected {FORMAT:?}"))),
            None => return Err(err("no eoslab metadata: not written by eoslab".into())),
        }
        let meta: CheckpointMeta = serde_json::from_str(
            header
                .get("eoslab")
                .ok_or_else(|| err("metadata key 'eoslab' missing".into()))?,
        )
        .map_err(|e| err(format!("metadata does not parse: {e}")))?;
        // The architecture comes from the file: check it before deriving shapes from it.
        meta.spec
            .validate()
            .map_err(|e| err(format!("metadata describes no valid architecture: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| err(format!("corrupt tensor data ({e})")))?;
        let (mut params, mut momentum) = (BTreeMap::new(), BTreeMap::new());
        for (name, view) in st.tensors() {
            let t = from_view(path, &name, &view)?;
            match name.strip_prefix(MOMENTUM_PREFIX) {
                Some(p) => momentum.insert(p.to_string(), t),
                None => params.insert(name, t),
            };
        }
        let ck = Checkpoint {
            path: path.into(),
            meta,
            params,
            momentum,
        };
        ck.validate()?;
        Ok(ck)
    }

    /// Check the tensors match the architecture in the metadata; name every mismatch.
    fn validate(&self) -> Result<()> {
        let want: BTreeMap<String, Vec<usize>> =
            self.meta.spec.param_shapes().into_iter().collect();
        let mut problems = Vec::new();
        for (n, s) in &want {
            match self.params.get(n) {
                None => problems.push(format!("missing parameter {n} {s:?}")),
                Some(t) if t.dims() != s.as_slice() => problems.push(format!(
                    "{n}: shape {:?}, architecture needs {s:?}",
                    t.dims()
                )),
                _ => {}
            }
        }
        for n in self.params.keys().filter(|n| !want.contains_key(*n)) {
            problems.push(format!("unexpected tensor {n}"));
        }
        if !self.momentum.is_empty() {
            for (n, s) in &want {
                match self.momentum.get(n) {
                    None => problems.push(format!("momentum buffer for {n} missing")),
                    Some(t) if t.dims() != s.as_slice() => {
                        problems.push(format!("momentum buffer {n}: shape {:?}", t.dims()))
                    }
                    _ => {}
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Checkpoint {
                path: self.path.clone(),
                msg: format!("does not match its architecture: {}", problems.join("; ")),
            })
        }
    }

    /// Copy the parameters (and momentum, counters) into an existing process, after checking
    /// that its architecture is the checkpoint's.
    pub fn restore_into(&self, gd: &mut GradientDescent) -> Result<()> {
        if gd.model.spec() != &self.meta.spec {
            return Err(Error::Checkpoint {
                path: self.path.clone(),
                msg: format!(
                    "architecture {:?} differs from the model's {:?}",
                    self.meta.spec,
                    gd.model.spec()
                ),
            });
        }
        let values: Vec<Tensor> = gd
            .model
            .params()
            .iter()
            .map(|(n, _)| self.params[n].clone())
            .collect();
        gd.model.set_tensors(&values)?;
        gd.velocity = if self.momentum.is_empty() {
            None
        } else {
            let (dev, dt) = (gd.model.device().clone(), gd.model.dtype());
            Some(
                gd.model
                    .params()
                    .iter()
                    .map(|(n, _)| {
                        self.momentum[n]
                            .to_dtype(dt)
                            .and_then(|t| t.to_device(&dev))
                    })
                    .collect::<candle_core::Result<_>>()?,
            )
        };
        gd.state = self.meta.state.clone();
        Ok(())
    }

    /// The model in the checkpoint, on `device` in `dtype`.
    pub fn model(&self, device: &Device, dtype: DType) -> Result<Model> {
        let m = Model::new(
            &self.meta.spec,
            InitSpec {
                scale: 0.0,
                seed: 0,
            },
            device,
            dtype,
        )?;
        let values: Vec<Tensor> = m
            .params()
            .iter()
            .map(|(n, _)| self.params[n].clone())
            .collect();
        m.set_tensors(&values)?;
        Ok(m)
    }

    /// A process resuming from this checkpoint on `objective` (which must be the same data).
    pub fn resume(
        &self,
        objective: Objective,
        device: &Device,
        dtype: DType,
    ) -> Result<GradientDescent> {
        let model = self.model(device, dtype)?;
        let mut gd = GradientDescent::new(
            model,
            objective,
            self.meta.state.lr,
            self.meta.state.momentum,
        )?;
        self.restore_into(&mut gd)?;
        Ok(gd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn meta(spec: ModelSpec) -> CheckpointMeta {
        CheckpointMeta {
            spec,
            loss: LossKind::Mse,
            state: GdState::new(0.1, 0.0),
            dtype: "f32".into(),
            seeds: BTreeMap::new(),
            dataset_fingerprint: "0123456789abcdef".into(),
            config: serde_json::Value::Null,
            eoslab_version: "0".into(),
        }
    }

    /// A checkpoint file's bytes: `meta` in the header, then raw tensor entries without data.
    fn bytes(meta: &CheckpointMeta, tensors: serde_json::Value) -> Vec<u8> {
        let mut h = tensors;
        h["__metadata__"] = serde_json::json!({
            "format": FORMAT,
            "eoslab": serde_json::to_string(meta).unwrap(),
        });
        let h = h.to_string();
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b
    }

    #[test]
    fn architectures_and_shapes_from_the_file_are_checked_before_use() {
        // Each of these panicked (division by zero, multiplication overflow) before the
        // checks (found by fuzz/fuzz_targets/checkpoint.rs).
        let p = Path::new("ck.safetensors");
        let cnn = |pool: usize, input: [usize; 3]| ModelSpec::Cnn {
            input,
            channels: vec![2],
            kernel: 3,
            pool,
            outputs: 2,
            activation: Activation::Relu,
        };
        let huge = 1usize << 40;
        let cases = [
            (
                meta(cnn(0, [1, 4, 4])),
                serde_json::json!({}),
                "no valid architecture",
            ),
            (
                meta(cnn(1, [1, huge, huge])),
                serde_json::json!({}),
                "overflow",
            ),
            (
                meta(ModelSpec::mlp(&[huge, huge, 2], Activation::Tanh)),
                serde_json::json!({}),
                "overflows",
            ),
            (
                meta(ModelSpec::mlp(&[3, 2], Activation::Tanh)),
                serde_json::json!({
                    "net.0.weight": {"dtype": "F32", "shape": [0, huge, huge], "data_offsets": [0, 0]}
                }),
                "tensor net.0.weight has shape [0, 1099511627776, 1099511627776], whose size overflows",
            ),
        ];
        for (m, t, want) in cases {
            let e = Checkpoint::from_bytes(p, &bytes(&m, t))
                .unwrap_err()
                .to_string();
            assert!(e.contains("ck.safetensors") && e.contains(want), "{e}");
        }
        assert!(shape_fits(&[0, huge, 1 << 20]) && !shape_fits(&[0, huge, huge]));
    }
}
