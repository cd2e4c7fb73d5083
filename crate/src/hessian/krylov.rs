//! Where Lanczos keeps its Krylov basis, and the vector arithmetic on it, always in f64.
//!
//! CPU models keep it on the host as `Vec<f64>` ([`Host`]). GPU models keep it on the GPU as f64
//! tensors ([`OnDevice`]): copying a paper-size vector (1.8 M entries) to the host and back and
//! reorthogonalising it there costs tens of milliseconds per product, far more than the product
//! itself on the GPU.
use crate::Result;
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
    /// point).
    fn orthogonalise(&self, w: &mut Self::V, basis: &[Self::V]) -> Result<()>;
    /// `Σ_r coef[r] basis[r]`.
    fn combine(&self, basis: &[Self::V], coef: &[f64]) -> Result<Self::V>;

    /// ‖a‖.
    fn norm(&self, a: &Self::V) -> Result<f64> {
        Ok(self.dot(a, a)?.sqrt())
    }
}

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
        Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
    }
    fn upload(&self, v: Vec<f64>) -> Result<Vec<f64>> {
        Ok(v)
    }
    fn operand(&self, v: &Vec<f64>) -> Result<Tensor> {
        Ok(Tensor::from_slice(v, v.len(), &Device::Cpu)?
            .to_dtype(self.dtype)?
            .to_device(&self.device)?)
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
        let q = Self::matrix(basis)?;
        for _ in 0..2 {
            let c = q.matmul(&w.unsqueeze(1)?)?.reshape((1, basis.len()))?; // qᵀw, [1, m]
            *w = (&*w - c.matmul(&q)?.squeeze(0)?)?;
        }
        Ok(())
    }
    fn combine(&self, basis: &[Tensor], coef: &[f64]) -> Result<Tensor> {
        let c = Tensor::from_slice(coef, (1, coef.len()), &self.device)?;
        Ok(c.matmul(&Self::matrix(basis)?)?.squeeze(0)?)
    }
}
