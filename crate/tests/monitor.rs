//! Per-group mechanism metrics against direct computations.
mod common;

use candle_core::{DType, Device};
use common::*;
use eoslab::data::Dataset;
use eoslab::groups::{self, GroupConfig};
use eoslab::hessian::{HessianOp, LanczosConfig};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, flatten};
use eoslab::monitor::Monitor;
use eoslab::objective::Objective;
use eoslab::rng::Rng;
use eoslab::sharpness::SharpnessConfig;
use eoslab::train::{Every, GradientDescent, dot, sq_norm};

#[test]
fn group_metrics_match_direct_computation() {
    let mut rng = Rng::new(5);
    let (per, d) = (60, 4);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for c in 0..2u32 {
        for _ in 0..per {
            for j in 0..d {
                x.push(rng.normal() + if j == 0 { 2.0 * c as f64 } else { 0.0 });
            }
            y.push(c);
        }
    }
    let ds = Dataset::new("blobs", x, y, d, 2).unwrap();
    let train = groups::build(&ds, &GroupConfig::paper(4)).unwrap().train;
    let obj = Objective::from_dataset(
        &train,
        &Device::Cpu,
        DType::F64,
        LossKind::CrossEntropy,
        None,
    )
    .unwrap();
    let model = mlp(&[d, 12, 2], Activation::Tanh, DType::F64, 3);
    let gd = GradientDescent::new(model, obj.clone(), 0.1, 0.0).unwrap();
    let cfg = SharpnessConfig {
        every: Every::new(1),
        lanczos: LanczosConfig {
            k: 3,
            tol: 1e-10,
            max_iter: 200,
            seed: 0,
        },
        subset: None,
        warm_start: true,
        track_above: None,
    };
    let mut mon = Monitor::new(cfg, &obj, &train, None, "eos", 7).unwrap();
    let rec = mon.measure(&gd).unwrap();
    assert_eq!(
        mon.group_names(),
        ["inlier", "boundary", "output-outlier", "input-outlier"]
    );

    // Direct: the output-outliers' gradient, its projection on v_max, and gᵀHg.
    let idx = groups::members(&train, groups::GroupKind::OutputOutlier);
    let (l, g) = obj.subset(&idx).unwrap().value_and_grad(&gd.model).unwrap();
    let op = HessianOp::new(&gd.model, &obj).unwrap();
    let ghg = dot(&g, &op.apply(&g).unwrap()).unwrap();
    let v = &mon.tracker.vectors.as_ref().unwrap()[0];
    let gv: f64 = (flatten(&g).unwrap() * v)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let g2 = sq_norm(&g).unwrap();
    let get = |metric: &str| mon.log.series("eos", 7, "output-outlier", metric)[0].1;
    assert!((get("loss") - l).abs() < 1e-12);
    assert!((get("grad_norm") - g2.sqrt()).abs() < 1e-12);
    assert!((get("cos2_vmax") - gv * gv / g2).abs() < 1e-10);
    assert!((get("proj2_vmax") - gv * gv).abs() < 1e-10);
    assert!((get("gHg") - ghg).abs() < 1e-9 * ghg.abs().max(1.0));
    assert!(get("cos2_topk") >= get("cos2_vmax") - 1e-12 && get("cos2_topk") <= 1.0 + 1e-12);
    assert!((mon.log.series("eos", 7, "all", "lambda_1")[0].1 - rec.values[0]).abs() < 1e-12);
    // The training set's row reuses the Hessian operator's value and gradient: bit-identical to
    // a separate pass.
    let (l_all, g_all) = obj.value_and_grad(&gd.model).unwrap();
    let train_row = |metric: &str| mon.log.series("eos", 7, "train", metric)[0].1;
    assert_eq!(train_row("loss").to_bits(), l_all.to_bits());
    assert_eq!(
        train_row("grad_norm").to_bits(),
        sq_norm(&g_all).unwrap().sqrt().to_bits()
    );
    let acc = get("accuracy");
    assert!((0.0..=1.0).contains(&acc));

    // Margins: true-class output minus the other output (2 classes), computed by hand per
    // example; the logged deciles are its min, median and max at 0, 50 and 100.
    let out: Vec<Vec<f64>> = obj
        .subset(&idx)
        .unwrap()
        .outputs(&gd.model)
        .unwrap()
        .to_vec2()
        .unwrap();
    let mut m: Vec<f64> = idx
        .iter()
        .zip(&out)
        .map(|(&i, o)| {
            let c = train.y[i] as usize;
            o[c] - o[1 - c]
        })
        .collect();
    m.sort_by(f64::total_cmp);
    let n = m.len();
    assert_eq!(n, 8);
    let median = 0.5 * (m[n / 2 - 1] + m[n / 2]);
    assert!((get("margin_p0") - m[0]).abs() < 1e-12);
    assert!((get("margin_p50") - median).abs() < 1e-12);
    assert!((get("margin_p100") - m[n - 1]).abs() < 1e-12);
}
