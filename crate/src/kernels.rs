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
use crate::model::Activation;
use crate::{Error, Result};
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

// ---------------------------------------------------------------------------------------------
// tanh

/// Cephes `tanh` for |x| < 0.625: x + x³ P(x²)/Q(x²).
const TP: [f64; 3] = [
    -9.643_991_794_250_523e-1,
    -9.928_772_310_019_186e1,
    -1.614_687_684_417_084_5e3,
];
const TQ: [f64; 3] = [
    1.128_116_784_916_329_3e2,
    2.235_488_390_601_004_6e3,
    4.844_063_053_251_255e3,
];
/// Cephes `exp` on [−½ln2, ½ln2]: 1 + 2 r P(r²) / (Q(r²) − r P(r²)).
const EP: [f64; 3] = [
    1.261_771_930_748_105_9e-4,
    3.029_944_077_074_419_6e-2,
    9.999_999_999_999_999e-1,
];
const EQ: [f64; 4] = [
    3.001_985_051_386_644_5e-6,
    2.524_483_403_496_841e-3,
    2.272_655_482_081_550_3e-1,
    2.0,
];

/// tanh(x) in f64, branch-free so that loops over it vectorise; a few ulp from the correctly
/// rounded value, NaN and ±∞ handled.
#[inline(always)]
pub(crate) fn tanh64(x: f64) -> f64 {
    // Beyond 22, tanh rounds to ±1; comparisons with NaN are false, so NaN propagates.
    let ax = x.abs();
    let ax = if ax > 22.0 { 22.0 } else { ax };
    // exp(2|x|) by range reduction y = n ln2 + r, n = round(y / ln2) via the 1.5·2⁵² trick.
    let y = 2.0 * ax;
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let t = std::f64::consts::LOG2_E * y + MAGIC;
    let n = t - MAGIC;
    let r = (y - n * 6.931_457_519_531_25e-1) - n * 1.428_606_820_309_417_2e-6;
    let rr = r * r;
    let p = r * ((EP[0] * rr + EP[1]) * rr + EP[2]);
    let q = ((EQ[0] * rr + EQ[1]) * rr + EQ[2]) * rr + EQ[3];
    let e = 1.0 + 2.0 * (p / (q - p));
    // 2ⁿ from the low mantissa bits of t (n + 1023 lands in the exponent field).
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    let big = 1.0 - 2.0 / (e * scale + 1.0);
    // Small |x|: the rational form, free of cancellation.
    let s = ax * ax;
    let small =
        ax + ax * s * (((TP[0] * s + TP[1]) * s + TP[2]) / (((s + TQ[0]) * s + TQ[1]) * s + TQ[2]));
    let z = if ax >= 0.625 { big } else { small };
    z.copysign(x)
}

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

#[inline(always)]
fn tanh_t<T: WithDType>(x: T) -> T {
    T::from_f64(tanh64(x.to_f64()))
}

/// tanh as a custom op: the vectorised kernel on the CPU, candle's own kernel elsewhere, and a
/// backward `g (1 − y²)` built from ordinary (differentiable) operations.
struct Tanh;

impl CustomOp1 for Tanh {
    fn name(&self) -> &'static str {
        "eoslab-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: WithDType>(x: &[T], l: &Layout) -> candle_core::Result<CpuStorage> {
            // `tanh` below makes its input contiguous.
            let (a, b) = l.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg("eoslab tanh: non-contiguous input".into())
            })?;
            let out: Vec<T> = map1(&x[a..b], tanh_t);
            Ok(T::to_cpu_storage_owned(out))
        }
        let out = match s {
            CpuStorage::F32(x) => run(x, l)?,
            CpuStorage::F64(x) => run(x, l)?,
            _ => {
                return Err(candle_core::Error::Msg(
                    "eoslab tanh: only f32 and f64".into(),
                ));
            }
        };
        Ok((out, l.shape().clone()))
    }

    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s.unary_impl::<candle_core::op::Tanh>(l)?, l.shape().clone()))
    }

    fn metal_fwd(
        &self,
        s: &candle_core::MetalStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::MetalStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s.unary_impl::<candle_core::op::Tanh>(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((grad * res.sqr()?.affine(-1.0, 1.0)?)?))
    }
}

/// Element-wise tanh (differentiable to any order; see [`Tanh`]).
pub(crate) fn tanh(x: &Tensor) -> Result<Tensor> {
    if GENERIC.with(|g| g.get()) || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.tanh()?);
    }
    Ok(x.contiguous()?.apply_op1(Tanh)?)
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

// ---------------------------------------------------------------------------------------------
// matrix products

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

// ---------------------------------------------------------------------------------------------
// fused element-wise passes

/// GELU (tanh form) at `a`: σ(a), σ'(a), σ''(a).
#[inline(always)]
fn gelu_point(a: f64) -> (f64, f64, f64) {
    const K: f64 = 0.044715;
    const C: f64 = 0.797_884_560_802_865_4; // √(2/π)
    let x2 = a * a;
    let t = tanh64(C * (a * (1.0 + K * x2)));
    let sech2 = 1.0 - t * t;
    let du = C * (1.0 + 3.0 * K * x2);
    let h = 0.5 * a * (1.0 + t);
    let s1 = 0.5 * (1.0 + t) + 0.5 * a * sech2 * du;
    let s2 = sech2 * du - a * t * sech2 * du * du + 0.5 * a * sech2 * (6.0 * C * K * a);
    (h, s1, s2)
}

/// The generic (candle operations) form of [`bias_act`].
fn bias_act_generic(
    z: &Tensor,
    b: &Tensor,
    act: Option<Activation>,
    second: bool,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let a = z.broadcast_add(b)?;
    let Some(act) = act else {
        return Ok((a, None, None));
    };
    Ok(match act {
        Activation::Relu => {
            let s1 = a.gt(0.0)?.to_dtype(a.dtype())?;
            ((&a * &s1)?, Some(s1), None)
        }
        Activation::Tanh => {
            let h = a.tanh()?;
            let s1 = h.sqr()?.affine(-1.0, 1.0)?;
            let s2 = if second {
                Some(((&h * &s1)? * -2.0)?)
            } else {
                None
            };
            (h, Some(s1), s2)
        }
        Activation::Gelu => {
            const K: f64 = 0.044715;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let x2 = a.sqr()?;
            let u = ((&x2 * K)? + 1.0)?.mul(&a)?.affine(c, 0.0)?;
            let t = u.tanh()?;
            let sech2 = t.sqr()?.affine(-1.0, 1.0)?;
            let du = (&x2 * (3.0 * K * c))?.affine(1.0, c)?;
            let h = ((&a * 0.5)? * (&t + 1.0)?)?;
            let half_x_sech2 = ((&a * &sech2)? * 0.5)?;
            let s1 = ((&t + 1.0)?.affine(0.5, 0.0)? + (&half_x_sech2 * &du)?)?;
            let s2 = if second {
                let term1 = (&sech2 * &du)?;
                let term2 = ((&half_x_sech2 * 2.0)? * &t)?.mul(&du.sqr()?)?;
                let term3 = (&half_x_sech2 * (&a * (6.0 * c * K))?)?;
                Some(((term1 - term2)? + term3)?)
            } else {
                None
            };
            (h, Some(s1), s2)
        }
    })
}

/// For `a = z + b` (`z` `[m, c]`, `b` `[c]` broadcast over rows): `a` itself when `act` is
/// `None`, else `(σ(a), σ'(a), σ''(a) if second)`; σ'' is `None` for ReLU (it vanishes).
pub(crate) fn bias_act(
    z: &Tensor,
    b: &Tensor,
    act: Option<Activation>,
    second: bool,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let second = second && !matches!(act, Some(Activation::Relu));
    match cpu_dtype(&[z, b]) {
        Some(DType::F32) => bias_act_cpu::<f32>(z, b, act, second),
        Some(DType::F64) => bias_act_cpu::<f64>(z, b, act, second),
        _ => {
            let (h, s1, s2) = bias_act_generic(z, b, act, second)?;
            Ok((h, s1, s2.filter(|_| second)))
        }
    }
}

fn bias_act_cpu<T: WithDType>(
    z: &Tensor,
    b: &Tensor,
    act: Option<Activation>,
    second: bool,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let (m, c) = z.dims2()?;
    if b.dims() != [c] {
        return Err(Error::Numerics("kernel bias_act: bias shape".into()));
    }
    let len = m * c;
    let (h, s1, s2) = (Out::<T>::new(len), Out::<T>::new(len), Out::<T>::new(len));
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    with_slices!(T, [z, b], {
        for_ranges(len, chunk_len(c), |r| {
            // SAFETY: disjoint row-aligned ranges within 0..len.
            let (h, s1, s2) =
                unsafe { (h.part(r.clone()), s1.part(r.clone()), s2.part(r.clone())) };
            let z = &z[r];
            simd(
                #[inline(always)]
                || {
                    // Row by row, the bias indexed by column; (z + b) is rounded to T first, as
                    // the forward pass `z + b` does.
                    let rows = z.chunks(c).zip(h.chunks_mut(c)).zip(s1.chunks_mut(c));
                    let rows = rows.zip(s2.chunks_mut(c));
                    for (((zr, hr), s1r), s2r) in rows {
                        let cols = zr.iter().zip(b).zip(hr.iter_mut()).zip(s1r.iter_mut());
                        match act {
                            None => {
                                for (((&z, &b), h), _) in cols {
                                    h.write(z + b);
                                }
                            }
                            Some(Activation::Relu) => {
                                // In the model's dtype, as candle's relu: no conversions.
                                for (((&z, &b), h), s1) in cols {
                                    let a = z + b;
                                    let pos = a > zero;
                                    h.write(if pos { a } else { zero });
                                    s1.write(if pos { one } else { zero });
                                }
                            }
                            Some(Activation::Tanh) => {
                                for ((((&z, &b), h), s1), s2) in cols.zip(s2r.iter_mut()) {
                                    let t = tanh64((z + b).to_f64());
                                    let d1 = 1.0 - t * t;
                                    h.write(T::from_f64(t));
                                    s1.write(T::from_f64(d1));
                                    if second {
                                        s2.write(T::from_f64(-2.0 * t * d1));
                                    }
                                }
                            }
                            Some(Activation::Gelu) => {
                                for ((((&z, &b), h), s1), s2) in cols.zip(s2r.iter_mut()) {
                                    let (v, d1, d2) = gelu_point((z + b).to_f64());
                                    h.write(T::from_f64(v));
                                    s1.write(T::from_f64(d1));
                                    if second {
                                        s2.write(T::from_f64(d2));
                                    }
                                }
                            }
                        }
                    }
                },
            )
        });
    });
    // SAFETY: the ranges covered every element of h always, of s1 when there is an activation,
    // of s2 when `second`; the others are dropped unfinished (plain numbers, nothing to drop).
    let h = wrap(unsafe { h.finish() }, &[m, c])?;
    let s1 = match act {
        None => None,
        Some(_) => Some(wrap(unsafe { s1.finish() }, &[m, c])?),
    };
    let s2 = if second {
        Some(wrap(unsafe { s2.finish() }, &[m, c])?)
    } else {
        None
    };
    Ok((h, s1, s2))
}

/// `(d ⊙ s1, d ⊙ s2)` (the second only when `s2` is given).
pub(crate) fn mul_pair(
    d: &Tensor,
    s1: &Tensor,
    s2: Option<&Tensor>,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut all = vec![d, s1];
    all.extend(s2);
    if all.iter().any(|t| t.dims() != d.dims()) {
        return Err(Error::Numerics("kernel mul_pair: shapes".into()));
    }
    let shape = d.dims().to_vec();
    let Some(s2) = s2 else {
        let prod = match cpu_dtype(&all) {
            Some(DType::F32) => wrap(
                with_slices!(f32, [d, s1], map2(d, s1, |a, b| a * b)),
                &shape,
            )?,
            Some(DType::F64) => wrap(
                with_slices!(f64, [d, s1], map2(d, s1, |a, b| a * b)),
                &shape,
            )?,
            _ => (d * s1)?,
        };
        return Ok((prod, None));
    };
    match cpu_dtype(&all) {
        Some(DType::F32) => mul_pair_cpu::<f32>(d, s1, s2),
        Some(DType::F64) => mul_pair_cpu::<f64>(d, s1, s2),
        _ => Ok(((d * s1)?, Some((d * s2)?))),
    }
}

fn mul_pair_cpu<T: WithDType>(
    d: &Tensor,
    s1: &Tensor,
    s2: &Tensor,
) -> Result<(Tensor, Option<Tensor>)> {
    let shape = d.dims().to_vec();
    let len = d.elem_count();
    let (o1, o2) = (Out::<T>::new(len), Out::<T>::new(len));
    with_slices!(T, [d, s1, s2], {
        for_ranges(len, PAR_MIN, |r| {
            // SAFETY: disjoint ranges within 0..len.
            let (o1, o2) = unsafe { (o1.part(r.clone()), o2.part(r.clone())) };
            simd(
                #[inline(always)]
                || {
                    let it = o1.iter_mut().zip(o2.iter_mut()).zip(&d[r.clone()]);
                    for (((o1, o2), &d), (&a, &b)) in it.zip(s1[r.clone()].iter().zip(&s2[r])) {
                        o1.write(d * a);
                        o2.write(d * b);
                    }
                },
            )
        });
    });
    // SAFETY: every element of both written.
    Ok((
        wrap(unsafe { o1.finish() }, &shape)?,
        Some(wrap(unsafe { o2.finish() }, &shape)?),
    ))
}

/// `(p + c, s ⊙ (p + c))` for `p` `[m, k]`, `c` `[k]` broadcast over rows; the second only when
/// `s` is given.
pub(crate) fn bias_mul(
    p: &Tensor,
    c: &Tensor,
    s: Option<&Tensor>,
) -> Result<(Tensor, Option<Tensor>)> {
    let Some(s) = s else {
        return Ok((bias_act(p, c, None, false)?.0, None));
    };
    match cpu_dtype(&[p, c, s]) {
        Some(DType::F32) => bias_mul_cpu::<f32>(p, c, s),
        Some(DType::F64) => bias_mul_cpu::<f64>(p, c, s),
        _ => {
            let ra = p.broadcast_add(c)?;
            let rh = (&ra * s)?;
            Ok((ra, Some(rh)))
        }
    }
}

fn bias_mul_cpu<T: WithDType>(
    p: &Tensor,
    c: &Tensor,
    s: &Tensor,
) -> Result<(Tensor, Option<Tensor>)> {
    let (m, k) = p.dims2()?;
    if c.dims() != [k] || s.dims() != [m, k] {
        return Err(Error::Numerics("kernel bias_mul: shapes".into()));
    }
    let len = m * k;
    let (ra, rh) = (Out::<T>::new(len), Out::<T>::new(len));
    with_slices!(T, [p, c, s], {
        for_ranges(len, chunk_len(k), |r| {
            // SAFETY: disjoint row-aligned ranges within 0..len.
            let (ra, rh) = unsafe { (ra.part(r.clone()), rh.part(r.clone())) };
            let (p, s) = (&p[r.clone()], &s[r]);
            simd(
                #[inline(always)]
                || {
                    let rows = p.chunks(k).zip(s.chunks(k));
                    let rows = rows.zip(ra.chunks_mut(k)).zip(rh.chunks_mut(k));
                    for (((pr, sr), rar), rhr) in rows {
                        let cols = pr.iter().zip(c).zip(sr);
                        for (((&p, &c), &s), (ra, rh)) in
                            cols.zip(rar.iter_mut().zip(rhr.iter_mut()))
                        {
                            let v = p + c;
                            ra.write(v);
                            rh.write(v * s);
                        }
                    }
                },
            )
        });
    });
    // SAFETY: every element of both written.
    Ok((
        wrap(unsafe { ra.finish() }, &[m, k])?,
        Some(wrap(unsafe { rh.finish() }, &[m, k])?),
    ))
}

/// `x ⊙ s + y ⊙ u` (the second term only when `y` and `u` are given).
pub(crate) fn mul_add(x: &Tensor, s: &Tensor, yu: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let Some((y, u)) = yu else {
        return Ok(mul_pair(x, s, None)?.0);
    };
    match cpu_dtype(&[x, s, y, u]) {
        Some(DType::F32) => mul_add_cpu::<f32>(x, s, y, u),
        Some(DType::F64) => mul_add_cpu::<f64>(x, s, y, u),
        _ => Ok(((x * s)? + (y * u)?)?),
    }
}

fn mul_add_cpu<T: WithDType>(x: &Tensor, s: &Tensor, y: &Tensor, u: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    if [s, y, u].iter().any(|t| t.dims() != shape.as_slice()) {
        return Err(Error::Numerics("kernel mul_add: shapes".into()));
    }
    let len = x.elem_count();
    let out = Out::<T>::new(len);
    with_slices!(T, [x, s, y, u], {
        for_ranges(len, PAR_MIN, |r| {
            // SAFETY: disjoint ranges within 0..len.
            let o = unsafe { out.part(r.clone()) };
            simd(
                #[inline(always)]
                || {
                    let a = x[r.clone()].iter().zip(&s[r.clone()]);
                    let b = y[r.clone()].iter().zip(&u[r]);
                    for ((o, (&x, &s)), (&y, &u)) in o.iter_mut().zip(a).zip(b) {
                        o.write(x * s + y * u);
                    }
                },
            )
        });
    });
    // SAFETY: every element written.
    wrap(unsafe { out.finish() }, &shape)
}

/// Column sums of `a` `[m, k]` (accumulated in f64), `[k]`.
pub(crate) fn col_sum(a: &Tensor) -> Result<Tensor> {
    match cpu_dtype(&[a]) {
        Some(DType::F32) => col_sum_cpu::<f32>(a),
        Some(DType::F64) => col_sum_cpu::<f64>(a),
        _ => Ok(a.sum(0)?),
    }
}

fn col_sum_cpu<T: WithDType>(a: &Tensor) -> Result<Tensor> {
    let (m, k) = a.dims2()?;
    let acc = with_slices!(T, [a], {
        let run = |rows: &[T]| {
            let mut acc = vec![0.0f64; k];
            simd(
                #[inline(always)]
                || {
                    for r in rows.chunks(k) {
                        for (s, &v) in acc.iter_mut().zip(r) {
                            *s += v.to_f64();
                        }
                    }
                },
            );
            acc
        };
        if parallel(m * k) {
            a.par_chunks(chunk_len(k)).map(run).reduce(
                || vec![0.0; k],
                |mut x, y| {
                    x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
                    x
                },
            )
        } else {
            run(a)
        }
    });
    wrap(acc.into_iter().map(T::from_f64).collect(), &[k])
}

// ---------------------------------------------------------------------------------------------
// reductions and updates on parameter-sized tensors

/// `⟨a, b⟩` accumulated in f64 (`a = b` gives the squared norm).
pub(crate) fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        return Err(Error::Numerics(format!(
            "dot: shapes {:?} and {:?}",
            a.dims(),
            b.dims()
        )));
    }
    match cpu_dtype(&[a, b]) {
        Some(DType::F32) => dot_cpu::<f32>(a, b),
        Some(DType::F64) => dot_cpu::<f64>(a, b),
        _ => Ok((a * b)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?),
    }
}

fn dot_cpu<T: WithDType>(a: &Tensor, b: &Tensor) -> Result<f64> {
    // The same tensor twice (a squared norm): read its storage once.
    let same = a.id() == b.id();
    let run = |x: &[T], y: &[T]| {
        simd(
            #[inline(always)]
            || {
                let mut acc = [0.0f64; 4];
                let (cx, cy) = (x.chunks_exact(4), y.chunks_exact(4));
                let tail: f64 = cx
                    .remainder()
                    .iter()
                    .zip(cy.remainder())
                    .map(|(p, q)| p.to_f64() * q.to_f64())
                    .sum();
                for (p, q) in cx.zip(cy) {
                    for i in 0..4 {
                        acc[i] += p[i].to_f64() * q[i].to_f64();
                    }
                }
                (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
            },
        )
    };
    let total = |x: &[T], y: &[T]| {
        if parallel(x.len()) {
            x.par_chunks(PAR_MIN)
                .zip(y.par_chunks(PAR_MIN))
                .map(|(x, y)| run(x, y))
                .sum()
        } else {
            run(x, y)
        }
    };
    Ok(if same {
        with_slices!(T, [a], total(a, a))
    } else {
        with_slices!(T, [a, b], total(a, b))
    })
}

/// `x + c y` as a new tensor.
pub(crate) fn axpy(x: &Tensor, c: f64, y: &Tensor) -> Result<Tensor> {
    if x.dims() != y.dims() {
        return Err(Error::Numerics("axpy: shapes".into()));
    }
    match cpu_dtype(&[x, y]) {
        Some(DType::F32) => axpy_cpu::<f32>(x, c, y),
        Some(DType::F64) => axpy_cpu::<f64>(x, c, y),
        _ => Ok((x + (y * c)?)?),
    }
}

fn axpy_cpu<T: WithDType>(x: &Tensor, c: f64, y: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let c = T::from_f64(c);
    let out = with_slices!(T, [x, y], map2(x, y, |a, b| a + c * b));
    wrap(out, &shape)
}

#[cfg(test)]
mod tests {
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
        let both = |f: &dyn Fn() -> Vec<Tensor>| {
            let fast = f();
            let prev = force_generic(true);
            let slow = f();
            force_generic(prev);
            for (a, b) in fast.iter().zip(&slow) {
                let d = (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                let s = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(d <= 1e-13 * s.max(1.0), "kernel differs by {d} (scale {s})");
            }
        };
        for dt in [DType::F64, DType::F32] {
            let c = |t: &Tensor| t.to_dtype(dt).unwrap();
            let (z, s, y, u, b, w, w2) = (c(&z), c(&s), c(&y), c(&u), c(&b), c(&w), c(&w2));
            let tol_ok = |f: &dyn Fn() -> Vec<Tensor>| {
                if dt == DType::F64 {
                    both(f)
                } else {
                    let fast = f();
                    let prev = force_generic(true);
                    let slow = f();
                    force_generic(prev);
                    for (a, b) in fast.iter().zip(&slow) {
                        let a = a.to_dtype(DType::F64).unwrap();
                        let b = b.to_dtype(DType::F64).unwrap();
                        let d = (&a - &b)
                            .unwrap()
                            .abs()
                            .unwrap()
                            .max_all()
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap();
                        let s = b
                            .abs()
                            .unwrap()
                            .max_all()
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap();
                        assert!(
                            d <= 1e-5 * s.max(1.0),
                            "f32 kernel differs by {d} (scale {s})"
                        );
                    }
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
}
