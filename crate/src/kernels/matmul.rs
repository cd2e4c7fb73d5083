//! Sums of matrix products accumulated into one buffer, with the `gemm` crate on the CPU.
use super::*;

fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// A 2-D operand, optionally transposed.
#[derive(Clone, Copy)]
pub(crate) struct Op<'a> {
    t: &'a Tensor,
    transposed: bool,
}

/// `t` as an operand.
pub(crate) fn n(t: &Tensor) -> Op<'_> {
    Op {
        t,
        transposed: false,
    }
}

/// `tᵀ` as an operand.
pub(crate) fn t(t: &Tensor) -> Op<'_> {
    Op {
        t,
        transposed: true,
    }
}

impl Op<'_> {
    /// (rows, cols) of the operand as used.
    fn dims(&self) -> Result<(usize, usize)> {
        let (r, c) = self.t.dims2()?;
        Ok(if self.transposed { (c, r) } else { (r, c) })
    }
    /// (row stride, column stride) of the operand as used, over contiguous row-major data.
    fn strides(&self) -> Result<(isize, isize)> {
        let (_, c) = self.t.dims2()?;
        Ok(if self.transposed {
            (1, c as isize)
        } else {
            (c as isize, 1)
        })
    }
    fn tensor(&self) -> Result<Tensor> {
        Ok(if self.transposed {
            self.t.t()?
        } else {
            self.t.clone()
        })
    }
}

/// `Σ_i op(a_i) op(b_i)` (one or two products), as one new `[m, n]` matrix.
pub(crate) fn matmul(terms: &[(Op, Op)]) -> Result<Tensor> {
    let (m, k0) = terms[0].0.dims()?;
    let (_, n) = terms[0].1.dims()?;
    for (a, b) in terms {
        let ((am, ak), (bk, bn)) = (a.dims()?, b.dims()?);
        if am != m || bn != n || ak != bk {
            return Err(Error::Numerics(format!(
                "kernel matmul: [{am}, {ak}] x [{bk}, {bn}] does not make [{m}, {n}]"
            )));
        }
    }
    let all: Vec<&Tensor> = terms.iter().flat_map(|(a, b)| [a.t, b.t]).collect();
    match cpu_dtype(&all) {
        Some(DType::F32) => matmul_cpu::<f32>(terms, m, n),
        Some(DType::F64) => matmul_cpu::<f64>(terms, m, n),
        _ => {
            let _ = k0;
            let mut acc: Option<Tensor> = None;
            for (a, b) in terms {
                let p = a.tensor()?.matmul(&b.tensor()?)?;
                acc = Some(match acc {
                    None => p,
                    Some(s) => (s + p)?,
                });
            }
            Ok(acc.expect("at least one term"))
        }
    }
}

fn matmul_cpu<T: WithDType>(terms: &[(Op, Op)], m: usize, n: usize) -> Result<Tensor> {
    let dst: Out<T> = Out::new(m * n);
    // SAFETY: the whole buffer, nothing else refers to it.
    let dst_ptr = unsafe { dst.part(0..m * n) }.as_mut_ptr() as *mut T;
    for (i, (a, b)) in terms.iter().enumerate() {
        let k = a.dims()?.1;
        let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides()?, b.strides()?);
        let (at, bt) = (a.t, b.t);
        with_slices!(T, [at, bt], {
            // SAFETY: dst is m×n row-major; a and b are contiguous with the dimensions and
            // strides checked above; the first product overwrites dst (read_dst = false), the
            // later ones accumulate into it.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst_ptr,
                    1,
                    n as isize,
                    i > 0,
                    at.as_ptr(),
                    a_cs,
                    a_rs,
                    bt.as_ptr(),
                    b_cs,
                    b_rs,
                    T::from_f64(1.0),
                    T::from_f64(1.0),
                    false,
                    false,
                    false,
                    parallelism(),
                )
            }
        });
    }
    // SAFETY: the first gemm wrote every element.
    wrap(unsafe { dst.finish() }, &[m, n])
}
