//! Typed run configuration shared by notebooks and the command line.
use crate::data::csv::LabelColumn;
use crate::data::transform::Standardizer;
use crate::data::{Dataset, Reduce, cifar, csv, digits, tensors};
use crate::loss::LossKind;
use crate::model::{Activation, ModelSpec};
use crate::sharpness::SharpnessConfig;
use crate::{Error, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the examples come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataSource {
    /// The shipped UCI digits (8x8, pixels 0..16; scaled to 0..1).
    Digits,
    /// CIFAR-10 binary batches in a directory (pixels scaled to 0..1).
    Cifar10 {
        /// Directory holding `data_batch_{1..5}.bin` and `test_batch.bin`.
        dir: PathBuf,
    },
    /// The shipped CIFAR-10 subset of classes 1 and 9 (1,025 training, 203 test images;
    /// compiled into eoslab, pixels scaled to 0..1).
    #[serde(rename = "cifar10-subset")]
    Cifar10Subset,
    /// MNIST IDX files: a directory holding them, or the images file (pixels / 255).
    Mnist {
        /// The directory, or the `*images-idx3-ubyte[.gz]` file (labels found beside it).
        path: PathBuf,
    },
    /// The shipped MNIST test set (10,000 images 28x28, compiled into eoslab; pixels / 255).
    #[serde(rename = "mnist-test")]
    MnistTest,
    /// A CSV of features and an integer label column (label in the last column).
    Csv {
        /// The file.
        path: PathBuf,
    },
    /// A safetensors file with `x` [n, d] and `y` [n].
    Safetensors {
        /// The file.
        path: PathBuf,
    },
}

/// How inputs are standardised (statistics from the training split only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standardize {
    /// Leave inputs as loaded.
    None,
    /// Per-feature mean 0, std 1 (zero-variance features are only centred).
    PerFeature,
    /// CIFAR-10's published per-channel mean and std (the paper's choice).
    Cifar10Channels,
}

/// Which examples, and how they are prepared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Source of the examples.
    pub source: DataSource,
    /// Classes to keep, relabelled 0..k in this order (`None` = all).
    pub classes: Option<Vec<u32>>,
    /// Training examples per class (`None` = all available).
    pub train_per_class: Option<usize>,
    /// Fraction held out per class as the test set, for sources without a test split.
    pub test_fraction: f64,
    /// Input standardisation.
    pub standardize: Standardize,
    /// Seed of the split and subsampling.
    pub seed: u64,
    /// Image reduction (pooling, grey scale) applied after standardisation.
    #[serde(default)]
    pub reduce: Reduce,
}

impl DataConfig {
    /// Load and prepare `(train, test)`.
    pub fn load(&self) -> Result<(Dataset, Dataset)> {
        let (train, test) = match &self.source {
            DataSource::Digits => {
                let mut d = digits::load()?;
                d.scale(1.0 / 16.0);
                let d = self.keep_classes(d)?;
                d.split_per_class(self.test_fraction, self.seed)?
            }
            DataSource::Cifar10 { dir } => match &self.classes {
                // Read only the wanted classes, then relabel them 0..k in the given order
                // (the loader keeps CIFAR's labels and its 10 outputs).
                Some(c) => {
                    let (train, test) = cifar::load_dir_classes(dir, c)?;
                    (train.select_classes(c)?, test.select_classes(c)?)
                }
                None => cifar::load_dir(dir)?,
            },
            DataSource::Cifar10Subset => {
                let (train, test) = cifar::load_shipped_subset()?;
                match &self.classes {
                    Some(c) => (train.select_classes(c)?, test.select_classes(c)?),
                    None => (
                        train.select_classes(&[1, 9])?,
                        test.select_classes(&[1, 9])?,
                    ),
                }
            }
            // MNIST's own train/test split is two pairs of files; one pair is split here.
            DataSource::Mnist { path } => {
                let d = self.keep_classes(crate::data::mnist::load_path(path)?)?;
                d.split_per_class(self.test_fraction, self.seed)?
            }
            DataSource::MnistTest => {
                let d = self.keep_classes(crate::data::mnist::load_shipped_test()?)?;
                d.split_per_class(self.test_fraction, self.seed)?
            }
            DataSource::Csv { path } => {
                let d = self.keep_classes(csv::load(path, &LabelColumn::Last)?)?;
                d.split_per_class(self.test_fraction, self.seed)?
            }
            DataSource::Safetensors { path } => {
                let d = self.keep_classes(tensors::load(path)?)?;
                d.split_per_class(self.test_fraction, self.seed)?
            }
        };
        let mut train = match self.train_per_class {
            Some(k) => train.subsample_per_class(k, self.seed)?,
            None => train,
        };
        let mut test = test;
        match self.standardize {
            Standardize::None => {}
            Standardize::PerFeature => {
                let s = Standardizer::fit_per_feature(&train);
                s.apply(&mut train)?;
                s.apply(&mut test)?;
            }
            Standardize::Cifar10Channels => {
                let shape = train.image_shape.ok_or_else(|| {
                    Error::Config("cifar10-channels standardisation needs images".into())
                })?;
                let s = Standardizer::fixed_per_channel(
                    &cifar::CIFAR10_MEAN,
                    &cifar::CIFAR10_STD,
                    shape,
                )?;
                s.apply(&mut train)?;
                s.apply(&mut test)?;
            }
        }
        Ok((train.reduced(self.reduce)?, test.reduced(self.reduce)?))
    }

    fn keep_classes(&self, d: Dataset) -> Result<Dataset> {
        match &self.classes {
            Some(c) => d.select_classes(c),
            None => Ok(d),
        }
    }
}

/// Compute device of a run: `cpu` or `cuda:N` (its spelling in configurations and on the
/// command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal (needs a build with `--features cuda`).
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        let bad = || Error::Config(format!("device {s:?}: expected cpu or cuda:N"));
        match s.strip_prefix("cuda") {
            Some("") => Ok(DeviceSpec::Cuda(0)),
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
            None => Err(bad()),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.to_string()))
    }
}

impl DeviceSpec {
    /// Open the device: an error (never a CPU fallback) when this build has no CUDA or the
    /// GPU cannot be opened.
    pub fn open(self) -> Result<Device> {
        let ordinal = match self {
            DeviceSpec::Cpu => return Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => n,
        };
        if !candle_core::utils::cuda_is_available() {
            return Err(Error::Config(format!(
                "device {self}: this eoslab was built without CUDA support (rebuild with `--features cuda`)"
            )));
        }
        Device::new_cuda(ordinal).map_err(|e| {
            let e = e.to_string();
            Error::Config(format!(
                "device cuda:{ordinal}: CUDA could not open it ({}); is there a GPU with a driver \
                 for CUDA 13, and is the ordinal right?",
                e.lines().next().unwrap_or("")
            ))
        })
    }
}

/// Compute device: `cpu` or `cuda:N`, opened.
pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.open()
}

/// Floating-point precision of a run: `f32` or `f64` in configurations and on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (the presets' default: the speed of the paper's runs).
    #[default]
    F32,
    /// 64-bit floats (for checking numerics).
    F64,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s.trim() {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(Error::Config(format!(
                "unsupported dtype {s:?} (expected f32 or f64)"
            ))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

/// Everything one training run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Data.
    pub data: DataConfig,
    /// Hidden widths of the MLP (input and output sizes come from the data).
    pub hidden: Vec<usize>,
    /// Hidden non-linearity.
    pub activation: Activation,
    /// Kaiming-normal multiplier (paper: 0.2).
    pub init_scale: f64,
    /// Training loss.
    pub loss: LossKind,
    /// Step size η.
    pub lr: f64,
    /// Heavy-ball momentum β.
    pub momentum: f64,
    /// Number of gradient-descent steps.
    pub steps: usize,
    /// Sharpness measurement.
    pub sharpness: SharpnessConfig,
    /// Steps before which t* is not searched for (early transients).
    pub burn_in: usize,
    /// `f32` or `f64`.
    pub dtype: Precision,
    /// `cpu` or `cuda:N`.
    pub device: DeviceSpec,
    /// Examples per forward pass (`None` = all).
    pub chunk: Option<usize>,
}

impl RunConfig {
    /// The MLP for a dataset with `d` inputs and `k` classes.
    pub fn model_spec(&self, d: usize, k: usize) -> ModelSpec {
        let mut widths = vec![d];
        widths.extend(&self.hidden);
        widths.push(k);
        ModelSpec::mlp(&widths, self.activation)
    }
    /// Parsed dtype.
    pub fn dtype(&self) -> Result<DType> {
        Ok(self.dtype.dtype())
    }
    /// The opened device.
    pub fn device(&self) -> Result<Device> {
        self.device.open()
    }
}
