//! The Gauss-Newton split of the Hessian, `H = G + R`, for products by autodiff.
//!
//! For `L(θ) = (1/N) Σ_i ℓ(f_i(θ))`: the Gauss-Newton (GGN) part `G = Jᵀ ∇²ℓ J` (J the Jacobian
//! of the outputs, ∇²ℓ the per-example Hessian of the loss in the outputs, positive
//! semi-definite for MSE and cross-entropy), and the residual (functional) part
//! `R = Σ_i Σ_j ∂ℓ/∂f_ij ∇²f_ij`, which vanishes where every residual `∂ℓ/∂f` does.
//!
//! Both are computed here from candle's graph independently of `H` (not as a difference), so
//! `G + R = H` is a test: `G v = Jᵀ (∇²ℓ (J v))`, with `J v` by the double-backward trick
//! (`J v = ∂/∂u (v · Jᵀ u)` for a dummy `u`) and `Jᵀ w` by one backward; `R v` as the Hessian of
//! `Σ_i c_i · f_i` with the residuals `c_i` held constant. MLPs get both parts in closed form
//! from [`crate::analytic`] instead.
use crate::analytic::Terms;
use crate::autodiff::require_graph;
use crate::loss::{self, LossKind};
use crate::{Error, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

/// Which curvature matrix a product is with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curvature {
    /// The Hessian `H = G + R`.
    #[default]
    Hessian,
    /// The generalised Gauss-Newton matrix `G = Jᵀ ∇²ℓ J` (positive semi-definite).
    GaussNewton,
    /// The residual (functional) part `R = H − G`.
    Residual,
}

impl Curvature {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Curvature::Hessian => "hessian",
            Curvature::GaussNewton => "gauss-newton",
            Curvature::Residual => "residual",
        }
    }
    /// The terms of the closed-form MLP product.
    pub(crate) fn terms(self) -> Terms {
        Terms {
            gauss_newton: self != Curvature::Residual,
            residual: self != Curvature::GaussNewton,
        }
    }
}

impl std::str::FromStr for Curvature {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "h" | "hessian" => Ok(Curvature::Hessian),
            "g" | "ggn" | "gauss-newton" => Ok(Curvature::GaussNewton),
            "r" | "residual" => Ok(Curvature::Residual),
            _ => Err(Error::Config(format!(
                "unknown curvature {s:?} (expected hessian, gauss-newton or residual)"
            ))),
        }
    }
}

/// `∇²ℓ w / N` per example for outputs `out` (detached) and a direction `w` in output space.
fn output_hessian_vp(kind: LossKind, out: &Tensor, w: &Tensor, n: usize) -> Result<Tensor> {
    let inv = 1.0 / n as f64;
    Ok(match kind {
        LossKind::Mse => w.affine(2.0 * inv, 0.0)?,
        LossKind::MseHalf => w.affine(inv, 0.0)?,
        LossKind::CrossEntropy => {
            // ∇²ℓ = diag p − p pᵀ per example.
            let p = loss::log_softmax(out)?.exp()?;
            let pw = (&p * w)?;
            let s = pw.sum_keepdim(1)?;
            (pw - p.broadcast_mul(&s)?)?.affine(inv, 0.0)?
        }
    })
}

/// The residuals `∂L/∂f = ∂ℓ/∂f / N` per example at outputs `out` (detached).
fn residuals(kind: LossKind, out: &Tensor, onehot: &Tensor, n: usize) -> Result<Tensor> {
    let inv = 1.0 / n as f64;
    Ok(match kind {
        LossKind::Mse => (out - onehot)?.affine(2.0 * inv, 0.0)?,
        LossKind::MseHalf => (out - onehot)?.affine(inv, 0.0)?,
        LossKind::CrossEntropy => (loss::log_softmax(out)?.exp()? - onehot)?.affine(inv, 0.0)?,
    })
}

/// The gradient of the scalar `s` with respect to `vars` (zeros where it does not depend).
fn grad_of(s: &Tensor, vars: &[Var]) -> Result<Vec<Tensor>> {
    let gs = s.backward()?;
    vars.iter()
        .map(|var| match gs.get(var.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(var.as_tensor().zeros_like()?),
        })
        .collect()
}

/// `Σ_p (a_p · b_p)` as a scalar tensor (attached where `a` is).
fn pair_sum(a: &[Tensor], b: &[Tensor]) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for (x, y) in a.iter().zip(b) {
        let t = (x * y)?.sum_all()?;
        acc = Some(match acc {
            None => t,
            Some(s) => (s + t)?,
        });
    }
    acc.ok_or_else(|| Error::Numerics("curvature product: no parameters".into()))
}

/// `J v` of one chunk's outputs `out` (attached) by the double-backward trick.
fn jvp(out: &Tensor, vars: &[Var], v: &[Tensor]) -> Result<Tensor> {
    let u = Var::zeros(out.shape(), out.dtype(), out.device())?;
    let jt_u = grad_of(&(out * u.as_tensor())?.sum_all()?, vars)?;
    let s = pair_sum(&jt_u, v)?;
    require_graph(&s, "Jᵀu in the Jacobian-vector product")?;
    let gs = s.backward()?;
    Ok(gs
        .get(u.as_tensor())
        .map(|t| t.detach())
        .unwrap_or(out.zeros_like()?))
}

/// `G v` or `R v` (`which`) summed over chunks, each chunk its outputs and one-hot targets.
pub(super) fn autodiff_vp(
    outputs: &[(Tensor, Tensor)],
    vars: &[Var],
    kind: LossKind,
    n: usize,
    v: &[Tensor],
    which: Curvature,
) -> Result<Vec<Tensor>> {
    let mut acc: Option<Vec<Tensor>> = None;
    for (out, onehot) in outputs {
        require_graph(out, "the model outputs")?;
        let fixed = out.detach();
        let part = match which {
            Curvature::GaussNewton => {
                let w = output_hessian_vp(kind, &fixed, &jvp(out, vars, v)?, n)?;
                grad_of(&(out * w)?.sum_all()?, vars)?
            }
            Curvature::Residual => {
                let c = residuals(kind, &fixed, onehot, n)?;
                let g = grad_of(&(out * c)?.sum_all()?, vars)?;
                // A gradient that does not depend on any parameter adds nothing to R v.
                let (g, w): (Vec<Tensor>, Vec<Tensor>) = g
                    .into_iter()
                    .zip(v.iter().cloned())
                    .filter(|(g, _)| g.track_op())
                    .unzip();
                if g.is_empty() {
                    vars.iter()
                        .map(|var| Ok(var.as_tensor().zeros_like()?))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    grad_of(&pair_sum(&g, &w)?, vars)?
                }
            }
            Curvature::Hessian => {
                return Err(Error::Numerics(
                    "autodiff_vp: the full Hessian goes through the gradient graph".into(),
                ));
            }
        };
        let part: Vec<Tensor> = part.iter().map(|t| t.detach()).collect();
        acc = Some(match acc {
            None => part,
            Some(a) => a
                .iter()
                .zip(&part)
                .map(|(x, y)| x + y)
                .collect::<candle_core::Result<_>>()?,
        });
    }
    acc.ok_or_else(|| Error::Numerics("curvature product: no chunks".into()))
}
