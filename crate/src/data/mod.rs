//! Datasets: loading (shipped digits, CIFAR-10 binary batches, MNIST IDX files, CSV,
//! safetensors), class subsets, standardisation, deterministic subsampling, and export of the
//! exact training set of a run.
//!
//! A [`Dataset`] lives on the host as row-major `f64`; it becomes device tensors only when a run
//! starts ([`Dataset::to_tensors`]). Data preparation is cheap next to training, and keeping it
//! in `f64` on the host makes it bit-reproducible across devices.
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

pub mod cifar;
pub mod csv;
pub mod digits;
pub mod mnist;
pub mod reduce;
pub mod tensors;
pub mod transform;

pub use csv::LabelColumn;
pub use reduce::Reduce;
pub use transform::Standardizer;

/// Group id of an ordinary training example (not in any of the paper's groups).
pub const ORDINARY: u8 = 0;

/// A labelled dataset held on the host.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Human-readable name (e.g. `digits[3,8]`).
    pub name: String,
    /// Row-major inputs, `n * d` values.
    pub x: Vec<f64>,
    /// Labels in `0..n_classes`.
    pub y: Vec<u32>,
    /// Group id per example ([`ORDINARY`] unless groups were injected).
    pub group: Vec<u8>,
    /// Number of features per example.
    pub d: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// `(channels, height, width)` when the inputs are images (needed by the CNN).
    pub image_shape: Option<[usize; 3]>,
}

impl Dataset {
    /// Build a dataset, checking shapes and labels.
    pub fn new(
        name: impl Into<String>,
        x: Vec<f64>,
        y: Vec<u32>,
        d: usize,
        n_classes: usize,
    ) -> Result<Self> {
        let name = name.into();
        if d == 0 || !x.len().is_multiple_of(d) || x.len() / d != y.len() {
            return Err(Error::Config(format!(
                "dataset {name}: {} input values do not form {} rows of {d} features",
                x.len(),
                y.len()
            )));
        }
        if let Some(bad) = y.iter().find(|&&c| c as usize >= n_classes) {
            return Err(Error::Config(format!(
                "dataset {name}: label {bad} outside 0..{n_classes}"
            )));
        }
        let n = y.len();
        Ok(Dataset {
            name,
            x,
            y,
            group: vec![ORDINARY; n],
            d,
            n_classes,
            image_shape: None,
        })
    }

    /// Number of examples.
    pub fn n(&self) -> usize {
        self.y.len()
    }

    /// The features of example `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// Inputs `[n, d]` in `dtype` and labels `[n]` as `u32`, on `device`.
    pub fn to_tensors(&self, device: &Device, dtype: DType) -> Result<(Tensor, Tensor)> {
        let x = Tensor::from_slice(&self.x, (self.n(), self.d), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        let y = Tensor::from_slice(&self.y, self.n(), &Device::Cpu)?.to_device(device)?;
        Ok((x, y))
    }

    /// The examples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Dataset {
            name: self.name.clone(),
            x,
            y: idx.iter().map(|&i| self.y[i]).collect(),
            group: idx.iter().map(|&i| self.group[i]).collect(),
            d: self.d,
            n_classes: self.n_classes,
            image_shape: self.image_shape,
        }
    }

    /// A 64-bit FNV-1a fingerprint of inputs, labels and groups, as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&(self.d as u64).to_le_bytes());
        for v in &self.x {
            eat(&v.to_bits().to_le_bytes());
        }
        for v in &self.y {
            eat(&v.to_le_bytes());
        }
        eat(&self.group);
        format!("{h:016x}")
    }
}
