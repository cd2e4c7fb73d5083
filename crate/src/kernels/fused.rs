//! Fused element-wise passes of the MLP derivatives: bias + activation and its derivatives,
//! the backward and R-operator products, column sums.
use super::*;

/// tanh at `a`: σ(a), σ'(a), σ''(a).
#[inline(always)]
fn tanh_point(a: f64) -> (f64, f64, f64) {
    let t = tanh64(a);
    let d1 = 1.0 - t * t;
    (t, d1, -2.0 * t * d1)
}

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
    // Only the buffers that will be written: σ' with an activation, σ'' when `second`.
    let size = |needed: bool| if needed { len } else { 0 };
    let h = Out::<T>::new(len);
    let s1 = Out::<T>::new(size(act.is_some()));
    let s2 = Out::<T>::new(size(second));
    with_slices!(T, [z, b], {
        for_ranges(len, chunk_len(c), |r| {
            let z = &z[r.clone()];
            // SAFETY: disjoint row-aligned ranges within 0..len of the buffers written.
            let h = unsafe { h.part(r.clone()) };
            match act {
                None => simd(
                    #[inline(always)]
                    || {
                        for (zr, hr) in z.chunks(c).zip(h.chunks_mut(c)) {
                            for ((h, &z), &b) in hr.iter_mut().zip(zr).zip(b) {
                                h.write(z + b);
                            }
                        }
                    },
                ),
                Some(Activation::Relu) => {
                    // SAFETY: as `h`; `s1` holds `len` elements with an activation.
                    let s1 = unsafe { s1.part(r.clone()) };
                    simd(
                        #[inline(always)]
                        || relu_rows(z, b, h, s1),
                    )
                }
                Some(act) => {
                    // SAFETY: as `h`; `s2` is only touched when `second` (then of `len`).
                    let s1 = unsafe { s1.part(r.clone()) };
                    let s2 = second.then(|| unsafe { s2.part(r.clone()) });
                    // One monomorphised loop per activation, the point function inlined.
                    if act == Activation::Tanh {
                        simd(
                            #[inline(always)]
                            || smooth_rows(z, b, h, s1, s2, tanh_point),
                        )
                    } else {
                        simd(
                            #[inline(always)]
                            || smooth_rows(z, b, h, s1, s2, gelu_point),
                        )
                    }
                }
            }
        });
    });
    // SAFETY: the ranges covered every element of h always, of s1 when there is an activation,
    // of s2 when `second`; the others have no elements.
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

/// ReLU of `z + b` row by row into `h` and its derivative into `s1`, in the model's dtype as
/// candle's relu (no conversions). Branch-free selects: the signs of a layer's
/// pre-activations are a coin toss, and a branch per element mispredicted half the time.
#[inline(always)]
fn relu_rows<T: WithDType>(z: &[T], b: &[T], h: &mut [MaybeUninit<T>], s1: &mut [MaybeUninit<T>]) {
    let c = b.len();
    let (zero, one) = (T::from_f64(0.0), T::from_f64(1.0));
    let rows = z.chunks_exact(c).zip(h.chunks_exact_mut(c));
    for ((zr, hr), s1r) in rows.zip(s1.chunks_exact_mut(c)) {
        for j in 0..c {
            let a = zr[j] + b[j];
            let pos = a > zero;
            hr[j].write(if pos { a } else { zero });
            s1r[j].write(if pos { one } else { zero });
        }
    }
}

/// A smooth activation's `(σ, σ', σ'')` of `z + b` row by row; σ'' only into `s2` if given.
#[inline(always)]
fn smooth_rows<T: WithDType>(
    z: &[T],
    b: &[T],
    h: &mut [MaybeUninit<T>],
    s1: &mut [MaybeUninit<T>],
    s2: Option<&mut [MaybeUninit<T>]>,
    point: impl Fn(f64) -> (f64, f64, f64),
) {
    let c = b.len();
    let rows = z.chunks(c).zip(h.chunks_mut(c)).zip(s1.chunks_mut(c));
    // (z + b) is rounded to T first, as the forward pass `z + b` does.
    match s2 {
        None => {
            for ((zr, hr), s1r) in rows {
                for (((&z, &b), h), s1) in zr.iter().zip(b).zip(hr).zip(s1r) {
                    let (v, d1, _) = point((z + b).to_f64());
                    h.write(T::from_f64(v));
                    s1.write(T::from_f64(d1));
                }
            }
        }
        Some(s2) => {
            for (((zr, hr), s1r), s2r) in rows.zip(s2.chunks_mut(c)) {
                let cols = zr.iter().zip(b).zip(hr).zip(s1r).zip(s2r);
                for ((((&z, &b), h), s1), s2) in cols {
                    let (v, d1, d2) = point((z + b).to_f64());
                    h.write(T::from_f64(v));
                    s1.write(T::from_f64(d1));
                    s2.write(T::from_f64(d2));
                }
            }
        }
    }
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
