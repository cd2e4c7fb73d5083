//! Where the time of eoslab's primitives goes on one device, at the paper's size (MLP
//! 3072-512-512-2 ReLU, MSE, n examples of random inputs): a GD step, the gradient graph, one
//! Hessian-vector product, the flat-vector round trip around it, and a cold Lanczos solve split
//! into its products and its basis work. Every timing ends with a read-back, so asynchronous
//! devices are timed to completion. Not a test; `make bench` compares against PyTorch.
//!
//! ```text
//! cargo run --release --example device_timing -- [DEVICE=cpu] [DTYPE=f32] [N=10000] [REPS=10]
//! target/cuda/release/examples/device_timing cuda:0      # built with --features cuda
//! ```
use candle_core::{DType, Tensor};
use eoslab::experiment::config::parse_device;
use eoslab::hessian::{HessianOp, LanczosConfig, lanczos};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec, flatten};
use eoslab::objective::Objective;
use eoslab::rng::Rng;
use eoslab::train::GradientDescent;
use std::cell::Cell;
use std::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Wait for `t` (a read-back forces every queued kernel to finish).
fn sync(t: &Tensor) -> Res<f64> {
    Ok(t.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Median milliseconds of `reps` calls after one untimed call.
fn time(reps: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    f()?;
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[ts.len() / 2])
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let device = parse_device(&arg(0, "cpu"))?;
    let dtype = match arg(1, "f32").as_str() {
        "f32" => DType::F32,
        "f64" => DType::F64,
        d => return Err(format!("dtype {d:?}: use f32 or f64").into()),
    };
    let n: usize = arg(2, "10000").parse()?;
    let reps: usize = arg(3, "10").parse()?;
    let widths = [3072, 512, 512, 2];

    let mut rng = Rng::new(0);
    let x =
        Tensor::from_vec(rng.normals(n * widths[0]), (n, widths[0]), &device)?.to_dtype(dtype)?;
    let y: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let y = Tensor::from_vec(y, n, &device)?;
    let objective = Objective::new(x, y, 2, LossKind::Mse, None)?;
    let spec = ModelSpec::mlp(&widths, Activation::Relu);
    let model = Model::new(
        &spec,
        InitSpec {
            scale: 0.2,
            seed: 0,
        },
        &device,
        dtype,
    )?;
    let mut gd = GradientDescent::new(model, objective, 1e-4, 0.0)?;
    let dim = gd.model.num_params();
    println!("device {device:?}, {dtype:?}, n = {n}, {dim} parameters, median of {reps} (ms)");

    let step = time(reps, || {
        gd.step(&mut [])?;
        Ok(())
    })?;
    println!("{:<34} {step:9.3}", "GD step");
    let (model, objective) = (&gd.model, &gd.objective);
    let graph = time(reps, || {
        let op = HessianOp::new(model, objective)?;
        let _ = op.value();
        Ok(())
    })?;
    println!("{:<34} {graph:9.3}", "gradient graph");
    let op = HessianOp::new(model, objective)?;
    let v_flat = Tensor::from_vec(rng.normals(dim), dim, &device)?.to_dtype(dtype)?;
    let v = model.unflatten(&v_flat)?;
    let hvp = time(reps, || {
        sync(&op.apply(&v)?[0])?;
        Ok(())
    })?;
    println!("{:<34} {hvp:9.3}", "HVP (parameter-shaped)");
    let round = time(reps, || {
        sync(&flatten(&model.unflatten(&v_flat)?)?)?;
        Ok(())
    })?;
    println!("{:<34} {round:9.3}", "unflatten + flatten");
    let hvp_flat = time(reps, || {
        sync(&op.apply_flat(&v_flat)?)?;
        Ok(())
    })?;
    println!("{:<34} {hvp_flat:9.3}", "HVP (flat, as Lanczos calls it)");

    // A cold Lanczos solve: products timed inside the operator, the rest is basis work.
    let cfg = LanczosConfig {
        k: 1,
        tol: 1e-3,
        max_iter: 200,
        seed: 0,
    };
    let in_products = Cell::new(0.0);
    let t = Instant::now();
    let e = lanczos(
        |q| {
            let t = Instant::now();
            let w = op.apply_flat(q)?;
            sync(&w).map_err(|e| eoslab::Error::Numerics(e.to_string()))?;
            in_products.set(in_products.get() + t.elapsed().as_secs_f64() * 1e3);
            Ok(w)
        },
        dim,
        model.device(),
        dtype,
        &cfg,
        None,
    )?;
    let total = t.elapsed().as_secs_f64() * 1e3;
    let (m, prod) = (e.iterations as f64, in_products.get());
    println!(
        "{:<34} {total:9.3}  ({} products: {:.3} ms each, basis work {:.3} ms per iteration)",
        "λ_max, cold start, tol 1e-3",
        e.iterations,
        prod / m,
        (total - prod) / m
    );
    Ok(())
}
