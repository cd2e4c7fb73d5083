//! One point's curvature in one report: for the Hessian and each requested part of its
//! Gauss-Newton split, the top eigenvalues (Lanczos), the trace (Hutch++ or Hutchinson) and the
//! spectral density (stochastic Lanczos quadrature), all on one gradient graph. `eoslab
//! spectrum` prints it for a checkpoint; the spectra experiment takes it along a fork.
use super::{Curvature, DensityConfig, HessianOp, LanczosConfig, TraceConfig, TraceEstimate};
use super::{Density, Eigen};
use crate::Result;
use serde::{Deserialize, Serialize};

/// What to compute at a point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectrumConfig {
    /// Matrices: the Hessian and/or parts of its Gauss-Newton split.
    pub curvatures: Vec<Curvature>,
    /// Top eigenvalues per matrix (largest algebraic first).
    pub k: usize,
    /// Relative residual tolerance of the top eigenvalues.
    pub tol: f64,
    /// Most products per eigen-solve.
    pub max_iter: usize,
    /// Trace estimator.
    pub trace: TraceConfig,
    /// Spectral density.
    pub density: DensityConfig,
}

impl Default for SpectrumConfig {
    /// Hessian and Gauss-Newton; top 5 to a relative residual of 1e-4 (the sharpness tracker's
    /// tolerance: f32 products resolve little below 1e-5); Hutch++ with 90 products; SLQ with
    /// 4 probes of 60 steps.
    fn default() -> Self {
        SpectrumConfig {
            curvatures: vec![Curvature::Hessian, Curvature::GaussNewton],
            k: 5,
            tol: 1e-4,
            max_iter: 500,
            trace: TraceConfig::default(),
            density: DensityConfig::default(),
        }
    }
}

/// The top eigenvalues of one matrix (eigenvectors left out: they are parameter-sized).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Top {
    /// Eigenvalues, largest first.
    pub eigenvalues: Vec<f64>,
    /// Residual norms ‖A y − θ y‖.
    pub residuals: Vec<f64>,
    /// Products used.
    pub products: usize,
    /// Whether every pair met the tolerance.
    pub converged: bool,
}

impl From<&Eigen> for Top {
    fn from(e: &Eigen) -> Top {
        Top {
            eigenvalues: e.values.clone(),
            residuals: e.residuals.clone(),
            products: e.iterations,
            converged: e.converged,
        }
    }
}

/// Top eigenvalues, trace and density of one matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartSpectrum {
    /// Which matrix.
    pub curvature: Curvature,
    /// Its top eigenvalues.
    pub top: Top,
    /// Its trace.
    pub trace: TraceEstimate,
    /// Its spectral density.
    pub density: Density,
}

/// Compute `cfg` for the Hessian of `op` and the requested parts of its split.
pub fn spectrum(op: &HessianOp, cfg: &SpectrumConfig) -> Result<Vec<PartSpectrum>> {
    let mut out = Vec::with_capacity(cfg.curvatures.len());
    for &which in &cfg.curvatures {
        let part = op.part(which);
        let eig = part.top_eigen(
            &LanczosConfig {
                k: cfg.k.min(part.dim()),
                tol: cfg.tol,
                max_iter: cfg.max_iter,
                seed: 0,
            },
            None,
        )?;
        out.push(PartSpectrum {
            curvature: which,
            top: Top::from(&eig),
            trace: part.trace(&cfg.trace)?,
            density: part.density(&cfg.density)?,
        });
    }
    Ok(out)
}
