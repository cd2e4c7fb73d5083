//! Tensor operations that spare candle's autodiff work it does not need.
//!
//! candle's `matmul` backward always computes the gradient of *both* operands, even when one of
//! them is a constant such as the input batch `x`: at an MLP's first layer that is a GEMM as large
//! as the weight gradient itself, thrown away. In a Hessian-vector product (double backward) the
//! waste doubles: once for the forward product `x Wᵀ`, once for the weight gradient `δᵀ x`.
//!
//! [`matmul`] multiplies like `Tensor::matmul` and, when exactly one operand is constant (it
//! carries no graph: not a variable and not the result of a tracked op), records a custom op
//! whose backward returns the gradient of the other operand only. That gradient is again such a
//! product with the same constant (transposed), so second and higher derivatives stay exact and
//! keep skipping the constant side. The forward pass delegates to the device storage's own
//! matmul (the GEMM candle itself would run), so values are bit-identical to `Tensor::matmul`.
use crate::Result;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, Layout, MetalStorage, Shape, Tensor};

/// Which operand of a product is a constant (needs no gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Constant {
    /// `C = A B` with `A` constant: only `∂/∂B = Aᵀ G` is computed.
    Lhs,
    /// `C = A B` with `B` constant: only `∂/∂A = G Bᵀ` is computed.
    Rhs,
}

/// A 2-D matrix product with one constant operand.
struct ConstMatmul(Constant);

/// `(batch, m, n, k)` and the output shape of a 2-D product `[m, k] x [k, n]`.
fn dims(l1: &Layout, l2: &Layout) -> candle_core::Result<((usize, usize, usize, usize), Shape)> {
    match (l1.dims(), l2.dims()) {
        (&[m, k], &[k2, n]) if k == k2 => Ok(((1, m, n, k), Shape::from((m, n)))),
        (a, b) => Err(candle_core::Error::Msg(format!(
            "eoslab matmul: shapes {a:?} and {b:?} are not a 2-D product"
        ))),
    }
}

impl CustomOp2 for ConstMatmul {
    fn name(&self) -> &'static str {
        match self.0 {
            Constant::Lhs => "matmul-const-lhs",
            Constant::Rhs => "matmul-const-rhs",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (bmnk, shape) = dims(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, l2)?, shape))
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (bmnk, shape) = dims(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, l2)?, shape))
    }

    fn metal_fwd(
        &self,
        s1: &MetalStorage,
        l1: &Layout,
        s2: &MetalStorage,
        l2: &Layout,
    ) -> candle_core::Result<(MetalStorage, Shape)> {
        let (bmnk, shape) = dims(l1, l2)?;
        Ok((s1.matmul(s2, bmnk, l1, l2)?, shape))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok(match self.0 {
            // C = A B, A constant: dB = Aᵀ G, again with a constant left operand.
            Constant::Lhs => (None, Some(grad_product(&a.t()?, grad, Constant::Lhs)?)),
            // C = A B, B constant: dA = G Bᵀ, again with a constant right operand.
            Constant::Rhs => (Some(grad_product(grad, &b.t()?, Constant::Rhs)?), None),
        })
    }
}

/// The product inside a backward pass. Without `CANDLE_GRAD_DO_NOT_DETACH` candle detaches the
/// incoming gradient; then there is nothing to track and a plain product does.
fn grad_product(a: &Tensor, b: &Tensor, constant: Constant) -> candle_core::Result<Tensor> {
    let tracked = match constant {
        Constant::Lhs => b,
        Constant::Rhs => a,
    };
    if tracked.track_op() {
        a.apply_op2(b, ConstMatmul(constant))
    } else {
        a.matmul(b)
    }
}

/// `a · b` for 2-D tensors, as `Tensor::matmul` (same values), except that when exactly one
/// operand is constant its gradient is never computed, in first or higher derivatives.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let t = match (a.track_op(), b.track_op(), a.rank() == 2 && b.rank() == 2) {
        (false, true, true) => a.apply_op2(b, ConstMatmul(Constant::Lhs))?,
        (true, false, true) => a.apply_op2(b, ConstMatmul(Constant::Rhs))?,
        _ => a.matmul(b)?,
    };
    Ok(t)
}

/// Σ‖t‖² over a list of tensors, accumulated in f64.
pub fn sq_norm(ts: &[Tensor]) -> Result<f64> {
    let mut s = 0.0;
    for t in ts {
        s += crate::kernels::dot(t, t)?;
    }
    Ok(s)
}

/// Σ ⟨a_i, b_i⟩ over two lists of tensors, accumulated in f64.
pub fn dot(a: &[Tensor], b: &[Tensor]) -> Result<f64> {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += crate::kernels::dot(x, y)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn rand(shape: (usize, usize), seed: u64) -> Tensor {
        let mut rng = crate::rng::Rng::new(seed);
        let n = shape.0 * shape.1;
        Tensor::from_vec(rng.normals(n), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn forward_is_bit_identical_to_matmul() {
        let x = rand((7, 5), 1);
        let w = Var::from_tensor(&rand((4, 5), 2)).unwrap();
        let ours = matmul(&x, &w.as_tensor().t().unwrap()).unwrap();
        let theirs = x.matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert_eq!(
            ours.to_vec2::<f64>().unwrap(),
            theirs.to_vec2::<f64>().unwrap()
        );
        let ours = matmul(w.as_tensor(), &x.t().unwrap()).unwrap();
        let theirs = w.as_tensor().matmul(&x.t().unwrap()).unwrap();
        assert_eq!(
            ours.to_vec2::<f64>().unwrap(),
            theirs.to_vec2::<f64>().unwrap()
        );
        let f32x = x.to_dtype(DType::F32).unwrap();
        let f32w = w.as_tensor().to_dtype(DType::F32).unwrap();
        let f32w = Var::from_tensor(&f32w).unwrap();
        assert_eq!(
            matmul(&f32x, &f32w.as_tensor().t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            f32x.matmul(&f32w.as_tensor().t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        );
    }

    /// First and second derivatives through the custom op equal those through candle's matmul,
    /// on either side, and no gradient is produced for the constant.
    #[test]
    fn gradients_match_candle_matmul_to_second_order() {
        crate::autodiff::ensure_second_order().unwrap();
        let x = rand((6, 5), 3);
        let w = Var::from_tensor(&rand((4, 5), 4)).unwrap();
        let v = rand((4, 5), 5);
        let xt = x.t().unwrap();
        for lhs_const in [true, false] {
            let hv = |ours: bool| -> (Vec<Vec<f64>>, Vec<Vec<f64>>, bool) {
                let prod = |a: &Tensor, b: &Tensor| {
                    if ours {
                        matmul(a, b).unwrap()
                    } else {
                        a.matmul(b).unwrap()
                    }
                };
                let wt = w.as_tensor();
                // f(W) = Σ tanh(x Wᵀ)², or its transpose form Σ tanh(W xᵀ)².
                let constant = if lhs_const { &x } else { &xt };
                let z = if lhs_const {
                    prod(&x, &wt.t().unwrap())
                } else {
                    prod(wt, &xt)
                };
                let f = z.tanh().unwrap().sqr().unwrap().sum_all().unwrap();
                let gs = f.backward().unwrap();
                let g = gs.get(wt).unwrap().clone();
                let x_has_grad = gs.get(constant).is_some();
                let dot = (&g * &v).unwrap().sum_all().unwrap();
                let h = dot.backward().unwrap().get(wt).unwrap().clone();
                (g.to_vec2().unwrap(), h.to_vec2().unwrap(), x_has_grad)
            };
            let (g0, h0, x0) = hv(false);
            let (g1, h1, x1) = hv(true);
            assert!(x0, "candle computes the constant's gradient");
            assert!(!x1, "the custom op must not");
            for (a, b) in g0.iter().flatten().zip(g1.iter().flatten()) {
                assert!((a - b).abs() <= 1e-14 * a.abs().max(1.0), "grad {a} vs {b}");
            }
            for (a, b) in h0.iter().flatten().zip(h1.iter().flatten()) {
                assert!((a - b).abs() <= 1e-13 * a.abs().max(1.0), "hvp {a} vs {b}");
            }
        }
    }
}
