//! Sums of matrix products accumulated into one buffer, with the `gemm` crate on the CPU, and a
//! recorder of the products asked for (their shapes feed `make bench`'s GEMM calibration).
use super::*;

/// One matrix product as the closed-form derivatives ask for it: `op(a) [m, k] × op(b) [k, n]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GemmCall {
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// `a` is stored `[k, m]` and used transposed.
    pub ta: bool,
    /// `b` is stored `[n, k]` and used transposed.
    pub tb: bool,
    /// Added into the result of the previous call (a sum of two products).
    pub accumulate: bool,
    /// "f32" or "f64".
    pub dtype: String,
}

thread_local! {
    // The products of this thread while a recording is on (recording is per thread, so tests
    // running side by side never see each other's products).
    static CALLS: std::cell::RefCell<Option<Vec<GemmCall>>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` and return, in call order, every CPU matrix product the closed-form MLP derivatives
/// computed meanwhile on this thread, so that a benchmark can time exactly those shapes.
pub fn record_gemms<R>(f: impl FnOnce() -> R) -> (R, Vec<GemmCall>) {
    let outer = CALLS.with(|c| c.replace(Some(Vec::new())));
    let r = f();
    let calls = CALLS.with(|c| c.replace(outer)).unwrap_or_default();
    (r, calls)
}

fn record(call: impl FnOnce() -> GemmCall) {
    CALLS.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push(call());
        }
    });
}

thread_local! {
    // Threads for the products on this thread (tests compare counts); 0: candle's setting.
    static THREADS: Cell<usize> = const { Cell::new(0) };
}

/// Run the products on this thread with `n` GEMM threads (for tests of thread independence).
#[cfg(test)]
pub(crate) fn with_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let old = THREADS.with(|t| t.replace(n));
    let r = f();
    THREADS.with(|t| t.set(old));
    r
}

/// GEMM threads for the products on this thread.
fn threads() -> usize {
    match THREADS.with(|t| t.get()) {
        0 => candle_core::utils::get_num_threads().max(1),
        n => n,
    }
}

/// Multiply-adds below which a product runs on one thread (splitting costs more than it saves).
const PAR_MIN_FLOPS: usize = 1 << 21;

/// The result's rows (`by_rows`) or columns cut into `parts` contiguous blocks, one a thread.
///
/// The `gemm` crate's own threading scales poorly at the CIFAR preset's sizes ([1031 × 3072] ×
/// [3072 × 256]: 2 threads gave 1.1–1.3× of one); blocks of the result computed by one
/// single-threaded product each scale nearly linearly. Every block sums its inner dimension in
/// the same order as the whole product, so the bits do not depend on the thread count (tested
/// below).
fn blocks(m: usize, n: usize, parts: usize) -> (bool, Vec<Range<usize>>) {
    let by_rows = m >= n;
    let len = if by_rows { m } else { n };
    // Whole micro-tiles (a multiple of 16 rows or columns) for every block but the last.
    let step = len.div_ceil(parts).next_multiple_of(16);
    let cuts = (0..len)
        .step_by(step.max(1))
        .map(|s| s..(s + step).min(len));
    (by_rows, cuts.collect())
}

/// Raw addresses handed to the threads (each writes a disjoint block of the result).
#[derive(Clone, Copy)]
struct Ptrs<T> {
    dst: *mut T,
    a: *const T,
    b: *const T,
}
// SAFETY: the blocks written through `dst` are disjoint; `a` and `b` are only read.
unsafe impl<T> Send for Ptrs<T> {}
unsafe impl<T> Sync for Ptrs<T> {}

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
        record(|| GemmCall {
            m,
            n,
            k,
            ta: a.transposed,
            tb: b.transposed,
            accumulate: i > 0,
            dtype: format!("{:?}", T::DTYPE).to_lowercase(),
        });
        let (at, bt) = (a.t, b.t);
        with_slices!(T, [at, bt], {
            let p = Ptrs {
                dst: dst_ptr,
                a: at.as_ptr(),
                b: bt.as_ptr(),
            };
            // SAFETY: dst is m×n row-major; a and b are contiguous with the dimensions and
            // strides checked above; each block's pointers are offset within those bounds; the
            // first product overwrites dst (read_dst = false), the later ones accumulate.
            #[cfg(feature = "blas")]
            let lib = blas::cblas();
            let block = |rows: Range<usize>, cols: Range<usize>| unsafe {
                let p = &p; // the whole struct (Sync), not its raw-pointer fields
                #[cfg(feature = "blas")]
                if let Some(lib) = lib {
                    let op = |o: &Op, ptr: *const T| blas::Operand {
                        ptr,
                        ld: o.t.dims2().map_or(0, |d| d.1),
                        transposed: o.transposed,
                    };
                    return lib.gemm(
                        (rows.len(), cols.len(), k),
                        op(a, p.a.offset(rows.start as isize * a_rs)),
                        op(b, p.b.offset(cols.start as isize * b_cs)),
                        (p.dst.add(rows.start * n + cols.start), n),
                        i > 0,
                    );
                }
                gemm::gemm(
                    rows.len(),
                    cols.len(),
                    k,
                    p.dst
                        .offset(rows.start as isize * n as isize + cols.start as isize),
                    1,
                    n as isize,
                    i > 0,
                    p.a.offset(rows.start as isize * a_rs),
                    a_cs,
                    a_rs,
                    p.b.offset(cols.start as isize * b_cs),
                    b_cs,
                    b_rs,
                    T::from_f64(1.0),
                    T::from_f64(1.0),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            };
            let parts = threads();
            if parts == 1 || m * n * k < PAR_MIN_FLOPS {
                block(0..m, 0..n);
            } else {
                let (by_rows, cuts) = blocks(m, n, parts);
                cuts.into_par_iter().for_each(|r| {
                    if by_rows {
                        block(r, 0..n)
                    } else {
                        block(0..m, r)
                    }
                });
            }
        });
    }
    // SAFETY: the first gemm wrote every element.
    wrap(unsafe { dst.finish() }, &[m, n])
}
