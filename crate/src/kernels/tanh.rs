//! A vectorisable tanh (Cephes formulas) and tanh as a custom op that uses it on the CPU.
use super::*;

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

#[inline(always)]
pub(super) fn tanh_t<T: WithDType>(x: T) -> T {
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
