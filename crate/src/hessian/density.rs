//! Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ; Lin, Saad,
//! Yang 2016; Ghorbani, Krishnan, Xiao 2019; PyHessian).
//!
//! For a unit probe `v`, `m` Lanczos steps with full reorthogonalisation give a tridiagonal `T`
//! whose eigenvalues θ_j and squared first eigenvector components τ_j are the nodes and weights
//! of a Gauss quadrature: `vᵀ f(A) v ≈ Σ_j τ_j f(θ_j)`, exact for polynomials of degree < 2m.
//! With `v = z/√n` for a Rademacher `z`, `E[vᵀ f(A) v] = (1/n) Σ_i f(λ_i)`, so averaging over
//! probes estimates the eigenvalue distribution; each node is smoothed by a Gaussian. Isolated
//! outliers (the top of a network's Hessian) are resolved individually by Lanczos and reported
//! as numbers beside the smoothed bulk.
use super::krylov::{Host, Krylov, OnDevice, cgs2, expand};
use super::lanczos::tridiagonal_eigen;
use super::trace::rademacher;
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// SLQ settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityConfig {
    /// Random probes (independent Lanczos runs).
    pub probes: usize,
    /// Lanczos steps (operator products) per probe.
    pub steps: usize,
    /// Points of the grid the density is evaluated on.
    pub grid: usize,
    /// Gaussian smoothing width as a fraction of the spectral range.
    pub sigma: f64,
    /// A Ritz value counts as resolved (an outlier reported by itself) when its residual is at
    /// most `outlier_tol` times the largest |Ritz value|.
    pub outlier_tol: f64,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for DensityConfig {
    fn default() -> Self {
        DensityConfig {
            probes: 4,
            steps: 60,
            grid: 400,
            sigma: 0.01,
            outlier_tol: 1e-4,
            seed: 0,
        }
    }
}

/// One probe's quadrature rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quadrature {
    /// Nodes θ_j (Ritz values), descending.
    pub nodes: Vec<f64>,
    /// Weights τ_j (sum 1).
    pub weights: Vec<f64>,
    /// Residual estimates ‖A y_j − θ_j y_j‖ of the Ritz pairs.
    pub residuals: Vec<f64>,
}

/// An estimated spectral density.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Density {
    /// Grid points (ascending).
    pub grid: Vec<f64>,
    /// Density on the grid (integrates to ≈ 1: a probability density over eigenvalues).
    pub density: Vec<f64>,
    /// Gaussian width used (absolute).
    pub sigma: f64,
    /// The resolved outliers: Ritz values of the first probe meeting `outlier_tol`, descending.
    pub outliers: Vec<f64>,
    /// Every probe's quadrature rule.
    pub probes: Vec<Quadrature>,
    /// Operator products used.
    pub products: usize,
}

impl Density {
    /// `(1/n) Σ_i f(λ_i)` estimated by the probes' quadratures (mean over probes).
    pub fn spectral_mean(&self, f: impl Fn(f64) -> f64) -> f64 {
        let per: Vec<f64> = self
            .probes
            .iter()
            .map(|q| q.nodes.iter().zip(&q.weights).map(|(t, w)| w * f(*t)).sum())
            .collect();
        per.iter().sum::<f64>() / per.len() as f64
    }
}

/// Estimate the spectral density of the symmetric operator `op` on vectors of length `dim`.
pub fn density(
    op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    device: &Device,
    dtype: DType,
    cfg: &DensityConfig,
) -> Result<Density> {
    let (device, dtype) = (device.clone(), dtype);
    if device.is_cpu() {
        density_in(&Host { device, dtype }, op, dim, cfg)
    } else {
        density_in(&OnDevice { device, dtype }, op, dim, cfg)
    }
}

/// One probe: `steps` Lanczos steps from `q` (unit), full reorthogonalisation, stopping early
/// at an invariant subspace.
fn quadrature<K: Krylov>(
    space: &K,
    op: &mut impl FnMut(&Tensor) -> Result<Tensor>,
    mut q: K::V,
    dim: usize,
    steps: usize,
) -> Result<(Quadrature, usize)> {
    let mut basis: Vec<K::V> = Vec::new();
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    let mut last = 0.0;
    for j in 0..steps {
        let (mut w, a) = expand(space, op, q, &mut basis, dim, ("density", j))?;
        alpha.push(a);
        cgs2(space, &mut w, &basis)?;
        let b = space.norm(&w)?;
        let scale = alpha.iter().fold(0.0f64, |s, x| s.max(x.abs())).max(1e-300);
        last = b;
        if b <= 1e-10 * scale || j + 1 == steps {
            if b <= 1e-10 * scale {
                last = 0.0;
            }
            break;
        }
        beta.push(b);
        q = space.scaled(&w, 1.0 / b)?;
    }
    let (nodes, vecs) = tridiagonal_eigen(&alpha, &beta);
    let m = alpha.len();
    let weights = (0..m).map(|j| vecs[(0, j)].powi(2)).collect();
    let residuals = (0..m).map(|j| last * vecs[(m - 1, j)].abs()).collect();
    Ok((
        Quadrature {
            nodes,
            weights,
            residuals,
        },
        m,
    ))
}

fn density_in<K: Krylov>(
    space: &K,
    mut op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    cfg: &DensityConfig,
) -> Result<Density> {
    if cfg.probes == 0 || cfg.steps == 0 || cfg.grid < 2 || cfg.sigma.is_nan() || cfg.sigma <= 0.0 {
        return Err(Error::Config(format!(
            "density: probes ({}) and steps ({}) must be positive, grid ({}) at least 2 and sigma \
             ({}) positive",
            cfg.probes, cfg.steps, cfg.grid, cfg.sigma
        )));
    }
    let mut rng = Rng::stream(cfg.seed, "density");
    let (mut probes, mut products) = (Vec::new(), 0);
    let c = 1.0 / (dim as f64).sqrt();
    for _ in 0..cfg.probes {
        let z: Vec<f64> = rademacher(dim, &mut rng).iter().map(|s| s * c).collect();
        let (quad, used) = quadrature(space, &mut op, space.upload(z)?, dim, cfg.steps.min(dim))?;
        probes.push(quad);
        products += used;
    }
    let all = probes.iter().flat_map(|q| q.nodes.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let range = (hi - lo).max(1e-12 * hi.abs().max(lo.abs()).max(1e-300));
    let sigma = cfg.sigma * range;
    let (a, b) = (lo - 5.0 * sigma, hi + 5.0 * sigma);
    let grid: Vec<f64> = (0..cfg.grid)
        .map(|i| a + (b - a) * i as f64 / (cfg.grid - 1) as f64)
        .collect();
    let norm = 1.0 / (probes.len() as f64 * sigma * (2.0 * std::f64::consts::PI).sqrt());
    let density = grid
        .iter()
        .map(|t| {
            let s: f64 = probes
                .iter()
                .flat_map(|q| q.nodes.iter().zip(&q.weights))
                .map(|(x, w)| w * (-0.5 * ((t - x) / sigma).powi(2)).exp())
                .sum();
            s * norm
        })
        .collect();
    let top = probes[0].nodes.iter().fold(0.0f64, |s, x| s.max(x.abs()));
    let outliers = probes[0]
        .nodes
        .iter()
        .zip(&probes[0].residuals)
        .filter(|(_, r)| **r <= cfg.outlier_tol * top)
        .map(|(x, _)| *x)
        .collect();
    Ok(Density {
        grid,
        density,
        sigma,
        outliers,
        probes,
        products,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrature_is_exact_for_low_degree_moments_and_the_density_integrates_to_one() {
        let d: Vec<f64> = (0..150)
            .map(|i| {
                if i < 2 {
                    40.0 - 15.0 * i as f64
                } else {
                    (i as f64 - 50.0) * 0.02
                }
            })
            .collect();
        let op = |v: &Tensor| -> Result<Tensor> {
            let x: Vec<f64> = v.to_vec1()?;
            let y: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a * b).collect();
            Ok(Tensor::from_vec(y, d.len(), &Device::Cpu)?)
        };
        let cfg = DensityConfig {
            probes: 3,
            steps: 20,
            ..DensityConfig::default()
        };
        let dens = density(op, d.len(), &Device::Cpu, DType::F64, &cfg).unwrap();
        assert_eq!(dens.products, 60);
        // The two outliers are resolved to full precision by every probe.
        assert!(
            (dens.outliers[0] - 40.0).abs() < 1e-8,
            "{:?}",
            dens.outliers
        );
        assert!(
            (dens.outliers[1] - 25.0).abs() < 1e-8,
            "{:?}",
            dens.outliers
        );
        // Each probe's rule integrates polynomials up to degree 39 exactly: compare vᵀA^k v for
        // the same probe, recomputed from the diagonal.
        let mut rng = Rng::stream(cfg.seed, "density");
        let z = rademacher(d.len(), &mut rng);
        for k in [0, 1, 2, 5, 9] {
            let exact: f64 = z
                .iter()
                .zip(&d)
                .map(|(z, l)| z * z * l.powi(k))
                .sum::<f64>()
                / d.len() as f64;
            let q = &dens.probes[0];
            let est: f64 = q
                .nodes
                .iter()
                .zip(&q.weights)
                .map(|(t, w)| w * t.powi(k))
                .sum();
            assert!(
                (est - exact).abs() <= 1e-9 * exact.abs().max(1.0),
                "moment {k}: {est} vs {exact}"
            );
        }
        let h = dens.grid[1] - dens.grid[0];
        let mass: f64 = dens.density.iter().sum::<f64>() * h;
        assert!((mass - 1.0).abs() < 1e-3, "mass {mass}");
    }
}
