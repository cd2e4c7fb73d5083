//! Where Lanczos keeps its Krylov basis, and the vector arithmetic on it, always in f64.
//!
//! CPU models keep it on the host as `Vec<f64>` ([`Host`]). GPU models keep it on the GPU as f64
//! tensors ([`OnDevice`]): copying a paper-size vector (1.8 M entries) to the host and back and
//! reorthogonalising it there costs tens of milliseconds per product, far more than the product
//! itself on the GPU.
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Storage and arithmetic of Krylov vectors.
pub(crate) trait Krylov {
    /// One vector.
    type V: Clone;
    /// A flat tensor of any float dtype as a vector (f64, where the basis lives).
    fn load(&self, t: &Tensor) -> Result<Self::V>;
    /// Host values as a vector (moved to where the basis lives).
    fn upload(&self, v: Vec<f64>) -> Result<Self::V>;
    /// The vector as the operator's input: `dtype` on the operator's device.
    fn operand(&self, v: &Self::V) -> Result<Tensor>;
    /// Number of entries.
    fn len(&self, v: &Self::V) -> usize;
    /// ⟨a, b⟩.
    fn dot(&self, a: &Self::V, b: &Self::V) -> Result<f64>;
    /// `y += c x`.
    fn axpy(&self, y: &mut Self::V, c: f64, x: &Self::V) -> Result<()>;
    /// `c x`.
    fn scaled(&self, x: &Self::V, c: f64) -> Result<Self::V>;
    /// Remove the components of `w` along `basis` (twice: one pass is not enough in floating
    /// point). Modified Gram–Schmidt on the host: Lanczos's results keep their bits.
    fn orthogonalise(&self, w: &mut Self::V, basis: &[Self::V]) -> Result<()>;
    /// One classical Gram–Schmidt pass against an orthonormal `basis`: `w −= Q (Qᵀ w)`, reading
    /// the basis twice in all (not twice per vector, as `orthogonalise` does on the host).
    fn project_out(&self, w: &mut Self::V, basis: &[Self::V]) -> Result<()>;
    /// `Σ_r coef[r] basis[r]`.
    fn combine(&self, basis: &[Self::V], coef: &[f64]) -> Result<Self::V>;

    /// ‖a‖.
    fn norm(&self, a: &Self::V) -> Result<f64> {
        Ok(self.dot(a, a)?.sqrt())
    }
}

/// One Lanczos expansion: `w = A q` (`op` on the operand, checked to have `dim` entries) and
/// its Rayleigh quotient `α = ⟨w, q⟩` (checked finite), with `q` appended to `basis`; the
/// caller orthogonalises `w` against the basis. `who` and `j` name the solver and its
/// iteration in errors.
pub(crate) fn expand<K: Krylov>(
    space: &K,
    op: &mut impl FnMut(&Tensor) -> Result<Tensor>,
    q: K::V,
    basis: &mut Vec<K::V>,
    dim: usize,
    (who, j): (&str, usize),
) -> Result<(K::V, f64)> {
    let w = space.load(&op(&space.operand(&q)?)?)?;
    if space.len(&w) != dim {
        return Err(Error::Numerics(format!(
            "{who}: operator returned {} values for dimension {dim}",
            space.len(&w)
        )));
    }
    let a = space.dot(&w, &q)?;
    if !a.is_finite() {
        return Err(Error::Numerics(format!(
            "{who}: non-finite Rayleigh quotient at iteration {j}"
        )));
    }
    basis.push(q);
    Ok((w, a))
}

/// Classical Gram–Schmidt twice ("twice is enough": orthogonal to working precision): the
/// reorthogonalisation of the curvature toolkit's own solvers (trace, density).
pub(crate) fn cgs2<K: Krylov>(space: &K, w: &mut K::V, basis: &[K::V]) -> Result<()> {
    space.project_out(w, basis)?;
    space.project_out(w, basis)
}

/// Entries per block of the host's [`Krylov::project_out`]: the block of `w` stays in cache
/// while every basis vector's block streams past it.
const BLOCK: usize = 2048;

/// ⟨a, b⟩ of two host vectors (the CPU kernels' dot: four partial sums, then the tail).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    crate::kernels::slice_dot(a, b)
}

/// `y += c x` on host vectors.
fn axpy(y: &mut [f64], c: f64, x: &[f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += c * x);
}

/// The basis on the host, in f64; the operator's inputs go to `device` as `dtype`.
pub(crate) struct Host {
    pub device: Device,
    pub dtype: DType,
}

impl Krylov for Host {
    type V = Vec<f64>;
    fn load(&self, t: &Tensor) -> Result<Vec<f64>> {
        let t = t.flatten_all()?;
        // f32 → f64 is exact: converting while copying out saves a pass over the vector.
        Ok(match t.dtype() {
            DType::F32 => t.to_vec1::<f32>()?.into_iter().map(f64::from).collect(),
            _ => t.to_dtype(DType::F64)?.to_vec1::<f64>()?,
        })
    }
    fn upload(&self, v: Vec<f64>) -> Result<Vec<f64>> {
        Ok(v)
    }
    fn operand(&self, v: &Vec<f64>) -> Result<Tensor> {
        // For f32, rounding while copying in (`as f32`, as candle's own cast) saves a pass.
        let t = match self.dtype {
            DType::F32 => {
                let v32: Vec<f32> = v.iter().map(|x| *x as f32).collect();
                Tensor::from_vec(v32, v.len(), &Device::Cpu)?
            }
            dtype => Tensor::from_slice(v, v.len(), &Device::Cpu)?.to_dtype(dtype)?,
        };
        Ok(t.to_device(&self.device)?)
    }
    fn len(&self, v: &Vec<f64>) -> usize {
        v.len()
    }
    fn dot(&self, a: &Vec<f64>, b: &Vec<f64>) -> Result<f64> {
        Ok(dot(a, b))
    }
    fn axpy(&self, y: &mut Vec<f64>, c: f64, x: &Vec<f64>) -> Result<()> {
        axpy(y, c, x);
        Ok(())
    }
    fn scaled(&self, x: &Vec<f64>, c: f64) -> Result<Vec<f64>> {
        Ok(x.iter().map(|v| v * c).collect())
    }
    fn orthogonalise(&self, w: &mut Vec<f64>, basis: &[Vec<f64>]) -> Result<()> {
        for _ in 0..2 {
            for q in basis {
                let c = dot(w, q);
                axpy(w, -c, q);
            }
        }
        Ok(())
    }
    fn project_out(&self, w: &mut Vec<f64>, basis: &[Vec<f64>]) -> Result<()> {
        use rayon::prelude::*;
        // Blocks in parallel; each block's partial dots are summed in block order afterwards,
        // so the bits do not depend on the number of threads.
        let partial: Vec<Vec<f64>> = w
            .par_chunks(BLOCK)
            .enumerate()
            .map(|(k, wb)| {
                let at = k * BLOCK..k * BLOCK + wb.len();
                basis.iter().map(|q| dot(wb, &q[at.clone()])).collect()
            })
            .collect();
        let mut c = vec![0.0; basis.len()];
        for p in &partial {
            c.iter_mut().zip(p).for_each(|(c, p)| *c += p);
        }
        w.par_chunks_mut(BLOCK).enumerate().for_each(|(k, wb)| {
            let at = k * BLOCK..k * BLOCK + wb.len();
            for (cj, q) in c.iter().zip(basis) {
                axpy(wb, -cj, &q[at.clone()]);
            }
        });
        Ok(())
    }
    fn combine(&self, basis: &[Vec<f64>], coef: &[f64]) -> Result<Vec<f64>> {
        let mut y = vec![0.0; basis.first().map_or(0, Vec::len)];
        for (qb, c) in basis.iter().zip(coef) {
            axpy(&mut y, *c, qb);
        }
        Ok(y)
    }
}

/// The basis as f64 tensors `[dim]` on `device`; the operator's inputs are cast to `dtype`.
pub(crate) struct OnDevice {
    pub device: Device,
    pub dtype: DType,
}

impl OnDevice {
    /// The basis as a matrix `[m, dim]`.
    fn matrix(basis: &[Tensor]) -> Result<Tensor> {
        Ok(Tensor::stack(basis, 0)?)
    }
}

impl Krylov for OnDevice {
    type V = Tensor;
    fn load(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.flatten_all()?
            .to_dtype(DType::F64)?
            .to_device(&self.device)?)
    }
    fn upload(&self, v: Vec<f64>) -> Result<Tensor> {
        let n = v.len();
        Ok(Tensor::from_vec(v, n, &self.device)?)
    }
    fn operand(&self, v: &Tensor) -> Result<Tensor> {
        Ok(v.to_dtype(self.dtype)?)
    }
    fn len(&self, v: &Tensor) -> usize {
        v.elem_count()
    }
    fn dot(&self, a: &Tensor, b: &Tensor) -> Result<f64> {
        Ok((a * b)?.sum_all()?.to_scalar::<f64>()?)
    }
    fn axpy(&self, y: &mut Tensor, c: f64, x: &Tensor) -> Result<()> {
        *y = (&*y + x.affine(c, 0.0)?)?;
        Ok(())
    }
    fn scaled(&self, x: &Tensor, c: f64) -> Result<Tensor> {
        Ok(x.affine(c, 0.0)?)
    }
    fn orthogonalise(&self, w: &mut Tensor, basis: &[Tensor]) -> Result<()> {
        if basis.is_empty() {
            return Ok(());
        }
        // Classical Gram–Schmidt as two matrix–vector products, twice: the same projection as
        // the host's loop up to rounding, in four kernel launches and no host round trip.
        for _ in 0..2 {
            self.project_out(w, basis)?;
        }
        Ok(())
    }
    fn project_out(&self, w: &mut Tensor, basis: &[Tensor]) -> Result<()> {
        if basis.is_empty() {
            return Ok(());
        }
        let q = Self::matrix(basis)?;
        let c = q.matmul(&w.unsqueeze(1)?)?.reshape((1, basis.len()))?; // qᵀw, [1, m]
        *w = (&*w - c.matmul(&q)?.squeeze(0)?)?;
        Ok(())
    }
    fn combine(&self, basis: &[Tensor], coef: &[f64]) -> Result<Tensor> {
        let c = Tensor::from_slice(coef, (1, coef.len()), &self.device)?;
        Ok(c.matmul(&Self::matrix(basis)?)?.squeeze(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `project_out` against the definition `w − Q (Qᵀ w)` on a length that is not a multiple
    /// of the block, host and device (on the CPU) alike; CGS2 leaves `w` orthogonal to the
    /// basis to working precision.
    #[test]
    fn blocked_projection_matches_its_definition() {
        let (dim, m) = (2 * BLOCK + 333, 7);
        let mut rng = Rng::new(5);
        let host = Host {
            device: Device::Cpu,
            dtype: DType::F64,
        };
        // An orthonormal basis by modified Gram–Schmidt twice (the existing path).
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for _ in 0..m {
            let mut v = rng.normals(dim);
            host.orthogonalise(&mut v, &basis).unwrap();
            let n = host.norm(&v).unwrap();
            basis.push(host.scaled(&v, 1.0 / n).unwrap());
        }
        let w0 = rng.normals(dim);
        let mut reference = w0.clone();
        for q in &basis {
            let c = dot(&w0, q);
            axpy(&mut reference, -c, q);
        }
        let mut w = w0.clone();
        host.project_out(&mut w, &basis).unwrap();
        let err = w
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-13, "host projection differs by {err:e}");

        let dev = OnDevice {
            device: Device::Cpu,
            dtype: DType::F64,
        };
        let tb: Vec<Tensor> = basis
            .iter()
            .map(|q| dev.upload(q.clone()).unwrap())
            .collect();
        let mut tw = dev.upload(w0.clone()).unwrap();
        dev.project_out(&mut tw, &tb).unwrap();
        let tw: Vec<f64> = tw.to_vec1().unwrap();
        let err = tw
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "device projection differs by {err:e}");

        let mut w = w0;
        cgs2(&host, &mut w, &basis).unwrap();
        let n = host.norm(&w).unwrap();
        for q in &basis {
            assert!(
                dot(&w, q).abs() < 1e-14 * n,
                "not orthogonal: {:e}",
                dot(&w, q)
            );
        }
    }
}
