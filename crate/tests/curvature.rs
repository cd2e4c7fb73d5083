//! Hessian-vector products and Lanczos against independent references: f64 central finite
//! differences, a dense eigendecomposition, symmetry, and the silent-detach guard.
mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use eoslab::hessian::{HessianOp, LanczosConfig, dense_hessian, hvp, hvp_finite_difference};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::{Derivatives, Objective};
use eoslab::train::dot;

/// Both ways of computing derivatives (closed form for MLPs, candle's double backward) against
/// f64 central finite differences of the gradient.
fn check_hvp_against_fd(model: &Model, obj: &Objective, what: &str) {
    jitter(model, 1234);
    let v = random_direction(model, 99);
    for how in [Derivatives::Auto, Derivatives::Autodiff] {
        let obj = obj.with_derivatives(how);
        let exact = host(&hvp(model, &obj, &v).unwrap());
        let fd = host(&hvp_finite_difference(model, &obj, &v, 1e-6).unwrap());
        let e = rel_err(&exact, &fd);
        assert!(
            e < 1e-8,
            "{what} ({how:?}): HVP vs finite differences relative error {e:e}"
        );
        assert!(
            exact.iter().any(|x| *x != 0.0),
            "{what} ({how:?}): HVP is all zero"
        );
    }
}

/// The closed-form MLP derivatives equal candle's autodiff (backward, double backward) to
/// rounding, for every activation and loss, chunked or not.
#[test]
fn analytic_mlp_derivatives_match_autodiff() {
    let acts = [Activation::Relu, Activation::Tanh, Activation::Gelu];
    let losses = [LossKind::Mse, LossKind::MseHalf, LossKind::CrossEntropy];
    for (i, act) in acts.into_iter().enumerate() {
        for (j, loss) in losses.into_iter().enumerate() {
            let seed = 100 + 10 * i as u64 + j as u64;
            let m = mlp(&[5, 7, 6, 3], act, DType::F64, seed);
            jitter(&m, seed);
            for chunk in [None, Some(7)] {
                let obj = random_objective(23, 5, 3, loss, DType::F64, seed, chunk);
                let auto = obj.with_derivatives(Derivatives::Autodiff);
                assert_eq!(obj.derivatives(), Derivatives::Auto);
                let what = format!("{act:?}/{loss:?}/chunk {chunk:?}");
                let (l1, g1) = obj.value_and_grad(&m).unwrap();
                let (l2, g2) = auto.value_and_grad(&m).unwrap();
                assert!(
                    (l1 - l2).abs() <= 1e-14 * l2.abs(),
                    "{what}: loss {l1} vs {l2}"
                );
                let e = rel_err(&host(&g1), &host(&g2));
                assert!(e < 1e-13, "{what}: gradient relative error {e:e}");
                let (op1, op2) = (
                    HessianOp::new(&m, &obj).unwrap(),
                    HessianOp::new(&m, &auto).unwrap(),
                );
                assert!((op1.value() - l2).abs() <= 1e-14 * l2.abs(), "{what}");
                let e = rel_err(&host(&op1.gradient().unwrap()), &host(&g2));
                assert!(e < 1e-13, "{what}: graph gradient relative error {e:e}");
                for k in 0..2 {
                    let v = random_direction(&m, seed + k);
                    let h1 = host(&op1.apply(&v).unwrap());
                    let h2 = host(&op2.apply(&v).unwrap());
                    let e = rel_err(&h1, &h2);
                    assert!(e < 1e-12, "{what}: HVP relative error {e:e}");
                }
            }
        }
    }
}

#[test]
fn hvp_matches_finite_differences_mlp_tanh_mse() {
    let m = mlp(&[5, 7, 6, 3], Activation::Tanh, DType::F64, 1);
    let obj = random_objective(20, 5, 3, LossKind::Mse, DType::F64, 2, None);
    check_hvp_against_fd(&m, &obj, "tanh/mse");
}

#[test]
fn hvp_matches_finite_differences_mlp_relu_ce() {
    let m = mlp(&[5, 8, 8, 3], Activation::Relu, DType::F64, 3);
    let obj = random_objective(20, 5, 3, LossKind::CrossEntropy, DType::F64, 4, None);
    check_hvp_against_fd(&m, &obj, "relu/ce");
}

#[test]
fn hvp_matches_finite_differences_mlp_tanh_ce_and_gelu_half() {
    let m = mlp(&[4, 6, 2], Activation::Tanh, DType::F64, 5);
    let obj = random_objective(16, 4, 2, LossKind::CrossEntropy, DType::F64, 6, None);
    check_hvp_against_fd(&m, &obj, "tanh/ce");
    let m = mlp(&[4, 6, 2], Activation::Gelu, DType::F64, 7);
    let obj = random_objective(16, 4, 2, LossKind::MseHalf, DType::F64, 8, None);
    check_hvp_against_fd(&m, &obj, "gelu/mse-half");
}

#[test]
fn hvp_matches_finite_differences_relu_mse() {
    let m = mlp(&[5, 8, 8, 2], Activation::Relu, DType::F64, 9);
    let obj = random_objective(20, 5, 2, LossKind::Mse, DType::F64, 10, None);
    check_hvp_against_fd(&m, &obj, "relu/mse");
}

#[test]
fn hvp_matches_finite_differences_cnn() {
    let spec = ModelSpec::Cnn {
        input: [2, 4, 4],
        channels: vec![3, 4],
        kernel: 3,
        pool: 2,
        outputs: 2,
        activation: Activation::Tanh,
    };
    let m = Model::new(
        &spec,
        InitSpec {
            scale: 1.0,
            seed: 11,
        },
        &Device::Cpu,
        DType::F64,
    )
    .unwrap();
    let obj = random_objective(6, 32, 2, LossKind::CrossEntropy, DType::F64, 12, None);
    check_hvp_against_fd(&m, &obj, "cnn/ce");
    let obj = random_objective(6, 32, 2, LossKind::Mse, DType::F64, 13, None);
    check_hvp_against_fd(&m, &obj, "cnn/mse");
}

#[test]
fn hvp_is_symmetric() {
    let m = mlp(&[6, 10, 3], Activation::Tanh, DType::F64, 14);
    let obj = random_objective(25, 6, 3, LossKind::CrossEntropy, DType::F64, 15, None);
    let op = HessianOp::new(&m, &obj).unwrap();
    let (u, v) = (random_direction(&m, 1), random_direction(&m, 2));
    let uhv = dot(&u, &op.apply(&v).unwrap()).unwrap();
    let vhu = dot(&v, &op.apply(&u).unwrap()).unwrap();
    assert!(
        (uhv - vhu).abs() <= 1e-12 * uhv.abs().max(1.0),
        "uHv {uhv} vs vHu {vhu}"
    );
}

#[test]
fn chunked_objective_gives_same_gradient_and_hvp() {
    let m = mlp(&[5, 9, 2], Activation::Tanh, DType::F64, 16);
    let whole = random_objective(30, 5, 2, LossKind::Mse, DType::F64, 17, None);
    let chunked = random_objective(30, 5, 2, LossKind::Mse, DType::F64, 17, Some(7));
    let (l1, g1) = whole.value_and_grad(&m).unwrap();
    let (l2, g2) = chunked.value_and_grad(&m).unwrap();
    assert!((l1 - l2).abs() < 1e-13 * l1.abs());
    assert!(rel_err(&host(&g2), &host(&g1)) < 1e-13);
    let v = random_direction(&m, 3);
    let h1 = host(&hvp(&m, &whole, &v).unwrap());
    let h2 = host(&hvp(&m, &chunked, &v).unwrap());
    assert!(rel_err(&h2, &h1) < 1e-13);
}

#[test]
fn gradient_matches_finite_differences() {
    let m = mlp(&[4, 6, 3], Activation::Tanh, DType::F64, 18);
    let obj = random_objective(12, 4, 3, LossKind::CrossEntropy, DType::F64, 19, None);
    let (_, g) = obj.value_and_grad(&m).unwrap();
    let v = random_direction(&m, 4);
    let theta = m
        .tensors()
        .iter()
        .map(|t| t.copy().unwrap())
        .collect::<Vec<_>>();
    let eps = 1e-6;
    let at = |s: f64| {
        let p: Vec<Tensor> = theta
            .iter()
            .zip(&v)
            .map(|(t, d)| (t + (d * (s * eps)).unwrap()).unwrap())
            .collect();
        m.set_tensors(&p).unwrap();
        obj.value(&m).unwrap()
    };
    let fd = (at(1.0) - at(-1.0)) / (2.0 * eps);
    m.set_tensors(&theta).unwrap();
    let exact = dot(&g, &v).unwrap();
    assert!(
        (fd - exact).abs() < 1e-8 * exact.abs().max(1.0),
        "directional derivative {exact} vs fd {fd}"
    );
}

#[test]
fn lanczos_matches_dense_eigendecomposition() {
    let m = mlp(&[4, 6, 3], Activation::Tanh, DType::F64, 20);
    let obj = random_objective(15, 4, 3, LossKind::Mse, DType::F64, 21, None);
    let p = m.num_params();
    let h = dense_hessian(&m, &obj).unwrap();
    let mat = nalgebra::DMatrix::from_row_slice(p, p, &h);
    let asym = (&mat - mat.transpose()).abs().max();
    assert!(asym < 1e-12, "dense Hessian asymmetry {asym}");
    let mut ev: Vec<f64> = nalgebra::SymmetricEigen::new(mat)
        .eigenvalues
        .iter()
        .copied()
        .collect();
    ev.sort_by(|a, b| b.total_cmp(a));
    let op = HessianOp::new(&m, &obj).unwrap();
    let cfg = LanczosConfig {
        k: 3,
        tol: 1e-10,
        max_iter: p,
        seed: 0,
    };
    let eig = op.top_eigen(&cfg, None).unwrap();
    assert!(eig.converged);
    for i in 0..3 {
        assert!(
            (eig.values[i] - ev[i]).abs() < 1e-8 * ev[0].abs(),
            "λ{i}: lanczos {} dense {}",
            eig.values[i],
            ev[i]
        );
        // True residual, independent of the solver's own estimate.
        let y = &eig.vectors[i];
        let hy = op.apply_flat(y).unwrap();
        let r = (hy - (y * eig.values[i]).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            .sqrt();
        assert!(r < 1e-7 * ev[0].abs(), "residual {r}");
    }
}

#[test]
fn lanczos_warm_start_needs_fewer_products() {
    let m = mlp(&[8, 16, 2], Activation::Tanh, DType::F64, 22);
    let obj = random_objective(40, 8, 2, LossKind::Mse, DType::F64, 23, None);
    let op = HessianOp::new(&m, &obj).unwrap();
    let cfg = LanczosConfig {
        k: 1,
        tol: 1e-8,
        max_iter: 200,
        seed: 0,
    };
    let cold = op.top_eigen(&cfg, None).unwrap();
    let warm = op.top_eigen(&cfg, Some(&cold.vectors)).unwrap();
    assert!((cold.values[0] - warm.values[0]).abs() < 1e-8 * cold.values[0]);
    assert!(
        warm.iterations < cold.iterations,
        "warm {} vs cold {}",
        warm.iterations,
        cold.iterations
    );
}

/// The silent-detach guard: in a child process where a candle backward ran before eoslab could
/// enable second-order gradients, an HVP must be an error, never a zero vector.
#[test]
fn detach_guard_triggers_without_the_setting() {
    if std::env::var("EOSLAB_GUARD_CHILD").is_ok() {
        return; // the child runs `guard_child` below instead
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "guard_child", "--nocapture", "--test-threads=1"])
        .env("EOSLAB_GUARD_CHILD", "1")
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("GUARD-OK"), "child did not run:\n{text}");
}

#[test]
fn guard_child() {
    if std::env::var("EOSLAB_GUARD_CHILD").is_err() {
        return;
    }
    // A plain candle backward on this thread first: candle now caches "detach" for the thread.
    let a = candle_core::Var::new(&[2.0f64], &Device::Cpu).unwrap();
    let _ = a
        .as_tensor()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // The guard protects candle's double backward (MLPs use closed-form derivatives by default).
    let m = mlp(&[3, 4, 2], Activation::Tanh, DType::F64, 1);
    let obj = random_objective(5, 3, 2, LossKind::Mse, DType::F64, 2, None)
        .with_derivatives(Derivatives::Autodiff);
    let v = random_direction(&m, 3);
    let err = hvp(&m, &obj, &v).expect_err("HVP must fail when gradients are detached");
    assert!(
        err.to_string().contains("CANDLE_GRAD_DO_NOT_DETACH"),
        "{err}"
    );
    // A fresh thread reads the variable eoslab has now set: it works there.
    let ok = std::thread::spawn(move || {
        let m = mlp(&[3, 4, 2], Activation::Tanh, DType::F64, 1);
        let obj = random_objective(5, 3, 2, LossKind::Mse, DType::F64, 2, None)
            .with_derivatives(Derivatives::Autodiff);
        let v = random_direction(&m, 3);
        host(&hvp(&m, &obj, &v).unwrap()).iter().any(|x| *x != 0.0)
    })
    .join()
    .unwrap();
    assert!(ok);
    println!("GUARD-OK");
}

#[test]
fn f32_hvp_is_close_to_f64() {
    let m64 = mlp(&[6, 12, 2], Activation::Tanh, DType::F64, 24);
    let m32 = mlp(&[6, 12, 2], Activation::Tanh, DType::F32, 24);
    let o64 = random_objective(30, 6, 2, LossKind::Mse, DType::F64, 25, None);
    let o32 = random_objective(30, 6, 2, LossKind::Mse, DType::F32, 25, None);
    let v64 = random_direction(&m64, 5);
    let v32: Vec<Tensor> = v64
        .iter()
        .map(|t| t.to_dtype(DType::F32).unwrap())
        .collect();
    let e = rel_err(
        &host(&hvp(&m32, &o32, &v32).unwrap()),
        &host(&hvp(&m64, &o64, &v64).unwrap()),
    );
    assert!(e < 1e-5, "f32 vs f64 HVP {e:e}");
}
