//! Gradient descent, checkpoints and resume.
mod common;

use candle_core::{DType, Device};
use common::*;
use eoslab::checkpoint::{self, Checkpoint, CheckpointMeta};
use eoslab::loss::LossKind;
use eoslab::model::Activation;
use eoslab::train::GradientDescent;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("eoslab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn process(momentum: f64, dtype: DType) -> GradientDescent {
    let m = mlp(&[6, 16, 16, 3], Activation::Tanh, dtype, 1);
    let obj = random_objective(40, 6, 3, LossKind::Mse, dtype, 2, Some(15));
    GradientDescent::new(m, obj, 0.05, momentum).unwrap()
}

fn bits(gd: &GradientDescent) -> Vec<u64> {
    host(&gd.model.tensors())
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn gd_decreases_loss_and_counts_effective_time() {
    let mut gd = process(0.0, DType::F64);
    gd.run(50, &mut []).unwrap();
    let h = &gd.history;
    assert_eq!(h.len(), 50);
    assert!(
        h[49].loss < 0.8 * h[0].loss,
        "{} -> {}",
        h[0].loss,
        h[49].loss
    );
    assert!((gd.state.t_eff - 50.0 * 0.05).abs() < 1e-12);
    assert_eq!(gd.state.step, 50);
}

#[test]
fn one_step_is_theta_minus_lr_grad() {
    let mut gd = process(0.0, DType::F64);
    let before = host(&gd.model.tensors());
    let (_, g) = gd.objective.value_and_grad(&gd.model).unwrap();
    gd.step(&mut []).unwrap();
    let after = host(&gd.model.tensors());
    let want: Vec<f64> = before
        .iter()
        .zip(host(&g))
        .map(|(t, g)| t - 0.05 * g)
        .collect();
    assert!(rel_err(&after, &want) < 1e-15);
}

fn resume_is_bit_identical(momentum: f64, dtype: DType) {
    let dir = tmpdir(&format!("resume-{momentum}-{dtype:?}"));
    let k = 25;
    let mut straight = process(momentum, dtype);
    straight.run(2 * k, &mut []).unwrap();

    let mut first = process(momentum, dtype);
    first.run(k, &mut []).unwrap();
    let path = dir.join("ck.safetensors");
    let meta = CheckpointMeta::for_process(
        &first,
        BTreeMap::from([("init".into(), 1)]),
        "fp",
        serde_json::json!({"test": true}),
    );
    checkpoint::save(&path, &first, &meta).unwrap();
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!(ck.meta, meta);
    let mut resumed = ck
        .resume(first.objective.clone(), &Device::Cpu, dtype)
        .unwrap();
    assert_eq!(resumed.state.step, k);
    resumed.run(k, &mut []).unwrap();
    assert_eq!(
        bits(&resumed),
        bits(&straight),
        "resume diverged from the straight run"
    );
    assert_eq!(resumed.state, straight.state);
}

#[test]
fn resume_bit_identical_f32() {
    resume_is_bit_identical(0.0, DType::F32);
}

#[test]
fn resume_bit_identical_f64_momentum() {
    resume_is_bit_identical(0.9, DType::F64);
}

#[test]
fn fork_is_bit_identical_and_independent() {
    let mut gd = process(0.0, DType::F32);
    gd.run(5, &mut []).unwrap();
    let mut a = gd.fork().unwrap();
    assert_eq!(bits(&a), bits(&gd));
    a.run(3, &mut []).unwrap();
    gd.run(3, &mut []).unwrap();
    assert_eq!(bits(&a), bits(&gd));
    a.set_lr(0.01).unwrap();
    a.step(&mut []).unwrap();
    assert_ne!(bits(&a), bits(&gd));
}

#[test]
fn divergence_reports_the_step_and_keeps_history() {
    let m = mlp(&[6, 16, 3], Activation::Relu, DType::F32, 1);
    let obj = random_objective(40, 6, 3, LossKind::Mse, DType::F32, 2, None);
    let mut gd = GradientDescent::new(m, obj, 50.0, 0.0).unwrap();
    let err = gd.run(500, &mut []).unwrap_err();
    match err {
        eoslab::Error::Diverged { step, .. } => {
            assert_eq!(
                step,
                gd.history.len(),
                "the failing step is the one after the last logged"
            );
            assert!(step > 0);
        }
        e => panic!("expected divergence, got {e}"),
    }
    assert!(
        GradientDescent::new(
            mlp(&[2, 2], Activation::Relu, DType::F32, 1),
            random_objective(3, 2, 2, LossKind::Mse, DType::F32, 1, None),
            -1.0,
            0.0
        )
        .is_err()
    );
}

#[test]
fn bad_checkpoints_are_clear_errors_and_do_not_clobber() {
    let dir = tmpdir("badck");
    let missing = Checkpoint::load(&dir.join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.safetensors"), "{missing}");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let e = Checkpoint::load(&garbage).unwrap_err().to_string();
    assert!(
        e.contains("garbage.safetensors") && e.contains("safetensors"),
        "{e}"
    );

    // A checkpoint whose architecture metadata disagrees with its tensors.
    let gd = process(0.0, DType::F32);
    let path = dir.join("ck.safetensors");
    let mut meta = CheckpointMeta::for_process(&gd, BTreeMap::new(), "fp", serde_json::Value::Null);
    checkpoint::save(&path, &gd, &meta).unwrap();
    let good = std::fs::read(&path).unwrap();
    meta.spec = eoslab::model::ModelSpec::mlp(&[6, 17, 16, 3], Activation::Tanh);
    let bad = dir.join("bad.safetensors");
    checkpoint::save(&bad, &gd, &meta).unwrap();
    let e = Checkpoint::load(&bad).unwrap_err().to_string();
    assert!(e.contains("net.0.weight") && e.contains("[17, 6]"), "{e}");

    // A failed save leaves the existing file intact (target is a directory: rename fails).
    let blocked = dir.join("blocked");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    assert!(checkpoint::save(&blocked, &gd, &meta).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), good);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}
