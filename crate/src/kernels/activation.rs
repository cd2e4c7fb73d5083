//! The element-wise non-linearities between layers, evaluated with the crate's own kernels so
//! the forward pass and the closed-form derivatives ([`crate::analytic`]) use one function.
use crate::{Error, Result};
use candle_core::Tensor;
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
            Activation::Tanh => super::tanh(x)?,
            // Written out rather than candle's `gelu`, whose backward uses rounded constants:
            // the gradient would then not be the exact derivative of the forward pass.
            Activation::Gelu => {
                let inner =
                    ((x + (x.powf(3.0)? * 0.044715)?)? * (2.0 / std::f64::consts::PI).sqrt())?;
                ((x * 0.5)? * (super::tanh(&inner)? + 1.0)?)?
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
