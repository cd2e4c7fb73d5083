//! Models: an MLP and a small CNN, named like a PyTorch `nn.Sequential` state dict, initialised
//! from eoslab's own seeded generator, with parameters flattened in a stable sorted-name order.
mod cnn;
mod mlp;
mod spec;

pub use crate::kernels::Activation;
pub use cnn::Cnn;
pub use mlp::Mlp;
pub use spec::ModelSpec;

use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// Initialisation: Kaiming-normal weights (gain √2, fan-in) times `scale`, zero biases.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitSpec {
    /// Multiplier on the Kaiming-normal standard deviation (paper: 0.2).
    pub scale: f64,
    /// Seed; each parameter draws from its own named stream of this seed.
    pub seed: u64,
}

/// A network's forward pass.
pub trait Network {
    /// Outputs `[n, outputs]` for inputs `[n, d]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A model: its spec, its trainable variables (sorted by name) and its forward pass.
pub struct Model {
    spec: ModelSpec,
    varmap: VarMap,
    params: Vec<(String, Var)>,
    net: Box<dyn Network + Send + Sync>,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("spec", &self.spec)
            .field("num_params", &self.num_params())
            .field("device", &self.device)
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl Model {
    /// Build and initialise a model on `device` in `dtype`.
    pub fn new(spec: &ModelSpec, init: InitSpec, device: &Device, dtype: DType) -> Result<Self> {
        spec.validate()?;
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh VarMap");
            for (name, shape) in spec.param_shapes() {
                let numel: usize = shape.iter().product();
                let values = if name.ends_with(".bias") {
                    vec![0.0; numel]
                } else {
                    let fan_in: usize = shape[1..].iter().product();
                    let std = init.scale * (2.0 / fan_in as f64).sqrt();
                    // One stream per parameter: a layer's init does not depend on the others.
                    let mut rng = Rng::stream(init.seed, &name);
                    rng.normals(numel).into_iter().map(|z| z * std).collect()
                };
                let t = Tensor::from_vec(values, shape, &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(device)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Self::from_varmap(spec, varmap, device, dtype)
    }

    fn from_varmap(
        spec: &ModelSpec,
        varmap: VarMap,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let net: Box<dyn Network + Send + Sync> = match spec {
            ModelSpec::Mlp { widths, activation } => {
                Box::new(Mlp::new(widths, *activation, vb.pp("net"))?)
            }
            ModelSpec::Cnn {
                input,
                channels,
                kernel,
                pool,
                outputs,
                activation,
            } => Box::new(Cnn::new(
                *input,
                channels,
                *kernel,
                *pool,
                *outputs,
                *activation,
                vb.pp("net"),
            )?),
        };
        let mut params: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // VarMap is a HashMap: sort so flattening is stable across runs and processes.
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Model {
            spec: spec.clone(),
            varmap,
            params,
            net,
            device: device.clone(),
            dtype,
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    /// Device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Parameter dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Parameters as `(name, var)`, sorted by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }
    /// The underlying candle-nn `VarMap`.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Outputs `[n, outputs]` for inputs `[n, d]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.net.forward(x)
    }

    /// Current parameter values (detached copies are not made: these share storage).
    pub fn tensors(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|(_, v)| v.as_tensor().clone())
            .collect()
    }

    /// All parameters concatenated into one 1-D tensor, in sorted-name order.
    pub fn flatten(&self) -> Result<Tensor> {
        flatten(&self.tensors())
    }

    /// Split a 1-D tensor into parameter-shaped tensors (sorted-name order).
    pub fn unflatten(&self, flat: &Tensor) -> Result<Vec<Tensor>> {
        let n = flat.elem_count();
        if flat.rank() != 1 || n != self.num_params() {
            return Err(Error::Config(format!(
                "unflatten: expected a vector of {} values, got shape {:?}",
                self.num_params(),
                flat.dims()
            )));
        }
        let mut out = Vec::with_capacity(self.params.len());
        let mut off = 0;
        for (_, v) in &self.params {
            let k = v.elem_count();
            out.push(flat.narrow(0, off, k)?.reshape(v.shape())?);
            off += k;
        }
        Ok(out)
    }

    /// Overwrite all parameters with `values` (sorted-name order, matching shapes).
    pub fn set_tensors(&self, values: &[Tensor]) -> Result<()> {
        if values.len() != self.params.len() {
            return Err(Error::Config(format!(
                "expected {} tensors, got {}",
                self.params.len(),
                values.len()
            )));
        }
        for ((name, var), t) in self.params.iter().zip(values) {
            if t.dims() != var.dims() {
                return Err(Error::Config(format!(
                    "{name}: expected shape {:?}, got {:?}",
                    var.dims(),
                    t.dims()
                )));
            }
            var.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Overwrite all parameters from one flat vector.
    pub fn set_flat(&self, flat: &Tensor) -> Result<()> {
        self.set_tensors(&self.unflatten(flat)?)
    }

    /// `(name, tensor)` pairs, PyTorch state-dict style.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// An independent copy with the same spec, values, device and dtype.
    pub fn duplicate(&self) -> Result<Model> {
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh VarMap");
            for (n, v) in &self.params {
                data.insert(n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?);
            }
        }
        Self::from_varmap(&self.spec, varmap, &self.device, self.dtype)
    }
}

/// Concatenate tensors into one flat vector.
pub fn flatten(ts: &[Tensor]) -> Result<Tensor> {
    let flat: Vec<Tensor> = ts
        .iter()
        .map(|t| t.flatten_all())
        .collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_sequential_and_sorted_order() {
        let m = Model::new(
            &ModelSpec::mlp(&[4, 3, 2], Activation::Tanh),
            InitSpec {
                scale: 1.0,
                seed: 0,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let names: Vec<&str> = m.params().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
        );
        assert_eq!(m.num_params(), 4 * 3 + 3 + 3 * 2 + 2);
        assert_eq!(m.spec().num_params(), m.num_params());
    }

    #[test]
    fn init_is_seeded_kaiming_scaled() {
        let spec = ModelSpec::mlp(&[400, 300, 2], Activation::Relu);
        let a = Model::new(
            &spec,
            InitSpec {
                scale: 0.2,
                seed: 5,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let b = Model::new(
            &spec,
            InitSpec {
                scale: 0.2,
                seed: 5,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let c = Model::new(
            &spec,
            InitSpec {
                scale: 0.2,
                seed: 6,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let fa: Vec<f64> = a.flatten().unwrap().to_vec1().unwrap();
        assert_eq!(fa, b.flatten().unwrap().to_vec1::<f64>().unwrap());
        assert_ne!(fa, c.flatten().unwrap().to_vec1::<f64>().unwrap());
        let w: Vec<f64> = a.params()[1]
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let sd = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
        let want = 0.2 * (2.0f64 / 400.0).sqrt();
        assert!((sd / want - 1.0).abs() < 0.01, "std {sd} vs {want}");
        let bias: Vec<f64> = a.params()[0].1.as_tensor().to_vec1().unwrap();
        assert!(bias.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn flatten_roundtrip() {
        let m = Model::new(
            &ModelSpec::mlp(&[3, 5, 2], Activation::Gelu),
            InitSpec {
                scale: 1.0,
                seed: 1,
            },
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let flat = m.flatten().unwrap();
        let doubled = (&flat * 2.0).unwrap();
        m.set_flat(&doubled).unwrap();
        assert_eq!(
            m.flatten().unwrap().to_vec1::<f32>().unwrap(),
            doubled.to_vec1::<f32>().unwrap()
        );
        assert!(m.set_flat(&flat.narrow(0, 0, 3).unwrap()).is_err());
    }

    #[test]
    fn mlp_forward_matches_manual() {
        let m = Model::new(
            &ModelSpec::mlp(&[2, 3, 1], Activation::Tanh),
            InitSpec {
                scale: 1.0,
                seed: 2,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let sd: std::collections::HashMap<String, Vec<f64>> = m
            .state_dict()
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        let (w0, b0, w2, b2) = (
            &sd["net.0.weight"],
            &sd["net.0.bias"],
            &sd["net.2.weight"],
            &sd["net.2.bias"],
        );
        let x = [0.3, -1.2];
        let mut out = b2[0];
        for j in 0..3 {
            let h = (w0[2 * j] * x[0] + w0[2 * j + 1] * x[1] + b0[j]).tanh();
            out += w2[j] * h;
        }
        let got: Vec<Vec<f64>> = m
            .forward(&Tensor::new(&[x], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        assert!((got[0][0] - out).abs() < 1e-14);
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(ModelSpec::mlp(&[3], Activation::Relu).validate().is_err());
        let cnn = ModelSpec::Cnn {
            input: [1, 6, 6],
            channels: vec![4, 4],
            kernel: 3,
            pool: 2,
            outputs: 2,
            activation: Activation::Relu,
        };
        assert!(cnn.validate().is_err(), "6 -> 3 is not divisible by 2");
        assert!("sigmoid".parse::<Activation>().is_err());
    }
}
