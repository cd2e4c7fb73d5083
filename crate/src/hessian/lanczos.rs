//! Lanczos with full reorthogonalisation for the largest algebraic eigenvalues of a symmetric
//! operator given only as matrix-vector products on device tensors.
use super::krylov::{Host, Krylov, OnDevice, dot, expand};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

/// Solver settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LanczosConfig {
    /// Number of eigenpairs wanted (largest algebraic first).
    pub k: usize,
    /// Stop when every wanted pair has ‖H y − θ y‖ ≤ `tol` · |θ|.
    pub tol: f64,
    /// Maximum Krylov dimension (products).
    pub max_iter: usize,
    /// Seed for the random start (cold start) and restarts.
    pub seed: u64,
}

impl Default for LanczosConfig {
    fn default() -> Self {
        LanczosConfig {
            k: 1,
            tol: 1e-4,
            max_iter: 200,
            seed: 0,
        }
    }
}

/// Eigenpairs from Lanczos, largest algebraic first.
#[derive(Clone, Debug)]
pub struct Eigen {
    /// Ritz values θ_1 ≥ θ_2 ≥ … (k of them).
    pub values: Vec<f64>,
    /// Unit Ritz vectors, flat (sorted-name parameter order), on the operator's device.
    pub vectors: Vec<Tensor>,
    /// Residual norms ‖H y_i − θ_i y_i‖ (Lanczos estimate β_m |s_{m,i}|).
    pub residuals: Vec<f64>,
    /// Operator products used.
    pub iterations: usize,
    /// Whether every pair met the tolerance.
    pub converged: bool,
}

pub(super) fn random_unit(dim: usize, rng: &mut Rng) -> Vec<f64> {
    let v = rng.normals(dim);
    let c = 1.0 / dot(&v, &v).sqrt();
    v.iter().map(|x| x * c).collect()
}

/// Eigen-decomposition of the tridiagonal matrix (α on the diagonal, β off it), descending.
pub(super) fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> (Vec<f64>, DMatrix<f64>) {
    let m = alpha.len();
    let t = DMatrix::from_fn(m, m, |i, j| {
        if i == j {
            alpha[i]
        } else if i + 1 == j {
            beta[i]
        } else if j + 1 == i {
            beta[j]
        } else {
            0.0
        }
    });
    let e = SymmetricEigen::new(t);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| e.eigenvalues[b].total_cmp(&e.eigenvalues[a]));
    let vals = order.iter().map(|&i| e.eigenvalues[i]).collect();
    let vecs = DMatrix::from_fn(m, m, |i, j| e.eigenvectors[(i, order[j])]);
    (vals, vecs)
}

/// Top-`cfg.k` eigenpairs of the symmetric operator `op` on vectors of length `dim`.
///
/// `start`: previous eigenvectors to warm-start from (their sum seeds the Krylov space); a
/// random unit vector from `cfg.seed` otherwise. The Krylov basis is kept in f64, on the host for
/// CPU operators and on the operator's device otherwise (see [`super::krylov`]).
pub fn lanczos(
    op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    device: &Device,
    dtype: DType,
    cfg: &LanczosConfig,
    start: Option<&[Tensor]>,
) -> Result<Eigen> {
    let (device, dtype) = (device.clone(), dtype);
    if device.is_cpu() {
        lanczos_in(&Host { device, dtype }, op, dim, cfg, start)
    } else {
        lanczos_in(&OnDevice { device, dtype }, op, dim, cfg, start)
    }
}

/// [`lanczos`] with the Krylov basis in `space`.
pub(crate) fn lanczos_in<K: Krylov>(
    space: &K,
    mut op: impl FnMut(&Tensor) -> Result<Tensor>,
    dim: usize,
    cfg: &LanczosConfig,
    start: Option<&[Tensor]>,
) -> Result<Eigen> {
    if cfg.k == 0 || cfg.k > dim {
        return Err(Error::Config(format!(
            "lanczos: k = {} must be in 1..={dim}",
            cfg.k
        )));
    }
    let max_iter = cfg.max_iter.clamp(cfg.k, dim);
    let mut rng = Rng::stream(cfg.seed, "lanczos");
    let mut q: K::V = match start.filter(|s| !s.is_empty()) {
        Some(prev) => {
            let mut s = space.load(&prev[0])?;
            for p in &prev[1..] {
                space.axpy(&mut s, 1.0, &space.load(p)?)?;
            }
            if space.len(&s) != dim {
                return Err(Error::Config(format!(
                    "lanczos: warm-start vector of length {} for dimension {dim}",
                    space.len(&s)
                )));
            }
            // A little noise keeps the Krylov space from being trapped in the old subspace.
            space.axpy(&mut s, 1e-3, &space.upload(random_unit(dim, &mut rng))?)?;
            let n = space.norm(&s)?;
            if !(n.is_finite() && n > 0.0) {
                return Err(Error::Numerics(
                    "lanczos: warm-start vector is zero or not finite".into(),
                ));
            }
            space.scaled(&s, 1.0 / n)?
        }
        None => space.upload(random_unit(dim, &mut rng))?,
    };
    let mut basis: Vec<K::V> = Vec::new();
    let (mut alpha, mut beta): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut result = None;
    for j in 0..max_iter {
        let (mut w, a) = expand(space, &mut op, q, &mut basis, dim, ("lanczos", j))?;
        alpha.push(a);
        space.orthogonalise(&mut w, &basis)?;
        let b = space.norm(&w)?;
        let m = alpha.len();
        let scale = alpha.iter().fold(0.0f64, |s, x| s.max(x.abs())).max(1e-300);
        let breakdown = b <= 1e-10 * scale;
        if m >= cfg.k {
            let (vals, vecs) = tridiagonal_eigen(&alpha, &beta);
            let res: Vec<f64> = (0..cfg.k)
                .map(|i| {
                    if breakdown {
                        0.0
                    } else {
                        b * vecs[(m - 1, i)].abs()
                    }
                })
                .collect();
            let converged =
                (0..cfg.k).all(|i| res[i] <= cfg.tol * vals[i].abs().max(1e-12 * scale));
            if converged || breakdown || j + 1 == max_iter {
                result = Some((vals, vecs, res, converged || breakdown));
                break;
            }
        }
        if breakdown {
            // Invariant subspace found before k pairs: restart orthogonally to it.
            let mut r = space.upload(random_unit(dim, &mut rng))?;
            space.orthogonalise(&mut r, &basis)?;
            let n = space.norm(&r)?;
            beta.push(0.0);
            q = space.scaled(&r, 1.0 / n)?;
        } else {
            beta.push(b);
            q = space.scaled(&w, 1.0 / b)?;
        }
    }
    let (vals, vecs, residuals, converged) = result.expect("max_iter >= k guarantees a check");
    let mut vectors = Vec::with_capacity(cfg.k);
    for i in 0..cfg.k {
        let coef: Vec<f64> = (0..basis.len()).map(|r| vecs[(r, i)]).collect();
        let y = space.combine(&basis, &coef)?;
        let n = space.norm(&y)?;
        vectors.push(space.operand(&space.scaled(&y, 1.0 / n)?)?);
    }
    Ok(Eigen {
        values: vals[..cfg.k].to_vec(),
        vectors,
        residuals,
        iterations: alpha.len(),
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_operator_known_spectrum() {
        // diag(d) with a negative eigenvalue of large magnitude: we want the largest *algebraic*.
        let n = 60;
        let mut d: Vec<f64> = (0..n).map(|i| i as f64 * 0.1).collect();
        d[0] = -50.0;
        let diag = Tensor::from_vec(d.clone(), n, &Device::Cpu).unwrap();
        let cfg = LanczosConfig {
            k: 3,
            tol: 1e-10,
            max_iter: 60,
            seed: 1,
        };
        let e = lanczos(
            |v| Ok((v * &diag)?),
            n,
            &Device::Cpu,
            DType::F64,
            &cfg,
            None,
        )
        .unwrap();
        assert!(e.converged);
        for (got, want) in e.values.iter().zip([5.9, 5.8, 5.7]) {
            assert!((got - want).abs() < 1e-8, "{:?}", e.values);
        }
        // Eigenvector of 5.9 is e_{59}.
        let v: Vec<f64> = e.vectors[0].to_vec1().unwrap();
        assert!((v[n - 1].abs() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn warm_start_converges_faster() {
        let n = 200;
        let d: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 / n as f64 * 9.0).collect();
        let diag = Tensor::from_vec(d, n, &Device::Cpu).unwrap();
        let cfg = LanczosConfig {
            k: 1,
            tol: 1e-8,
            max_iter: 200,
            seed: 3,
        };
        let cold = lanczos(
            |v| Ok((v * &diag)?),
            n,
            &Device::Cpu,
            DType::F64,
            &cfg,
            None,
        )
        .unwrap();
        let warm = lanczos(
            |v| Ok((v * &diag)?),
            n,
            &Device::Cpu,
            DType::F64,
            &cfg,
            Some(&cold.vectors),
        )
        .unwrap();
        assert!((warm.values[0] - cold.values[0]).abs() < 1e-9);
        assert!(
            warm.iterations < cold.iterations,
            "warm {} cold {}",
            warm.iterations,
            cold.iterations
        );
    }

    #[test]
    fn invariant_subspace_restart() {
        // Rank-one operator: the Krylov space from most starts is 2-dimensional, k = 3 forces restarts.
        let n = 10;
        let u = Tensor::from_vec(
            (0..n).map(|i| (i + 1) as f64).collect::<Vec<_>>(),
            n,
            &Device::Cpu,
        )
        .unwrap();
        let tdot =
            |a: &Tensor, b: &Tensor| -> Result<f64> { Ok((a * b)?.sum_all()?.to_scalar::<f64>()?) };
        let uu = tdot(&u, &u).unwrap();
        let cfg = LanczosConfig {
            k: 3,
            tol: 1e-10,
            max_iter: 10,
            seed: 0,
        };
        let e = lanczos(
            |v| Ok((&u * tdot(&u, v)?)?),
            n,
            &Device::Cpu,
            DType::F64,
            &cfg,
            None,
        )
        .unwrap();
        assert!((e.values[0] - uu).abs() < 1e-8 * uu, "{:?}", e.values);
        assert!(e.values[1].abs() < 1e-8 && e.values[2].abs() < 1e-8);
    }

    #[test]
    fn device_basis_matches_host_basis() {
        // The GPU path's arithmetic (basis as f64 tensors, projections as matrix products), run
        // on the CPU against the host path: same Ritz pairs, cold and warm, with restarts.
        let n = 150;
        let d: Vec<f64> = (0..n).map(|i| ((i * 37) % n) as f64 / 15.0 - 2.0).collect();
        let diag = Tensor::from_vec(d, n, &Device::Cpu).unwrap();
        let cfg = LanczosConfig {
            k: 3,
            tol: 1e-9,
            max_iter: 150,
            seed: 5,
        };
        let (device, dtype) = (Device::Cpu, DType::F64);
        let op = |v: &Tensor| Ok((v * &diag)?);
        let host = Host {
            device: device.clone(),
            dtype,
        };
        let dev = OnDevice { device, dtype };
        let a = lanczos_in(&host, op, n, &cfg, None).unwrap();
        let b = lanczos_in(&dev, op, n, &cfg, None).unwrap();
        let a2 = lanczos_in(&host, op, n, &cfg, Some(&a.vectors)).unwrap();
        let b2 = lanczos_in(&dev, op, n, &cfg, Some(&b.vectors)).unwrap();
        for (x, y) in [(&a, &b), (&a2, &b2)] {
            assert!(x.converged && y.converged);
            for i in 0..cfg.k {
                assert!(
                    (x.values[i] - y.values[i]).abs() < 1e-9,
                    "{:?} {:?}",
                    x.values,
                    y.values
                );
                let c: f64 = (&x.vectors[i] * &y.vectors[i])
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert!(c.abs() > 1.0 - 1e-8, "pair {i}: |<x, y>| = {c}");
            }
        }
        for (got, want) in b
            .values
            .iter()
            .zip([8.0 - 1.0 / 15.0, 8.0 - 2.0 / 15.0, 7.8])
        {
            assert!((got - want).abs() < 1e-8, "{:?}", b.values);
        }
    }
}
