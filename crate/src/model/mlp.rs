//! A fully connected network with biases.
use super::{Activation, Network};
use crate::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `Linear -> act -> ... -> Linear`, weights `[out, in]` as in PyTorch.
pub struct Mlp {
    layers: Vec<(Tensor, Tensor)>,
    activation: Activation,
}

impl Mlp {
    /// Fetch (or create) the layers' parameters from `vb` (`{2l}.weight`, `{2l}.bias`).
    pub fn new(widths: &[usize], activation: Activation, vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::new();
        for (l, win) in widths.windows(2).enumerate() {
            let vb = vb.pp(2 * l);
            let w = vb.get((win[1], win[0]), "weight")?;
            let b = vb.get(win[1], "bias")?;
            layers.push((w, b));
        }
        Ok(Mlp { layers, activation })
    }
}

impl Network for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (l, (w, b)) in self.layers.iter().enumerate() {
            // At the first layer the input is a constant: skip its gradient (crate::ops).
            h = crate::ops::matmul(&h, &w.t()?)?.broadcast_add(b)?;
            if l < last {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}
