//! The full-batch training objective: a loss over a fixed dataset on a device, evaluated in
//! chunks so that large datasets fit in memory, with exact gradients and gradient graphs that
//! Hessian-vector products differentiate again.
//!
//! MLPs get their derivatives in closed form ([`crate::analytic`]: backpropagation and the
//! R-operator, exact, without autodiff overhead); other models use candle's autodiff (double
//! backward for HVPs). [`Derivatives::Autodiff`] forces autodiff everywhere, as a reference.
mod split;

pub use split::Curvature;

use crate::analytic::{self, ChunkCache, MlpLayout};
use crate::autodiff::{ensure_second_order, require_graph};
use crate::data::Dataset;
use crate::loss::{self, LossKind};
use crate::model::Model;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// How gradients and Hessian-vector products are computed. Both ways are exact; they differ
/// only in floating-point rounding and speed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Derivatives {
    /// Closed form for MLPs (backpropagation, R-operator), candle autodiff for other models.
    #[default]
    Auto,
    /// candle's autodiff for every model: backward, and double backward for HVPs.
    Autodiff,
}

/// A loss over a fixed set of examples, held on the device.
#[derive(Clone, Debug)]
pub struct Objective {
    /// The loss.
    pub loss: LossKind,
    x: Tensor,
    y: Tensor,
    onehot: Tensor,
    chunk: usize,
    derivatives: Derivatives,
}

/// Per-example results of a full-batch pass: what the step already computed, kept so that
/// group losses and accuracies at every step cost a segmented sum and no extra pass.
#[derive(Clone, Debug)]
pub struct Examples {
    /// Per-example losses `[n]`, in the objective's example order (the model's dtype).
    pub loss: Tensor,
    /// Per-example correctness `[n]` (`u8`: 1 when the largest output is the true class).
    pub correct: Tensor,
}

impl Examples {
    /// Both on the host as `f64` (correctness as 0 or 1).
    pub fn to_host(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        Ok((
            self.loss.to_dtype(DType::F64)?.to_vec1()?,
            self.correct.to_dtype(DType::F64)?.to_vec1()?,
        ))
    }
}

/// Gradient of the objective with what Hessian-vector products need kept (the autodiff graph,
/// or the cached forward and backward quantities of an MLP), at fixed parameters.
pub struct GradGraph {
    inner: Graph,
    /// Objective value at the parameters the graph was built at.
    pub value: f64,
}

enum Graph {
    Autodiff {
        /// Per chunk: that chunk's contribution to the gradient, one tensor per parameter,
        /// attached.
        chunks: Vec<Vec<Tensor>>,
        vars: Vec<candle_core::Var>,
        /// Per chunk: the model outputs (attached) and one-hot targets, for the Gauss-Newton
        /// split.
        outputs: Vec<(Tensor, Tensor)>,
        loss: LossKind,
        n: usize,
    },
    Mlp {
        layout: MlpLayout,
        weights: Vec<(Tensor, Tensor)>,
        caches: Vec<ChunkCache>,
        gradient: Vec<Tensor>,
    },
}

impl Objective {
    /// An objective over inputs `x` `[n, d]` and labels `y` (`u32`, `[n]`); `chunk` examples per
    /// forward pass (`None` = all at once).
    pub fn new(
        x: Tensor,
        y: Tensor,
        n_classes: usize,
        loss: LossKind,
        chunk: Option<usize>,
    ) -> Result<Self> {
        let n = x.dim(0)?;
        if y.dims() != [n] {
            return Err(Error::Config(format!(
                "labels have shape {:?}, expected [{n}]",
                y.dims()
            )));
        }
        if n == 0 {
            return Err(Error::Config("objective over an empty dataset".into()));
        }
        let onehot = loss::one_hot(&y, n_classes, x.dtype())?;
        let chunk = chunk.unwrap_or(n).clamp(1, n);
        Ok(Objective {
            loss,
            x,
            y,
            onehot,
            chunk,
            derivatives: Derivatives::Auto,
        })
    }

    /// An objective over a host dataset, moved to `device` in `dtype`.
    pub fn from_dataset(
        ds: &Dataset,
        device: &Device,
        dtype: DType,
        loss: LossKind,
        chunk: Option<usize>,
    ) -> Result<Self> {
        let (x, y) = ds.to_tensors(device, dtype)?;
        Self::new(x, y, ds.n_classes, loss, chunk)
    }

    /// The same examples under another loss.
    pub fn with_loss(&self, loss: LossKind) -> Self {
        Objective {
            loss,
            ..self.clone()
        }
    }

    /// The examples at `idx` as their own objective (a group, a subset for sharpness).
    pub fn subset(&self, idx: &[usize]) -> Result<Self> {
        if idx.is_empty() {
            return Err(Error::Config("empty subset".into()));
        }
        let ids = Tensor::from_slice(
            &idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            self.x.device(),
        )?;
        Ok(Objective {
            loss: self.loss,
            x: self.x.index_select(&ids, 0)?,
            y: self.y.index_select(&ids, 0)?,
            onehot: self.onehot.index_select(&ids, 0)?,
            chunk: self.chunk.min(idx.len()),
            derivatives: self.derivatives,
        })
    }

    /// The same objective with derivatives computed `how`.
    pub fn with_derivatives(&self, how: Derivatives) -> Self {
        Objective {
            derivatives: how,
            ..self.clone()
        }
    }

    /// How derivatives are computed.
    pub fn derivatives(&self) -> Derivatives {
        self.derivatives
    }

    /// The closed-form layout when this objective's derivatives of `model` are analytic.
    fn analytic(&self, model: &Model) -> Option<MlpLayout> {
        match self.derivatives {
            Derivatives::Auto => MlpLayout::of(model),
            Derivatives::Autodiff => None,
        }
    }

    /// Number of examples.
    pub fn n(&self) -> usize {
        self.y.dim(0).unwrap_or(0)
    }
    /// Inputs `[n, d]`.
    pub fn x(&self) -> &Tensor {
        &self.x
    }
    /// Labels `[n]`.
    pub fn y(&self) -> &Tensor {
        &self.y
    }
    /// One-hot targets `[n, k]`.
    pub fn onehot(&self) -> &Tensor {
        &self.onehot
    }

    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.n();
        (0..n)
            .step_by(self.chunk)
            .map(move |s| (s, self.chunk.min(n - s)))
    }

    /// Model outputs `[n, k]` (no graph).
    pub fn outputs(&self, model: &Model) -> Result<Tensor> {
        let mut outs = Vec::new();
        for (s, len) in self.chunks() {
            outs.push(model.forward(&self.x.narrow(0, s, len)?)?.detach());
        }
        Ok(Tensor::cat(&outs, 0)?)
    }

    /// Per-example losses `[n]` (no graph).
    pub fn per_example(&self, model: &Model) -> Result<Tensor> {
        let out = self.outputs(model)?;
        loss::per_example(self.loss, &out, &self.onehot)
    }

    /// The objective's value.
    pub fn value(&self, model: &Model) -> Result<f64> {
        Ok(self
            .per_example(model)?
            .to_dtype(DType::F64)?
            .mean_all()?
            .to_scalar::<f64>()?)
    }

    /// Value and gradient (one tensor per parameter, sorted-name order, detached).
    pub fn value_and_grad(&self, model: &Model) -> Result<(f64, Vec<Tensor>)> {
        let (value, grad, _) = self.pass(model, false)?;
        Ok((value, grad))
    }

    /// Value, gradient and the per-example losses and correctness of the same pass.
    pub fn value_grad_examples(&self, model: &Model) -> Result<(f64, Vec<Tensor>, Examples)> {
        let (value, grad, ex) = self.pass(model, true)?;
        Ok((value, grad, ex.expect("examples were asked for")))
    }

    /// One full-batch value-and-gradient pass, keeping per-example results when `examples`.
    fn pass(&self, model: &Model, examples: bool) -> Result<(f64, Vec<Tensor>, Option<Examples>)> {
        let mut per = examples.then(PerChunk::default);
        if let Some(layout) = self.analytic(model) {
            let (value, grad, _) =
                self.mlp_pass(&layout, &layout.weights(model), false, per.as_mut())?;
            return Ok((value, grad, per.map(PerChunk::finish).transpose()?));
        }
        ensure_second_order()?;
        let n = self.n();
        let mut value = 0.0;
        let mut grad: Vec<Option<Tensor>> = vec![None; model.params().len()];
        for (s, len) in self.chunks() {
            let out = model.forward(&self.x.narrow(0, s, len)?)?;
            let onehot = self.onehot.narrow(0, s, len)?;
            if let Some(p) = per.as_mut() {
                let o = out.detach();
                p.push(
                    loss::per_example(self.loss, &o, &onehot)?,
                    &o,
                    &self.y.narrow(0, s, len)?,
                )?;
            }
            let l = loss::sum_over(self.loss, &out, &onehot, n)?;
            value += l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let gs = l.backward()?;
            for (acc, (_, var)) in grad.iter_mut().zip(model.params()) {
                if let Some(g) = gs.get(var.as_tensor()) {
                    let g = g.detach();
                    *acc = Some(match acc.take() {
                        None => g,
                        Some(a) => (a + g)?,
                    });
                }
            }
        }
        let grad = grad
            .into_iter()
            .zip(model.params())
            .map(|(g, (_, v))| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok((value, grad, per.map(PerChunk::finish).transpose()?))
    }

    /// The gradient with its graph, for Hessian-vector products at the model's current
    /// parameters. The forward pass and first backward are done once here and reused by every
    /// product (the graph stays valid until the parameters change).
    pub fn grad_graph(&self, model: &Model) -> Result<GradGraph> {
        if let Some(layout) = self.analytic(model) {
            let weights = layout.weights(model);
            let (value, gradient, caches) = self.mlp_pass(&layout, &weights, true, None)?;
            return Ok(GradGraph {
                inner: Graph::Mlp {
                    layout,
                    weights,
                    caches,
                    gradient,
                },
                value,
            });
        }
        ensure_second_order()?;
        let n = self.n();
        let mut value = 0.0;
        let mut chunks = Vec::new();
        let mut outputs = Vec::new();
        for (s, len) in self.chunks() {
            let out = model.forward(&self.x.narrow(0, s, len)?)?;
            let onehot = self.onehot.narrow(0, s, len)?;
            let l = loss::sum_over(self.loss, &out, &onehot, n)?;
            outputs.push((out, onehot));
            value += l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let gs = l.backward()?;
            let mut g = Vec::with_capacity(model.params().len());
            for (_, var) in model.params() {
                g.push(match gs.get(var.as_tensor()) {
                    Some(t) => t.clone(),
                    None => var.as_tensor().zeros_like()?,
                });
            }
            chunks.push(g);
        }
        Ok(GradGraph {
            inner: Graph::Autodiff {
                chunks,
                vars: model.params().iter().map(|(_, v)| v.clone()).collect(),
                outputs,
                loss: self.loss,
                n,
            },
            value,
        })
    }
}

impl Objective {
    /// The closed-form MLP pass over every chunk: value, gradient (chunks summed in order), and
    /// the per-chunk caches for Hessian-vector products when `keep`.
    fn mlp_pass(
        &self,
        layout: &MlpLayout,
        weights: &[(Tensor, Tensor)],
        keep: bool,
        mut per: Option<&mut PerChunk>,
    ) -> Result<(f64, Vec<Tensor>, Vec<ChunkCache>)> {
        let mut value = 0.0;
        let mut gradient: Option<Vec<Tensor>> = None;
        let mut caches = Vec::new();
        for (s, len) in self.chunks() {
            let (v, g, cache, out) = analytic::value_and_grad(
                layout,
                weights,
                &self.x.narrow(0, s, len)?,
                &self.onehot.narrow(0, s, len)?,
                self.loss,
                self.n(),
                keep,
            )?;
            if let Some(p) = per.as_deref_mut() {
                p.push(out.per_example, &out.logits, &self.y.narrow(0, s, len)?)?;
            }
            value += v;
            gradient = Some(sum_into(gradient, g)?);
            caches.extend(cache);
        }
        Ok((value, gradient.expect("at least one chunk"), caches))
    }
}

/// Per-example results gathered chunk by chunk.
#[derive(Default)]
struct PerChunk {
    loss: Vec<Tensor>,
    correct: Vec<Tensor>,
}

impl PerChunk {
    fn push(&mut self, loss: Tensor, logits: &Tensor, y: &Tensor) -> Result<()> {
        self.loss.push(loss);
        self.correct.push(logits.argmax(1)?.eq(y)?);
        Ok(())
    }
    fn finish(self) -> Result<Examples> {
        Ok(Examples {
            loss: Tensor::cat(&self.loss, 0)?,
            correct: Tensor::cat(&self.correct, 0)?,
        })
    }
}

/// `acc + g` element by element (`g` when there is no `acc` yet).
fn sum_into(acc: Option<Vec<Tensor>>, g: Vec<Tensor>) -> Result<Vec<Tensor>> {
    Ok(match acc {
        None => g,
        Some(a) => a
            .iter()
            .zip(&g)
            .map(|(a, b)| a + b)
            .collect::<candle_core::Result<_>>()?,
    })
}

impl GradGraph {
    /// The gradient (detached), one tensor per parameter.
    pub fn gradient(&self) -> Result<Vec<Tensor>> {
        match &self.inner {
            Graph::Mlp { gradient, .. } => Ok(gradient.clone()),
            Graph::Autodiff { chunks, .. } => {
                let mut out: Vec<Tensor> = chunks[0].iter().map(|t| t.detach()).collect();
                for c in &chunks[1..] {
                    for (o, t) in out.iter_mut().zip(c) {
                        *o = (&*o + t.detach())?;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Exact Hessian-vector product `H v`; `v` is parameter-shaped (sorted-name order).
    pub fn hvp(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        self.curvature_vp(v, Curvature::Hessian)
    }

    /// Exact product `C v` with the Hessian or one part of its Gauss-Newton split `H = G + R`
    /// (see [`Curvature`]); `v` is parameter-shaped (sorted-name order).
    pub fn curvature_vp(&self, v: &[Tensor], which: Curvature) -> Result<Vec<Tensor>> {
        let n_params = match &self.inner {
            Graph::Autodiff { vars, .. } => vars.len(),
            Graph::Mlp { gradient, .. } => gradient.len(),
        };
        if v.len() != n_params {
            return Err(Error::Config(format!(
                "hvp: {} tensors for {} parameters",
                v.len(),
                n_params
            )));
        }
        match &self.inner {
            Graph::Autodiff { chunks, vars, .. } if which == Curvature::Hessian => {
                Self::hvp_autodiff(chunks, vars, v)
            }
            Graph::Autodiff {
                vars,
                outputs,
                loss,
                n,
                ..
            } => split::autodiff_vp(outputs, vars, *loss, *n, v, which),
            Graph::Mlp {
                layout,
                weights,
                caches,
                ..
            } => {
                let terms = which.terms();
                let mut out = None;
                for cache in caches {
                    let c = analytic::curvature_vp(layout, weights, cache, v, terms)?;
                    out = Some(sum_into(out, c)?);
                }
                Ok(out.expect("at least one chunk"))
            }
        }
    }

    /// `H v` by double backward through candle's graph of the gradient.
    fn hvp_autodiff(
        chunks: &[Vec<Tensor>],
        vars: &[candle_core::Var],
        v: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut out: Vec<Option<Tensor>> = vec![None; vars.len()];
        for g in chunks {
            // d/dθ (g(θ) · v) = H v, with v held constant.
            let mut dot: Option<Tensor> = None;
            for (gi, vi) in g.iter().zip(v) {
                if !gi.track_op() {
                    continue; // this parameter's gradient does not depend on any parameter
                }
                let term = (gi * vi)?.sum_all()?;
                dot = Some(match dot {
                    None => term,
                    Some(d) => (d + term)?,
                });
            }
            let Some(dot) = dot else {
                // Every gradient is detached: the guard below names the cause.
                require_graph(&g[0], "the gradient")?;
                continue;
            };
            require_graph(&dot, "the gradient")?;
            let hs = dot.backward()?;
            for (acc, var) in out.iter_mut().zip(vars) {
                if let Some(h) = hs.get(var.as_tensor()) {
                    let h = h.detach();
                    *acc = Some(match acc.take() {
                        None => h,
                        Some(a) => (a + h)?,
                    });
                }
            }
        }
        Ok(out
            .into_iter()
            .zip(vars)
            .map(|(h, var)| h.map(Ok).unwrap_or_else(|| var.as_tensor().zeros_like()))
            .collect::<candle_core::Result<Vec<_>>>()?)
    }
}
