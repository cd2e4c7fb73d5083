//! Shared fixtures for the integration tests.
#![allow(dead_code)]
use candle_core::{DType, Device, Tensor};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::Objective;
use eoslab::rng::Rng;

/// A random classification problem: `n` points in `d` dims, `k` classes.
pub fn random_objective(
    n: usize,
    d: usize,
    k: usize,
    loss: LossKind,
    dtype: DType,
    seed: u64,
    chunk: Option<usize>,
) -> Objective {
    let mut rng = Rng::new(seed);
    let x = Tensor::from_vec(rng.normals(n * d), (n, d), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let y: Vec<u32> = (0..n).map(|_| rng.below(k) as u32).collect();
    let y = Tensor::from_vec(y, n, &Device::Cpu).unwrap();
    Objective::new(x, y, k, loss, chunk).unwrap()
}

/// An MLP on `widths`.
pub fn mlp(widths: &[usize], act: Activation, dtype: DType, seed: u64) -> Model {
    Model::new(
        &ModelSpec::mlp(widths, act),
        InitSpec { scale: 1.0, seed },
        &Device::Cpu,
        dtype,
    )
    .unwrap()
}

/// Random parameter-shaped direction.
pub fn random_direction(model: &Model, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    model
        .params()
        .iter()
        .map(|(_, v)| {
            Tensor::from_vec(rng.normals(v.elem_count()), v.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(model.dtype())
                .unwrap()
        })
        .collect()
}

/// Flatten to f64 host values.
pub fn host(ts: &[Tensor]) -> Vec<f64> {
    ts.iter()
        .flat_map(|t| {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        })
        .collect()
}

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

/// Add N(0, 0.1²) noise to every parameter: biases start at exactly zero, which can put ReLU
/// pre-activations exactly on the kink, where a finite difference is meaningless.
pub fn jitter(model: &Model, seed: u64) {
    let mut rng = Rng::new(seed);
    let p: Vec<Tensor> = model
        .tensors()
        .iter()
        .map(|t| {
            let noise = Tensor::from_vec(rng.normals(t.elem_count()), t.shape(), &Device::Cpu)
                .unwrap()
                .to_dtype(t.dtype())
                .unwrap();
            (t + (noise * 0.1).unwrap()).unwrap()
        })
        .collect();
    model.set_tensors(&p).unwrap();
}
