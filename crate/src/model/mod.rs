//! Models: an MLP and a small CNN, named like a PyTorch `nn.Sequential` state dict, initialised
//! from eoslab's own seeded generator, with parameters flattened in a stable sorted-name order.
mod cnn;
mod mlp;

pub use cnn::Cnn;
pub use mlp::Mlp;

use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

/// Element-wise non-linearity between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// GELU, tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))), twice differentiable.
    Gelu,
}

impl Activation {
    /// Apply the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            // eoslab's tanh: vectorised on the CPU (candle's calls the C library per element),
            // the same function the closed-form MLP derivatives use (crate::kernels).
            Activation::Tanh => crate::kernels::tanh(x)?,
            // Written out rather than candle's `gelu`, whose backward uses rounded constants:
            // the gradient would then not be the exact derivative of the forward pass.
            Activation::Gelu => {
                let inner =
                    ((x + (x.powf(3.0)? * 0.044715)?)? * (2.0 / std::f64::consts::PI).sqrt())?;
                ((x * 0.5)? * (crate::kernels::tanh(&inner)? + 1.0)?)?
            }
        })
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            "gelu" => Ok(Activation::Gelu),
            _ => Err(Error::Config(format!(
                "unknown activation {s:?} (expected relu, tanh or gelu)"
            ))),
        }
    }
}

/// The architecture of a model, stored in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelSpec {
    /// Fully connected network `widths[0] -> widths[1] -> ... -> widths[last]`.
    Mlp {
        /// Layer widths including input and output (paper: `[3072, 512, 512, 2]`).
        widths: Vec<usize>,
        /// Hidden non-linearity.
        activation: Activation,
    },
    /// Convolution blocks (conv `kernel`x`kernel`, same padding, activation, average pooling)
    /// followed by one linear layer.
    Cnn {
        /// Input image `(channels, height, width)`.
        input: [usize; 3],
        /// Output channels of each conv block.
        channels: Vec<usize>,
        /// Odd kernel size.
        kernel: usize,
        /// Average-pooling window (and stride) after each block.
        pool: usize,
        /// Number of outputs.
        outputs: usize,
        /// Hidden non-linearity.
        activation: Activation,
    },
}

impl ModelSpec {
    /// An MLP spec.
    pub fn mlp(widths: &[usize], activation: Activation) -> Self {
        ModelSpec::Mlp {
            widths: widths.to_vec(),
            activation,
        }
    }

    /// Number of inputs per example.
    pub fn input_dim(&self) -> usize {
        match self {
            ModelSpec::Mlp { widths, .. } => widths[0],
            ModelSpec::Cnn { input, .. } => input.iter().product(),
        }
    }

    /// Number of outputs.
    pub fn output_dim(&self) -> usize {
        match self {
            ModelSpec::Mlp { widths, .. } => *widths.last().unwrap_or(&0),
            ModelSpec::Cnn { outputs, .. } => *outputs,
        }
    }

    /// Check the spec describes a buildable network.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelSpec::Mlp { widths, .. } => {
                if widths.len() < 2 || widths.contains(&0) {
                    return Err(Error::Config(format!(
                        "MLP widths {widths:?}: need >= 2 positive widths"
                    )));
                }
            }
            ModelSpec::Cnn {
                input,
                channels,
                kernel,
                pool,
                outputs,
                ..
            } => {
                if kernel % 2 == 0
                    || *pool == 0
                    || *outputs == 0
                    || input.contains(&0)
                    || channels.contains(&0)
                {
                    return Err(Error::Config(format!(
                        "CNN spec {self:?}: odd kernel, positive sizes required"
                    )));
                }
                let (mut h, mut w) = (input[1], input[2]);
                for _ in channels {
                    if h % pool != 0 || w % pool != 0 {
                        return Err(Error::Config(format!(
                            "CNN spec: feature map {h}x{w} is not divisible by the pooling window {pool}"
                        )));
                    }
                    h /= pool;
                    w /= pool;
                }
                // The flattened features of the last block feed the linear layer.
                let c = channels.last().unwrap_or(&input[0]);
                if c.checked_mul(h).and_then(|ch| ch.checked_mul(w)).is_none()
                    || input
                        .iter()
                        .try_fold(1usize, |a, &b| a.checked_mul(b))
                        .is_none()
                {
                    return Err(Error::Config(format!(
                        "CNN spec {self:?}: the feature sizes overflow"
                    )));
                }
            }
        }
        // A spec read from a file (a checkpoint's metadata) may claim any sizes: every
        // parameter count, and their sum, must be representable.
        let total = self.param_shapes().iter().try_fold(0usize, |sum, (_, s)| {
            s.iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .and_then(|k| sum.checked_add(k))
        });
        if total.is_none() {
            return Err(Error::Config(format!(
                "model spec {self:?}: the number of parameters overflows"
            )));
        }
        Ok(())
    }

    /// Parameter names and shapes in construction order (PyTorch `nn.Sequential` naming).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        match self {
            ModelSpec::Mlp { widths, .. } => {
                for (l, win) in widths.windows(2).enumerate() {
                    // Sequential index: Linear at 0, 2, 4, ... with activations between.
                    let i = 2 * l;
                    out.push((format!("net.{i}.weight"), vec![win[1], win[0]]));
                    out.push((format!("net.{i}.bias"), vec![win[1]]));
                }
            }
            ModelSpec::Cnn {
                input,
                channels,
                kernel,
                pool,
                outputs,
                ..
            } => {
                let (mut c, mut h, mut w) = (input[0], input[1], input[2]);
                for (b, &co) in channels.iter().enumerate() {
                    // Sequential: Conv2d, activation, AvgPool2d per block.
                    let i = 3 * b;
                    out.push((format!("net.{i}.weight"), vec![co, c, *kernel, *kernel]));
                    out.push((format!("net.{i}.bias"), vec![co]));
                    c = co;
                    h /= pool;
                    w /= pool;
                }
                // Then Flatten, then Linear.
                let i = 3 * channels.len() + 1;
                out.push((format!("net.{i}.weight"), vec![*outputs, c * h * w]));
                out.push((format!("net.{i}.bias"), vec![*outputs]));
            }
        }
        out
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

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
