//! Losses: MSE in the paper's convention, the ½ convention, and cross-entropy; per example and
//! averaged. Everything is built from ops with exact first and second derivatives in candle.
use crate::{Error, Result};
use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

/// Which loss to train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Per example Σ_j (f_j − onehot_j)², mean over examples (no ½: the paper's sharpness scale).
    Mse,
    /// ½ Σ_j (f_j − onehot_j)², mean over examples (Cohen et al. 2021).
    MseHalf,
    /// Softmax cross-entropy, mean over examples.
    CrossEntropy,
}

impl std::str::FromStr for LossKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mse" => Ok(LossKind::Mse),
            "mse-half" | "mse_half" => Ok(LossKind::MseHalf),
            "ce" | "cross-entropy" | "cross_entropy" => Ok(LossKind::CrossEntropy),
            _ => Err(Error::Config(format!(
                "unknown loss {s:?} (expected mse, mse-half or ce)"
            ))),
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossKind::Mse => "mse",
            LossKind::MseHalf => "mse-half",
            LossKind::CrossEntropy => "ce",
        })
    }
}

/// One-hot targets `[n, k]` in `dtype` for labels `y` (`u32`, `[n]`).
pub fn one_hot(y: &Tensor, k: usize, dtype: DType) -> Result<Tensor> {
    let n = y.dim(0)?;
    let classes = Tensor::arange(0u32, k as u32, y.device())?.reshape((1, k))?;
    Ok(y.reshape((n, 1))?.broadcast_eq(&classes)?.to_dtype(dtype)?)
}

/// Log-softmax over the last dimension. The max is detached: it is only a numerical shift, and
/// keeping it out of the graph keeps the second derivative free of a max-mask term.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let z = logits.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

/// Per-example losses `[n]` from outputs `[n, k]` and one-hot targets `[n, k]`.
pub fn per_example(kind: LossKind, logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        LossKind::Mse => (logits - onehot)?.sqr()?.sum(1)?,
        LossKind::MseHalf => ((logits - onehot)?.sqr()?.sum(1)? * 0.5)?,
        LossKind::CrossEntropy => (log_softmax(logits)? * onehot)?.sum(1)?.neg()?,
    })
}

/// Sum of per-example losses divided by `denom` (the full training-set size when a chunk of it
/// is evaluated, so chunk contributions add up to the full-batch mean).
pub fn sum_over(kind: LossKind, logits: &Tensor, onehot: &Tensor, denom: usize) -> Result<Tensor> {
    Ok((per_example(kind, logits, onehot)?.sum_all()? / denom as f64)?)
}

/// Mean loss over the examples.
pub fn mean(kind: LossKind, logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    sum_over(kind, logits, onehot, logits.dim(0)?)
}

/// Per-example margin: the true class's output minus the largest other output (`[n]`).
pub fn margins(logits: &Tensor, onehot: &Tensor) -> Result<Tensor> {
    let correct = (logits * onehot)?.sum(1)?;
    // Push the true class far down so the max picks the best other class.
    let big = (onehot * 1e30)?;
    let other = (logits - big)?.max(1)?;
    Ok((correct - other)?)
}

/// Fraction of examples whose largest output is the true class.
pub fn accuracy(logits: &Tensor, y: &Tensor) -> Result<f64> {
    let pred = logits.argmax(1)?;
    let ok = pred
        .eq(y)?
        .to_dtype(DType::F64)?
        .mean_all()?
        .to_scalar::<f64>()?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[[f64; 2]]) -> Tensor {
        let flat: Vec<f64> = v.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (v.len(), 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn values_match_hand_computation() {
        let logits = t(&[[0.5, -1.0], [2.0, 0.0]]);
        let y = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let oh = one_hot(&y, 2, DType::F64).unwrap();
        assert_eq!(
            oh.to_vec2::<f64>().unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        // MSE: ex0 (−0.5)² + (−1)² = 1.25; ex1 2² + (−1)² = 5; mean 3.125.
        let mse = mean(LossKind::Mse, &logits, &oh)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((mse - 3.125).abs() < 1e-15);
        let half = mean(LossKind::MseHalf, &logits, &oh)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((half - 1.5625).abs() < 1e-15);
        // CE: ex0 log(1 + e^{−1.5}); ex1 log(1 + e^{2}).
        let ce0 = (1.0 + (-1.5f64).exp()).ln();
        let ce1 = (1.0 + 2.0f64.exp()).ln();
        let ce: Vec<f64> = per_example(LossKind::CrossEntropy, &logits, &oh)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            (ce[0] - ce0).abs() < 1e-14 && (ce[1] - ce1).abs() < 1e-14,
            "{ce:?}"
        );
        let m: Vec<f64> = margins(&logits, &oh).unwrap().to_vec1().unwrap();
        assert_eq!(m, vec![1.5, -2.0]);
        assert_eq!(accuracy(&logits, &y).unwrap(), 0.5);
    }

    #[test]
    fn ce_is_stable_for_large_logits() {
        let logits = t(&[[1000.0, 0.0]]);
        let y = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        let oh = one_hot(&y, 2, DType::F64).unwrap();
        let ce = mean(LossKind::CrossEntropy, &logits, &oh)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((ce - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn parses_names() {
        assert_eq!("ce".parse::<LossKind>().unwrap(), LossKind::CrossEntropy);
        assert_eq!("MSE".parse::<LossKind>().unwrap(), LossKind::Mse);
        assert!("hinge".parse::<LossKind>().is_err());
    }
}
