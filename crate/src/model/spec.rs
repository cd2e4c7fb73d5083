//! The architecture of a model (an MLP's widths or a CNN's channels), validated before any
//! tensor is built and stored in every checkpoint.
use super::Activation;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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
