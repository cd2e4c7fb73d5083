//! Curvature of the training loss: exact Hessian-vector products by double backward (and the
//! Gauss-Newton / residual parts of the Hessian), a central finite-difference cross-check in
//! f64, the top eigenpairs by Lanczos, the trace by Hutchinson and Hutch++, the spectral
//! density by stochastic Lanczos quadrature, and all of them at one point ([`spectrum`]).
mod density;
mod krylov;
mod lanczos;
mod spectrum;
mod trace;

pub use crate::objective::Curvature;
pub use density::{Density, DensityConfig, density};
pub use lanczos::{Eigen, LanczosConfig, lanczos};
pub use spectrum::{PartSpectrum, SpectrumConfig, Top, spectrum};
pub use trace::{TraceConfig, TraceEstimate, TraceMethod, trace};

use crate::model::{Model, flatten};
use crate::objective::{GradGraph, Objective};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::cell::Cell;
use std::rc::Rc;

/// The Hessian of an objective at the model's current parameters (or one part of its
/// Gauss-Newton split, see [`HessianOp::part`]), as a linear operator.
///
/// Building it runs one forward and one backward pass and keeps their graph; each product then
/// costs only the second backward pass. It is valid until the parameters change.
pub struct HessianOp<'a> {
    model: &'a Model,
    graph: Rc<GradGraph>,
    which: Curvature,
    products: Rc<Cell<usize>>,
}

impl<'a> HessianOp<'a> {
    /// The Hessian of `objective` at `model`'s parameters.
    pub fn new(model: &'a Model, objective: &Objective) -> Result<Self> {
        Ok(HessianOp {
            model,
            graph: Rc::new(objective.grad_graph(model)?),
            which: Curvature::Hessian,
            products: Rc::new(Cell::new(0)),
        })
    }
    /// The same point's Hessian, Gauss-Newton matrix or residual part, sharing this operator's
    /// graph (and its product count).
    pub fn part(&self, which: Curvature) -> HessianOp<'a> {
        HessianOp {
            model: self.model,
            graph: Rc::clone(&self.graph),
            which,
            products: Rc::clone(&self.products),
        }
    }
    /// Which curvature matrix this operator multiplies by.
    pub fn curvature(&self) -> Curvature {
        self.which
    }
    /// Objective value at these parameters.
    pub fn value(&self) -> f64 {
        self.graph.value
    }
    /// The gradient at these parameters.
    pub fn gradient(&self) -> Result<Vec<Tensor>> {
        self.graph.gradient()
    }
    /// Dimension (number of parameters).
    pub fn dim(&self) -> usize {
        self.model.num_params()
    }
    /// Number of products computed so far.
    pub fn products(&self) -> usize {
        self.products.get()
    }
    /// `H v` (or `G v`, `R v`: see [`HessianOp::part`]) for parameter-shaped `v`.
    pub fn apply(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        self.products.set(self.products.get() + 1);
        self.graph.curvature_vp(v, self.which)
    }
    /// `H v` for a flat `v` (sorted-name order).
    pub fn apply_flat(&self, v: &Tensor) -> Result<Tensor> {
        flatten(&self.apply(&self.model.unflatten(v)?)?)
    }
    /// `uᵀ H u` for parameter-shaped `u`.
    pub fn quadratic_form(&self, u: &[Tensor]) -> Result<f64> {
        crate::ops::dot(u, &self.apply(u)?)
    }
    /// Top-`cfg.k` eigenpairs, optionally warm-started from previous eigenvectors (flat).
    pub fn top_eigen(&self, cfg: &LanczosConfig, start: Option<&[Tensor]>) -> Result<Eigen> {
        lanczos(
            |v| self.apply_flat(v),
            self.dim(),
            self.model.device(),
            self.model.dtype(),
            cfg,
            start,
        )
    }
    /// Trace estimate (Hutchinson or Hutch++) with its standard error.
    pub fn trace(&self, cfg: &TraceConfig) -> Result<TraceEstimate> {
        trace(
            |v| self.apply_flat(v),
            self.dim(),
            self.model.device(),
            self.model.dtype(),
            cfg,
        )
    }
    /// Spectral density by stochastic Lanczos quadrature.
    pub fn density(&self, cfg: &DensityConfig) -> Result<Density> {
        density(
            |v| self.apply_flat(v),
            self.dim(),
            self.model.device(),
            self.model.dtype(),
            cfg,
        )
    }
}

/// One exact Hessian-vector product of `objective` at `model` (parameter-shaped `v`).
pub fn hvp(model: &Model, objective: &Objective, v: &[Tensor]) -> Result<Vec<Tensor>> {
    HessianOp::new(model, objective)?.apply(v)
}

/// Central finite-difference Hessian-vector product (∇L(θ+εv) − ∇L(θ−εv)) / 2ε, for
/// cross-checking. Needs an `f64` model (in f32 it is no better than ~5e-5 relative); `eps` is
/// relative to ‖θ‖/‖v‖. The model's parameters are restored exactly afterwards.
pub fn hvp_finite_difference(
    model: &Model,
    objective: &Objective,
    v: &[Tensor],
    eps: f64,
) -> Result<Vec<Tensor>> {
    if model.dtype() != DType::F64 {
        return Err(Error::Config(
            "finite-difference HVP needs an f64 model".into(),
        ));
    }
    let theta = model
        .tensors()
        .iter()
        .map(|t| t.copy())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let nt = crate::ops::sq_norm(&theta)?.sqrt().max(1.0);
    let nv = crate::ops::sq_norm(v)?.sqrt();
    if nv == 0.0 {
        return Ok(v.to_vec());
    }
    let h = eps * nt / nv;
    let shifted = |sign: f64| -> Result<Vec<Tensor>> {
        let p = theta
            .iter()
            .zip(v)
            .map(|(t, d)| t + (d * (sign * h))?)
            .collect::<candle_core::Result<Vec<_>>>()?;
        model.set_tensors(&p)?;
        Ok(objective.value_and_grad(model)?.1)
    };
    let gp = shifted(1.0);
    let gm = shifted(-1.0);
    model.set_tensors(&theta)?;
    let (gp, gm) = (gp?, gm?);
    Ok(gp
        .iter()
        .zip(&gm)
        .map(|(a, b)| (a - b)? / (2.0 * h))
        .collect::<candle_core::Result<Vec<_>>>()?)
}

/// The dense Hessian (row-major `p x p`, f64), built column by column from exact products.
/// For tiny models and tests only: it costs `p` products and `p²` memory.
pub fn dense_hessian(model: &Model, objective: &Objective) -> Result<Vec<f64>> {
    dense_curvature(model, objective, Curvature::Hessian)
}

/// [`dense_hessian`] of one part of the Gauss-Newton split (or the Hessian itself).
pub fn dense_curvature(model: &Model, objective: &Objective, which: Curvature) -> Result<Vec<f64>> {
    let p = model.num_params();
    let op = HessianOp::new(model, objective)?.part(which);
    let mut out = vec![0.0; p * p];
    for j in 0..p {
        let mut e = vec![0.0f64; p];
        e[j] = 1.0;
        let e = Tensor::from_vec(e, p, model.device())?.to_dtype(model.dtype())?;
        let col: Vec<f64> = op.apply_flat(&e)?.to_dtype(DType::F64)?.to_vec1()?;
        for i in 0..p {
            out[i * p + j] = col[i];
        }
    }
    Ok(out)
}
