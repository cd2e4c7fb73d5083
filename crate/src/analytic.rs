//! Closed-form first and second derivatives of an MLP objective: the gradient by backpropagation
//! and exact Hessian-vector products by Pearlmutter's R-operator (forward-over-reverse), written
//! out layer by layer with plain tensor operations.
//!
//! This computes the same quantities as candle's reverse-over-reverse double backward (both are
//! exact: no finite differences, no Gauss-Newton approximation; they differ only in floating-point
//! rounding, see `tests/curvature.rs`), with none of the autodiff bookkeeping: no graph nodes, no
//! zero-initialised gradient accumulators, no gradient for the constant input, and every product
//! on the cached forward and backward quantities of the point it is taken at. It is what
//! [`crate::objective::Objective`] uses for MLPs; other models use candle's autodiff.
//!
//! Notation (one chunk of m examples, N = the objective's total number of examples):
//! `h_0 = x`, `a_l = h_{l-1} W_lᵀ + b_l`, `h_l = σ(a_l)` (hidden layers), `out = a_L`,
//! loss `L = (1/N) Σ_i ℓ(out_i)`. Backward: `δ_L = ∂L/∂out`, `∂L/∂W_l = δ_lᵀ h_{l-1}`,
//! `∂L/∂b_l = Σ_i δ_l`, `d_{l-1} = δ_l W_l`, `δ_{l-1} = d_{l-1} ⊙ σ'(a_{l-1})`.
//! For a direction (V_l, c_l) the R-operator R{·} = d/dε (·)(θ + εv) at ε = 0 gives
//! `R a_l = R h_{l-1} W_lᵀ + h_{l-1} V_lᵀ + c_l`, `R h_l = σ'(a_l) ⊙ R a_l`,
//! `R δ_L = ∇²ℓ · R out / N`, `R{∂L/∂W_l} = Rδ_lᵀ h_{l-1} + δ_lᵀ R h_{l-1}`,
//! `R{∂L/∂b_l} = Σ_i Rδ_l`, `R d_{l-1} = Rδ_l W_l + δ_l V_l`,
//! `R δ_{l-1} = R d_{l-1} ⊙ σ'(a_{l-1}) + (d_{l-1} ⊙ σ''(a_{l-1})) ⊙ R a_{l-1}`,
//! and `H v = (R{∂L/∂W_l}, R{∂L/∂b_l})`.
use crate::kernels as k;
use crate::loss::{self, LossKind};
use crate::model::{Activation, Model, ModelSpec};
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// Where an MLP's layers sit in the model's sorted parameter list.
#[derive(Clone, Debug)]
pub(crate) struct MlpLayout {
    /// Per layer, the indices of its weight `[out, in]` and bias `[out]` in `Model::params()`.
    layers: Vec<(usize, usize)>,
    activation: Activation,
    n_params: usize,
}

impl MlpLayout {
    /// The layout of `model` if it is an MLP, `None` for other architectures.
    pub(crate) fn of(model: &Model) -> Option<MlpLayout> {
        let ModelSpec::Mlp { widths, activation } = model.spec() else {
            return None;
        };
        let index = |name: String| model.params().iter().position(|(n, _)| *n == name);
        let layers = (0..widths.len() - 1)
            .map(|l| {
                Some((
                    index(format!("net.{}.weight", 2 * l))?,
                    index(format!("net.{}.bias", 2 * l))?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(MlpLayout {
            layers,
            activation: *activation,
            n_params: model.params().len(),
        })
    }

    /// The current weights and biases per layer, detached (sharing storage with the model).
    pub(crate) fn weights(&self, model: &Model) -> Vec<(Tensor, Tensor)> {
        let p = model.params();
        self.layers
            .iter()
            .map(|&(w, b)| (p[w].1.as_tensor().detach(), p[b].1.as_tensor().detach()))
            .collect()
    }
}

/// Cached quantities of one chunk at the point the gradient was taken, for R-operator products.
pub(crate) struct ChunkCache {
    /// Input of each layer: `h_0 = x`, …, `h_{L-1}`.
    inputs: Vec<Tensor>,
    /// `σ'(a_l)` per hidden layer.
    slope: Vec<Tensor>,
    /// `d_l ⊙ σ''(a_l)` per hidden layer (`None` for ReLU, whose σ'' vanishes).
    curvature: Vec<Option<Tensor>>,
    /// `δ_l` per layer.
    deltas: Vec<Tensor>,
    /// Softmax probabilities of the outputs (cross-entropy only).
    probs: Option<Tensor>,
    /// The loss and the objective's total number of examples N.
    loss: LossKind,
    denom: usize,
}

/// The chunk's outputs and per-example losses, as computed on the way to its gradient.
pub(crate) struct ChunkOutputs {
    /// Model outputs `[m, k]`.
    pub logits: Tensor,
    /// Per-example losses `[m]`.
    pub per_example: Tensor,
}

/// Per-example losses, loss value (their sum divided by `denom`), `∂L/∂out`, and the softmax
/// for CE.
fn loss_head(
    kind: LossKind,
    out: &Tensor,
    onehot: &Tensor,
    denom: usize,
) -> Result<(Tensor, f64, Tensor, Option<Tensor>)> {
    let per_example = loss::per_example(kind, out, onehot)?;
    let value = per_example
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        / denom as f64;
    let inv = 1.0 / denom as f64;
    let (delta, probs) = match kind {
        LossKind::Mse => ((out - onehot)?.affine(2.0 * inv, 0.0)?, None),
        LossKind::MseHalf => ((out - onehot)?.affine(inv, 0.0)?, None),
        LossKind::CrossEntropy => {
            // ∂/∂o −Σ_j t_j log softmax(o)_j = softmax(o) − t (one-hot rows sum to 1).
            let p = loss::log_softmax(out)?.exp()?;
            ((&p - onehot)?.affine(inv, 0.0)?, Some(p))
        }
    };
    Ok((per_example, value, delta, probs))
}

/// Loss value and gradient (sorted-name parameter order) of one chunk, plus the cache for
/// Hessian-vector products when `keep`, and the chunk's outputs.
pub(crate) fn value_and_grad(
    layout: &MlpLayout,
    weights: &[(Tensor, Tensor)],
    x: &Tensor,
    onehot: &Tensor,
    kind: LossKind,
    denom: usize,
    keep: bool,
) -> Result<(f64, Vec<Tensor>, Option<ChunkCache>, ChunkOutputs)> {
    let n_layers = weights.len();
    let mut inputs = Vec::with_capacity(n_layers);
    let mut slope = Vec::with_capacity(n_layers - 1);
    let mut second = Vec::with_capacity(n_layers - 1);
    let mut h = x.clone();
    for (l, (w, b)) in weights.iter().enumerate() {
        let z = k::matmul(&[(k::n(&h), k::t(w))])?;
        inputs.push(h);
        if l + 1 == n_layers {
            h = k::bias_act(&z, b, None, false)?.0;
        } else {
            let (next, s1, s2) = k::bias_act(&z, b, Some(layout.activation), keep)?;
            slope.push(s1.expect("an activation has a slope"));
            second.push(s2);
            h = next;
        }
    }
    let (per_example, value, mut delta, probs) = loss_head(kind, &h, onehot, denom)?;
    let mut grads: Vec<Option<Tensor>> = vec![None; layout.n_params];
    let mut deltas = vec![None; n_layers];
    let mut curvature = vec![None; n_layers - 1];
    for l in (0..n_layers).rev() {
        let (wi, bi) = layout.layers[l];
        grads[wi] = Some(k::matmul(&[(k::t(&delta), k::n(&inputs[l]))])?);
        grads[bi] = Some(k::col_sum(&delta)?);
        if l > 0 {
            let d = k::matmul(&[(k::n(&delta), k::n(&weights[l].0))])?;
            let (next, curv) = k::mul_pair(&d, &slope[l - 1], second[l - 1].as_ref())?;
            curvature[l - 1] = curv;
            deltas[l] = Some(delta);
            delta = next;
        } else {
            deltas[l] = Some(delta.clone());
        }
    }
    let grads = grads
        .into_iter()
        .map(|g| g.ok_or_else(|| Error::Numerics("MLP gradient: a parameter has no layer".into())))
        .collect::<Result<Vec<_>>>()?;
    let cache = keep.then(|| ChunkCache {
        inputs,
        slope,
        curvature,
        deltas: deltas
            .into_iter()
            .map(|d| d.expect("every layer visited"))
            .collect(),
        probs,
        loss: kind,
        denom,
    });
    let outputs = ChunkOutputs {
        logits: h,
        per_example,
    };
    Ok((value, grads, cache, outputs))
}

/// Which terms of the Hessian a product includes. `H = G + R`: the Gauss-Newton part
/// `G = Jᵀ ∇²ℓ J` enters the R-backward only through `R δ_L`; the residual (functional) part `R`
/// only through the terms that carry `δ_l` (`δ_lᵀ R h`, `δ_l V_l`, `d ⊙ σ'' ⊙ R a`). The
/// R-backward is linear in these sources, so dropping one set gives the other part exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Terms {
    /// Include `Jᵀ ∇²ℓ J v`.
    pub gauss_newton: bool,
    /// Include the residual terms.
    pub residual: bool,
}

/// This chunk's contribution to `C v` (sorted-name parameter order, `v` parameter-shaped) for
/// the part `terms` of the Hessian (both terms: `H v`).
pub(crate) fn curvature_vp(
    layout: &MlpLayout,
    weights: &[(Tensor, Tensor)],
    cache: &ChunkCache,
    v: &[Tensor],
    terms: Terms,
) -> Result<Vec<Tensor>> {
    let n_layers = weights.len();
    // R-forward: R a_l and R h_l.
    let mut r_pre: Vec<Tensor> = Vec::with_capacity(n_layers);
    let mut r_hidden: Vec<Tensor> = Vec::with_capacity(n_layers - 1);
    for (l, (w, _)) in weights.iter().enumerate() {
        let (wi, bi) = layout.layers[l];
        let vw = v[wi].contiguous()?;
        let mut terms = vec![(k::n(&cache.inputs[l]), k::t(&vw))];
        if l > 0 {
            terms.push((k::n(&r_hidden[l - 1]), k::t(w)));
        }
        let p = k::matmul(&terms)?;
        let (ra, rh) = k::bias_mul(&p, &v[bi].contiguous()?, cache.slope.get(l))?;
        r_hidden.extend(rh);
        r_pre.push(ra);
    }
    // R δ_L = ∇²ℓ R out / N.
    let r_out = &r_pre[n_layers - 1];
    let inv = 1.0 / cache.denom as f64;
    let mut r_delta = match (cache.loss, &cache.probs) {
        _ if !terms.gauss_newton => r_out.zeros_like()?,
        // MSE: ∇²ℓ = 2 I (paper convention) or I (½ convention).
        (LossKind::Mse, _) => r_out.affine(2.0 * inv, 0.0)?,
        (LossKind::MseHalf, _) => r_out.affine(inv, 0.0)?,
        // Cross-entropy: ∇²ℓ = diag p − p pᵀ per example.
        (LossKind::CrossEntropy, Some(p)) => {
            let pr = (p * r_out)?;
            let s = pr.sum_keepdim(1)?;
            (pr - p.broadcast_mul(&s)?)?.affine(inv, 0.0)?
        }
        (LossKind::CrossEntropy, None) => {
            return Err(Error::Numerics(
                "MLP HVP: cross-entropy cache without softmax".into(),
            ));
        }
    };
    // R-backward.
    let mut out: Vec<Option<Tensor>> = vec![None; layout.n_params];
    for l in (0..n_layers).rev() {
        let (wi, bi) = layout.layers[l];
        let delta = &cache.deltas[l];
        let mut prods = vec![(k::t(&r_delta), k::n(&cache.inputs[l]))];
        if l > 0 && terms.residual {
            prods.push((k::t(delta), k::n(&r_hidden[l - 1])));
        }
        out[wi] = Some(k::matmul(&prods)?);
        out[bi] = Some(k::col_sum(&r_delta)?);
        if l > 0 {
            let vw = v[wi].contiguous()?;
            let mut prods = vec![(k::n(&r_delta), k::n(&weights[l].0))];
            if terms.residual {
                prods.push((k::n(delta), k::n(&vw)));
            }
            let rd = k::matmul(&prods)?;
            let curv = cache.curvature[l - 1]
                .as_ref()
                .filter(|_| terms.residual)
                .map(|c| (c, &r_pre[l - 1]));
            r_delta = k::mul_add(&rd, &cache.slope[l - 1], curv)?;
        }
    }
    out.into_iter()
        .map(|g| g.ok_or_else(|| Error::Numerics("MLP HVP: a parameter has no layer".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::hessian::HessianOp;
    use crate::loss::LossKind;
    use crate::model::{Activation, InitSpec, Model, ModelSpec};
    use crate::objective::Objective;
    use crate::ops::{dot, sq_norm};
    use crate::rng::Rng;
    use candle_core::{DType, Device, Tensor};

    /// The device-agnostic fallback (plain candle operations, what runs off the CPU) computes the
    /// same gradients and HVPs as the CPU kernels.
    #[test]
    fn generic_fallback_matches_cpu_kernels() {
        let mut rng = Rng::new(3);
        for act in [Activation::Relu, Activation::Tanh, Activation::Gelu] {
            for loss in [LossKind::Mse, LossKind::MseHalf, LossKind::CrossEntropy] {
                let model = Model::new(
                    &ModelSpec::mlp(&[6, 9, 7, 3], act),
                    InitSpec {
                        scale: 1.0,
                        seed: 4,
                    },
                    &Device::Cpu,
                    DType::F64,
                )
                .unwrap();
                let n = 300;
                let x = Tensor::from_vec(rng.normals(n * 6), (n, 6), &Device::Cpu).unwrap();
                let y: Vec<u32> = (0..n).map(|_| rng.below(3) as u32).collect();
                let y = Tensor::from_vec(y, n, &Device::Cpu).unwrap();
                let obj = Objective::new(x, y, 3, loss, Some(128)).unwrap();
                let v: Vec<Tensor> = model
                    .params()
                    .iter()
                    .map(|(_, p)| {
                        Tensor::from_vec(rng.normals(p.elem_count()), p.shape(), &Device::Cpu)
                            .unwrap()
                    })
                    .collect();
                let run = || {
                    let (l, g) = obj.value_and_grad(&model).unwrap();
                    let op = HessianOp::new(&model, &obj).unwrap();
                    (l, g, op.apply(&v).unwrap())
                };
                let (l1, g1, h1) = run();
                let prev = crate::kernels::force_generic(true);
                let (l2, g2, h2) = run();
                crate::kernels::force_generic(prev);
                let rel = |a: &[Tensor], b: &[Tensor]| {
                    let d: Vec<Tensor> = a.iter().zip(b).map(|(x, y)| (x - y).unwrap()).collect();
                    (sq_norm(&d).unwrap() / sq_norm(b).unwrap()).sqrt()
                };
                let what = format!("{act:?}/{loss:?}");
                assert!((l1 - l2).abs() <= 1e-14 * l2.abs(), "{what}: {l1} vs {l2}");
                assert!(rel(&g1, &g2) < 1e-13, "{what}: gradient");
                assert!(rel(&h1, &h2) < 1e-12, "{what}: HVP");
                assert!(dot(&h1, &v).unwrap().is_finite());
            }
        }
    }
}
