//! The trace of a symmetric operator from matrix-vector products: Hutchinson's estimator and
//! Hutch++ (Meyer, Musco, Musco, Woodruff 2021), each with a standard error.
//!
//! Hutchinson: `tr A ≈ (1/m) Σ zᵢᵀ A zᵢ` over Rademacher probes `zᵢ`; its variance is
//! `2 (‖A‖_F² − Σ A_jj²) / m`, dominated by the few large eigenvalues of a trained network's
//! Hessian. Hutch++ spends a third of the products on a sketch `Q = orth(A S)` of that top
//! subspace, takes its trace exactly (`tr Qᵀ A Q`, another third) and runs Hutchinson only on
//! the deflated rest `(I − QQᵀ) A (I − QQᵀ)` (the last third); its error falls as `1/m` rather
//! than `1/√m` once the sketch holds the outliers.
use super::krylov::{Host, Krylov, OnDevice, cgs2};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceMethod {
    /// Plain Hutchinson with Rademacher probes.
    Hutchinson,
    /// Hutch++: exact trace of a sketched top subspace plus Hutchinson on the rest.
    HutchPlusPlus,
}

impl std::str::FromStr for TraceMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hutchinson" => Ok(TraceMethod::Hutchinson),
            "hutch++" | "hutchpp" | "hutch-plus-plus" => Ok(TraceMethod::HutchPlusPlus),
            _ => Err(Error::Config(format!(
                "unknown trace method {s:?} (expected hutchinson or hutch++)"
            ))),
        }
    }
}

/// Estimator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceConfig {
    /// The estimator.
    pub method: TraceMethod,
    /// Operator products to spend (Hutch++: at least 3, used in thirds).
    pub products: usize,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            method: TraceMethod::HutchPlusPlus,
            products: 90,
            seed: 0,
        }
    }
}

/// A trace estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEstimate {
    /// The estimator used.
    pub method: TraceMethod,
    /// Estimated trace.
    pub estimate: f64,
    /// Standard error of `estimate` (sample standard deviation of the Hutchinson terms / √m;
    /// the sketched part of Hutch++ is exact and adds none).
    pub std_error: f64,
    /// Hutch++: the exactly computed trace of the sketched subspace (`None` for Hutchinson).
    pub sketched: Option<f64>,
    /// Operator products used.
    pub products: usize,
}

/// Estimate the trace of the symmetric operator `op` on vectors of length `dim`.
pub fn trace(
    op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    device: &Device,
    dtype: DType,
    cfg: &TraceConfig,
) -> Result<TraceEstimate> {
    let (device, dtype) = (device.clone(), dtype);
    if device.is_cpu() {
        trace_in(&Host { device, dtype }, op, dim, cfg)
    } else {
        trace_in(&OnDevice { device, dtype }, op, dim, cfg)
    }
}

/// A Rademacher vector (entries ±1), 64 signs from each draw of the generator.
pub(super) fn rademacher(dim: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(dim);
    while out.len() < dim {
        let bits = rng.next_u64();
        let take = (dim - out.len()).min(64);
        out.extend((0..take).map(|i| if bits >> i & 1 == 0 { -1.0 } else { 1.0 }));
    }
    out
}

/// Mean and standard error of the mean.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let m = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / m;
    if xs.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0);
    (mean, (var / m).sqrt())
}

fn trace_in<K: Krylov>(
    space: &K,
    mut op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    cfg: &TraceConfig,
) -> Result<TraceEstimate> {
    let mut rng = Rng::stream(cfg.seed, "trace");
    let mut used = 0;
    let mut apply = |v: &K::V| -> Result<K::V> {
        used += 1;
        let w = space.load(&op(&space.operand(v)?)?)?;
        if space.len(&w) != dim {
            return Err(Error::Numerics(format!(
                "trace: operator returned {} values for dimension {dim}",
                space.len(&w)
            )));
        }
        Ok(w)
    };
    let (estimate, std_error, sketched) = match cfg.method {
        TraceMethod::Hutchinson => {
            if cfg.products < 2 {
                return Err(Error::Config(format!(
                    "Hutchinson trace needs at least 2 products for a standard error, got {}",
                    cfg.products
                )));
            }
            let mut terms = Vec::with_capacity(cfg.products);
            for _ in 0..cfg.products {
                let z = space.upload(rademacher(dim, &mut rng))?;
                terms.push(space.dot(&z, &apply(&z)?)?);
            }
            let (m, se) = mean_se(&terms);
            (m, se, None)
        }
        TraceMethod::HutchPlusPlus => {
            let third = cfg.products / 3;
            if third == 0 {
                return Err(Error::Config(format!(
                    "Hutch++ needs at least 3 products, got {}",
                    cfg.products
                )));
            }
            // Sketch: Q = orth(A S), dropping directions already spanned (rank < third).
            let mut q: Vec<K::V> = Vec::new();
            for _ in 0..third.min(dim) {
                let s = space.upload(rademacher(dim, &mut rng))?;
                let mut w = apply(&s)?;
                let before = space.norm(&w)?;
                cgs2(space, &mut w, &q)?;
                let n = space.norm(&w)?;
                if n > 1e-10 * before.max(1e-300) {
                    q.push(space.scaled(&w, 1.0 / n)?);
                }
            }
            let mut exact = 0.0;
            for qi in &q {
                exact += space.dot(qi, &apply(qi)?)?;
            }
            // Hutchinson on the deflated operator; nothing is left when Q spans everything.
            let mut terms = Vec::with_capacity(third);
            if q.len() < dim {
                for _ in 0..third.max(2) {
                    // One pass: a random vector is far from span(Q), and Q is orthonormal to
                    // working precision, so nothing cancels (the sketch above needs two).
                    let mut g = space.upload(rademacher(dim, &mut rng))?;
                    space.project_out(&mut g, &q)?;
                    terms.push(space.dot(&g, &apply(&g)?)?);
                }
            }
            let (rest, se) = if terms.is_empty() {
                (0.0, 0.0)
            } else {
                mean_se(&terms)
            };
            (exact + rest, se, Some(exact))
        }
    };
    if !estimate.is_finite() {
        return Err(Error::Numerics(format!(
            "trace: non-finite estimate ({estimate}) after {used} products"
        )));
    }
    Ok(TraceEstimate {
        method: cfg.method,
        estimate,
        std_error,
        sketched,
        products: used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Q diag(d) Qᵀ` for a random orthogonal `Q` (Hutchinson is exact on diagonal matrices).
    fn diag(d: &[f64]) -> impl FnMut(&Tensor) -> Result<Tensor> + '_ {
        let n = d.len();
        let mut rng = Rng::new(17);
        let q = nalgebra::DMatrix::from_vec(n, n, rng.normals(n * n))
            .qr()
            .q();
        let a = &q
            * nalgebra::DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(d))
            * q.transpose();
        move |v: &Tensor| {
            let x = nalgebra::DVector::from_vec(v.to_vec1::<f64>()?);
            let y = &a * x;
            Ok(Tensor::from_slice(y.as_slice(), n, &Device::Cpu)?)
        }
    }

    fn spectrum() -> Vec<f64> {
        let mut d: Vec<f64> = (0..200).map(|i| 0.01 * (i as f64 - 60.0)).collect();
        d[0] = 50.0;
        d[1] = 20.0;
        d[2] = -8.0;
        d
    }

    #[test]
    fn hutchinson_is_within_its_standard_error_and_hutch_pp_is_tighter() {
        let d = spectrum();
        let exact: f64 = d.iter().sum();
        let run = |method, seed| {
            let cfg = TraceConfig {
                method,
                products: 60,
                seed,
            };
            trace(diag(&d), d.len(), &Device::Cpu, DType::F64, &cfg).unwrap()
        };
        let (mut z2, mut z2pp, mut se, mut se_pp) = (Vec::new(), Vec::new(), 0.0, 0.0);
        for seed in 0..20 {
            let h = run(TraceMethod::Hutchinson, seed);
            assert_eq!(h.products, 60);
            z2.push(((h.estimate - exact) / h.std_error).powi(2));
            se += h.std_error;
            let p = run(TraceMethod::HutchPlusPlus, seed);
            assert_eq!(p.products, 60);
            z2pp.push(((p.estimate - exact) / p.std_error).powi(2));
            se_pp += p.std_error;
        }
        // Standardised errors: mean square ≈ 1 when the standard error is honest.
        for z in [z2, z2pp] {
            let ms = z.iter().sum::<f64>() / z.len() as f64;
            assert!((0.3..3.0).contains(&ms), "mean squared z-score {ms}");
        }
        // The sketch holds the three outliers: what is left to sample is the small bulk.
        assert!(
            se_pp < 0.5 * se,
            "Hutch++ mean se {se_pp} vs Hutchinson {se}"
        );
    }

    #[test]
    fn hutch_pp_is_exact_when_the_sketch_spans_the_space() {
        let d: Vec<f64> = (0..12).map(|i| (i as f64 - 4.0).powi(3)).collect();
        let cfg = TraceConfig {
            method: TraceMethod::HutchPlusPlus,
            products: 36,
            seed: 3,
        };
        let t = trace(diag(&d), d.len(), &Device::Cpu, DType::F64, &cfg).unwrap();
        let exact: f64 = d.iter().sum();
        assert!((t.estimate - exact).abs() < 1e-10 * d.iter().map(|x| x.abs()).sum::<f64>());
        assert!(t.std_error < 1e-12, "{t:?}");
        let bad = TraceConfig {
            method: TraceMethod::HutchPlusPlus,
            products: 2,
            seed: 0,
        };
        assert!(trace(diag(&d), d.len(), &Device::Cpu, DType::F64, &bad).is_err());
    }
}
