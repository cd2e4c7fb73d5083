//! Reductions and updates on parameter-sized tensors, accumulated in f64.
use super::*;

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

/// `⟨x, y⟩` of two slices accumulated in f64: four partial sums (vectorises, and is a little more
/// accurate than one running sum), then the tail.
pub(crate) fn slice_dot<T: WithDType>(x: &[T], y: &[T]) -> f64 {
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
}

fn dot_cpu<T: WithDType>(a: &Tensor, b: &Tensor) -> Result<f64> {
    // The same tensor twice (a squared norm): read its storage once.
    let same = a.id() == b.id();
    let total = |x: &[T], y: &[T]| {
        if x.len() < 2 * PAR_MIN {
            return slice_dot(x, y);
        }
        // Fixed chunks, their sums added in order: the same bits on any number of threads
        // (rayon's own `sum` splits by thread, which made a run's gradient norms depend on
        // how many threads it had).
        let parts: Vec<f64> = if parallel(x.len()) {
            x.par_chunks(PAR_MIN)
                .zip(y.par_chunks(PAR_MIN))
                .map(|(x, y)| slice_dot(x, y))
                .collect()
        } else {
            x.chunks(PAR_MIN)
                .zip(y.chunks(PAR_MIN))
                .map(|(x, y)| slice_dot(x, y))
                .collect()
        };
        parts.iter().sum()
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
    fn a_long_dot_has_the_same_bits_on_any_number_of_threads() {
        let mut rng = crate::rng::Rng::new(3);
        let n = 5 * PAR_MIN + 77;
        let a = Tensor::from_vec(rng.normals(n), n, &Device::Cpu).unwrap();
        let b = Tensor::from_vec(rng.normals(n), n, &Device::Cpu).unwrap();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| (dot(&a, &b).unwrap(), dot(&a, &a).unwrap()))
        };
        let one = on(1);
        for t in [2, 3, 4] {
            let (x, y) = on(t);
            assert_eq!(
                (x.to_bits(), y.to_bits()),
                (one.0.to_bits(), one.1.to_bits()),
                "{t}"
            );
        }
        // And the value is the dot product (against a plain f64 sum).
        let (av, bv) = (a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        let plain: f64 = av.iter().zip(&bv).map(|(p, q)| p * q).sum();
        assert!((one.0 - plain).abs() <= 1e-10 * plain.abs().max(1.0));
    }
}
