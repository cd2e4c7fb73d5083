//! A small convolutional network with average pooling.
//!
//! Pooling is an average written as reshape + mean rather than candle's pooling kernels: its
//! first and second derivatives are then exact (candle 0.11's `max_pool2d` gradient is wrong, and
//! the reshape form needs no special backward at all).
use super::{Activation, Network};
use crate::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `[Conv2d -> act -> AvgPool2d] x blocks -> Flatten -> Linear`.
pub struct Cnn {
    input: [usize; 3],
    convs: Vec<(Tensor, Tensor)>,
    head: (Tensor, Tensor),
    kernel: usize,
    pool: usize,
    activation: Activation,
}

impl Cnn {
    /// Fetch (or create) parameters from `vb` with PyTorch `nn.Sequential` indices.
    pub fn new(
        input: [usize; 3],
        channels: &[usize],
        kernel: usize,
        pool: usize,
        outputs: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (mut c, mut h, mut w) = (input[0], input[1], input[2]);
        let mut convs = Vec::new();
        for (b, &co) in channels.iter().enumerate() {
            let vb = vb.pp(3 * b);
            convs.push((
                vb.get((co, c, kernel, kernel), "weight")?,
                vb.get(co, "bias")?,
            ));
            c = co;
            h /= pool;
            w /= pool;
        }
        let vb = vb.pp(3 * channels.len() + 1);
        let head = (
            vb.get((outputs, c * h * w), "weight")?,
            vb.get(outputs, "bias")?,
        );
        Ok(Cnn {
            input,
            convs,
            head,
            kernel,
            pool,
            activation,
        })
    }
}

/// Average pooling with window = stride = `k` as reshape + mean (exactly differentiable).
fn avg_pool(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    Ok(x.reshape((n, c, h / k, k, w / k, k))?.mean(5)?.mean(3)?)
}

impl Network for Cnn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(0)?;
        let [c, h, w] = self.input;
        let mut z = x.reshape((n, c, h, w))?;
        for (wt, b) in &self.convs {
            z = z.conv2d(wt, self.kernel / 2, 1, 1, 1)?;
            z = z.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?;
            z = self.activation.apply(&z)?;
            z = avg_pool(&z, self.pool)?;
        }
        let z = z.flatten_from(1)?;
        Ok(z.matmul(&self.head.0.t()?)?.broadcast_add(&self.head.1)?)
    }
}
