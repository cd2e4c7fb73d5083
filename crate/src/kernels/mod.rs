//! CPU kernels for the closed-form MLP derivatives ([`crate::analytic`]) and a vectorised tanh.
//!
//! candle evaluates one operation per pass over memory, allocates (and zero-fills) every result,
//! and computes `tanh` with the scalar C library. The primitives here fuse what the MLP
//! derivatives need into single passes over contiguous CPU buffers (multi-threaded with rayon
//! above a size threshold, like candle's own kernels), call the `gemm` crate candle itself uses
//! with accumulation into the destination (a sum of two products is one buffer), and evaluate
//! tanh with a vectorisable formula accurate to a few ulp in f64 (f32 is computed through f64 and
//! rounded once). Each primitive falls back to the equivalent candle operations for tensors that
//! are not contiguous f32/f64 on the CPU (e.g. on CUDA), so callers are device-agnostic.
use crate::{Error, Result};
pub use activation::Activation;
use candle_core::{
    CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor, WithDType,
};
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;

thread_local! {
    static GENERIC: Cell<bool> = const { Cell::new(false) };
}

/// Use candle operations instead of the CPU kernels on this thread (for tests comparing both).
#[cfg(test)]
pub(crate) fn force_generic(on: bool) -> bool {
    GENERIC.with(|g| g.replace(on))
}

/// Elements below which a kernel runs on one thread.
const PAR_MIN: usize = 1 << 15;

/// Run `f` compiled for AVX2 where the CPU has it (results are identical either way: no FMA).
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// slices of CPU tensors

/// Every tensor contiguous on the CPU with the same float dtype (and the kernels not disabled).
fn cpu_dtype(ts: &[&Tensor]) -> Option<DType> {
    if GENERIC.with(|g| g.get()) {
        return None;
    }
    let dt = ts.first()?.dtype();
    let ok = matches!(dt, DType::F32 | DType::F64)
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == dt && t.is_contiguous());
    ok.then_some(dt)
}

/// Run `f` on the contiguous data of CPU tensors (see [`cpu_dtype`]).
macro_rules! with_slices {
    ($T:ty, [$($t:ident),*], $body:expr) => {{
        $(
            let guard = $t.storage_and_layout();
            let (lo, hi) = guard.1.contiguous_offsets().ok_or_else(|| {
                Error::Numerics("kernel: non-contiguous input".into())
            })?;
            let $t: &[$T] = match &*guard.0 {
                Storage::Cpu(c) => &c.as_slice::<$T>()?[lo..hi],
                _ => return Err(Error::Numerics("kernel: input not on the CPU".into())),
            };
        )*
        $body
    }};
}

fn wrap<T: WithDType>(v: Vec<T>, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// An output buffer of `len` elements that a kernel writes completely, in disjoint ranges
/// (possibly from several threads), before [`Out::finish`]: no zero-filling pass.
struct Out<T> {
    v: Vec<T>,
    len: usize,
    ptr: *mut MaybeUninit<T>,
}

// SAFETY: `part` hands out disjoint ranges only; `T` values are plain numbers.
unsafe impl<T: Send> Sync for Out<T> {}

impl<T: Copy> Out<T> {
    fn new(len: usize) -> Self {
        memory::keep_freed_buffers();
        let mut v = Vec::with_capacity(len);
        let ptr = v.spare_capacity_mut().as_mut_ptr();
        Out { v, len, ptr }
    }
    /// The elements in `r`.
    ///
    /// # Safety
    /// `r` lies within the buffer and no other live `part` overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn part(&self, r: Range<usize>) -> &mut [MaybeUninit<T>] {
        debug_assert!(r.end <= self.len);
        // SAFETY: in bounds of the allocation (capacity ≥ len), disjoint by the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len()) }
    }
    /// The finished vector.
    ///
    /// # Safety
    /// Every element has been written.
    unsafe fn finish(mut self) -> Vec<T> {
        // SAFETY: capacity ≥ len and all elements initialised (the caller's contract).
        unsafe { self.v.set_len(self.len) };
        self.v
    }
}

/// Elements per parallel chunk, rounded to whole rows of `cols`.
fn chunk_len(cols: usize) -> usize {
    cols * (PAR_MIN / cols.max(1)).max(1)
}

fn parallel(n: usize) -> bool {
    n >= 2 * PAR_MIN && rayon::current_num_threads() > 1
}

/// `f` on consecutive ranges of `0..len` of `step` elements each (in parallel when large):
/// together the ranges cover `0..len` exactly once.
fn for_ranges(len: usize, step: usize, f: impl Fn(Range<usize>) + Sync) {
    if parallel(len) {
        (0..len.div_ceil(step))
            .into_par_iter()
            .for_each(|i| f(i * step..((i + 1) * step).min(len)));
    } else {
        f(0..len);
    }
}

/// `f` applied to every element.
fn map1<T: WithDType>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let out = Out::new(x.len());
    for_ranges(x.len(), PAR_MIN, |r| {
        // SAFETY: `for_ranges` ranges are disjoint and within 0..len.
        let o = unsafe { out.part(r.clone()) };
        simd(
            #[inline(always)]
            || {
                for (o, &x) in o.iter_mut().zip(&x[r]) {
                    o.write(f(x));
                }
            },
        )
    });
    // SAFETY: the ranges covered every element.
    unsafe { out.finish() }
}

/// `f` applied to every pair of elements.
fn map2<T: WithDType>(x: &[T], y: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let out = Out::new(x.len());
    for_ranges(x.len(), PAR_MIN, |r| {
        // SAFETY: disjoint ranges within 0..len.
        let o = unsafe { out.part(r.clone()) };
        simd(
            #[inline(always)]
            || {
                for ((o, &x), &y) in o.iter_mut().zip(&x[r.clone()]).zip(&y[r]) {
                    o.write(f(x, y));
                }
            },
        )
    });
    // SAFETY: every element written.
    unsafe { out.finish() }
}

mod activation;
#[cfg(feature = "blas")]
pub mod blas;
mod fused;
mod matmul;
pub mod memory;
mod reduce;
mod tanh;

/// The library computing the closed-form derivatives' CPU products: "gemm crate", or with the
/// `blas` feature the CBLAS library loaded (see [`blas`]).
pub fn gemm_library() -> String {
    #[cfg(feature = "blas")]
    if let Some(lib) = blas::cblas() {
        return lib.name.clone();
    }
    "gemm crate".into()
}

pub(crate) use fused::{bias_act, bias_mul, col_sum, mul_add, mul_pair};
pub use matmul::{GemmCall, record_gemms};
pub(crate) use matmul::{matmul, n, t};
pub(crate) use reduce::{axpy, dot, slice_dot};
pub(crate) use tanh::{tanh, tanh64};

#[cfg(test)]
mod tests {
    use super::tanh::tanh_t;
    use super::*;

    #[test]
    fn tanh_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -30.0;
        while x < 30.0 {
            for v in [x, x * 1e-3, x * 1e-9] {
                let (got, want) = (tanh64(v), v.tanh());
                let e = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
                worst = worst.max(e);
            }
            x += 0.000_731;
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(tanh64(0.0), 0.0);
        assert!(tanh64(-0.0).is_sign_negative());
        assert_eq!(tanh64(f64::INFINITY), 1.0);
        assert_eq!(tanh64(f64::NEG_INFINITY), -1.0);
        assert!(tanh64(f64::NAN).is_nan());
        // f32 through f64: within one ulp of the f64 value rounded.
        for i in -20_000..20_000 {
            let v = i as f32 * 7.3e-4;
            let got = tanh_t(v);
            let want = (v as f64).tanh() as f32;
            assert!(
                (got - want).abs() <= f32::EPSILON * want.abs(),
                "{v}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn tanh_op_is_differentiable_twice() {
        crate::autodiff::ensure_second_order().unwrap();
        let x = candle_core::Var::new(&[0.3f64, -1.2, 2.5], &Device::Cpu).unwrap();
        let y = tanh(x.as_tensor()).unwrap().sum_all().unwrap();
        let g = y.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let gg = g.sum_all().unwrap().backward().unwrap();
        let gg: Vec<f64> = gg.get(x.as_tensor()).unwrap().to_vec1().unwrap();
        let g: Vec<f64> = g.to_vec1().unwrap();
        for (i, v) in [0.3f64, -1.2, 2.5].into_iter().enumerate() {
            let t = v.tanh();
            assert!((g[i] - (1.0 - t * t)).abs() < 1e-15);
            assert!((gg[i] + 2.0 * t * (1.0 - t * t)).abs() < 1e-15);
        }
    }

    /// Every kernel against its candle-operation form, large enough to run in parallel.
    #[test]
    fn kernels_match_generic_forms() {
        let mut rng = crate::rng::Rng::new(7);
        let (m, k) = (301, 233);
        let mk = |r: usize, c: usize, rng: &mut crate::rng::Rng| {
            Tensor::from_vec(rng.normals(r * c), (r, c), &Device::Cpu).unwrap()
        };
        let (z, s, y, u) = (
            mk(m, k, &mut rng),
            mk(m, k, &mut rng),
            mk(m, k, &mut rng),
            mk(m, k, &mut rng),
        );
        let w = mk(k, 97, &mut rng);
        let w2 = mk(m, 97, &mut rng);
        let b = Tensor::from_vec(rng.normals(k), k, &Device::Cpu).unwrap();
        let max_abs = |t: &Tensor| -> f64 {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        for dt in [DType::F64, DType::F32] {
            let c = |t: &Tensor| t.to_dtype(dt).unwrap();
            let (z, s, y, u, b, w, w2) = (c(&z), c(&s), c(&y), c(&u), c(&b), c(&w), c(&w2));
            // Kernel vs candle form, compared in f64: 1e-13 relative in f64, 1e-5 in f32.
            let rel = if dt == DType::F64 { 1e-13 } else { 1e-5 };
            let tol_ok = |f: &dyn Fn() -> Vec<Tensor>| {
                let fast = f();
                let prev = force_generic(true);
                let slow = f();
                force_generic(prev);
                for (a, b) in fast.iter().zip(&slow) {
                    let (a, b) = (
                        a.to_dtype(DType::F64).unwrap(),
                        b.to_dtype(DType::F64).unwrap(),
                    );
                    let (d, s) = (max_abs(&(&a - &b).unwrap()), max_abs(&b));
                    assert!(
                        d <= rel * s.max(1.0),
                        "{dt:?} kernel differs by {d} (scale {s})"
                    );
                }
            };
            for act in [
                None,
                Some(Activation::Relu),
                Some(Activation::Tanh),
                Some(Activation::Gelu),
            ] {
                tol_ok(&|| {
                    let (h, s1, s2) = bias_act(&z, &b, act, true).unwrap();
                    [Some(h), s1, s2].into_iter().flatten().collect()
                });
            }
            tol_ok(&|| {
                let (a, b) = mul_pair(&z, &s, Some(&y)).unwrap();
                vec![a, b.unwrap()]
            });
            tol_ok(&|| {
                let (a, b) = bias_mul(&z, &b, Some(&s)).unwrap();
                vec![a, b.unwrap()]
            });
            tol_ok(&|| vec![mul_add(&z, &s, Some((&y, &u))).unwrap()]);
            tol_ok(&|| vec![col_sum(&z).unwrap()]);
            tol_ok(&|| vec![tanh(&z).unwrap()]);
            tol_ok(&|| vec![axpy(&z, -0.37, &s).unwrap()]);
            let fast = (dot(&z, &s).unwrap(), dot(&z, &z).unwrap());
            let prev = force_generic(true);
            let slow = (dot(&z, &s).unwrap(), dot(&z, &z).unwrap());
            force_generic(prev);
            let tol = if dt == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(
                (fast.0 - slow.0).abs() <= tol * slow.0.abs().max(1.0),
                "{fast:?} {slow:?}"
            );
            assert!((fast.1 - slow.1).abs() <= tol * slow.1, "{fast:?} {slow:?}");
            tol_ok(&|| {
                vec![
                    matmul(&[(n(&z), n(&w))]).unwrap(),
                    matmul(&[(t(&z), n(&w2)), (t(&s), n(&w2))]).unwrap(),
                    matmul(&[(n(&w2), t(&w)), (n(&w2), t(&w))]).unwrap(),
                ]
            });
        }
    }

    #[test]
    fn products_do_not_depend_on_the_thread_count() {
        // Large enough for the `gemm` crate to block the inner dimension and for the output to
        // be split among threads, by rows and by columns; a sum of two products accumulates
        // into one buffer.
        let (m, k, nn) = (300, 2500, 200);
        for dt in [DType::F32, DType::F64] {
            let mk = |r: usize, c: usize, seed: u64| {
                let v: Vec<f64> = crate::rng::Rng::stream(seed, "gemm-threads").normals(r * c);
                Tensor::from_vec(v, (r, c), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap()
            };
            let (a, b, c2, d2) = (mk(k, m, 1), mk(k, nn, 2), mk(m, k, 3), mk(nn, k, 4));
            let run = || {
                vec![
                    matmul(&[(t(&a), n(&b))]).unwrap(),
                    matmul(&[(t(&a), n(&b)), (n(&c2), t(&d2))]).unwrap(),
                    // Wider than tall: split by columns.
                    matmul(&[(t(&b), n(&a))]).unwrap(),
                ]
            };
            let one = matmul::with_threads(1, run);
            let two = matmul::with_threads(2, run);
            let three = matmul::with_threads(3, run);
            // A CBLAS library (feature `blas`) may pick other kernels for other block shapes:
            // there only the products' values are checked.
            let exact = gemm_library() == "gemm crate";
            for ((x, y), z) in one.iter().zip(&two).zip(&three).filter(|_| exact) {
                let bits = |t: &Tensor| -> Vec<u64> {
                    t.to_dtype(DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                        .into_iter()
                        .map(f64::to_bits)
                        .collect()
                };
                assert_eq!(bits(x), bits(y), "{dt:?}: 1 vs 2 threads");
                assert_eq!(bits(x), bits(z), "{dt:?}: 1 vs 3 threads");
            }
            // And the product is right: against candle's generic form.
            let prev = force_generic(true);
            let slow = run();
            force_generic(prev);
            let tol = if dt == DType::F64 { 1e-12 } else { 1e-4 };
            for (x, y) in one.iter().zip(&slow) {
                let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap();
                let scale = y.abs().unwrap().max_all().unwrap();
                let r = (diff / scale).unwrap().to_dtype(DType::F64).unwrap();
                let r = r.to_scalar::<f64>().unwrap();
                assert!(r <= tol, "{dt:?}: relative difference {r:e}");
            }
        }
    }

    #[test]
    fn products_are_recorded_with_their_shapes() {
        let x = Tensor::ones((5, 3), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
        let (r, calls) = record_gemms(|| matmul(&[(n(&x), t(&w)), (n(&x), t(&w))]));
        assert_eq!(r.unwrap().dims(), &[5, 4]);
        let call = |accumulate| GemmCall {
            m: 5,
            n: 4,
            k: 3,
            ta: false,
            tb: true,
            accumulate,
            dtype: "f32".into(),
        };
        assert_eq!(calls, vec![call(false), call(true)]);
        // Off again afterwards.
        matmul(&[(n(&x), t(&w))]).unwrap();
        assert!(record_gemms(|| ()).1.is_empty());
    }
}
