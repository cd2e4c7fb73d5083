//! Measurement at the edge of stability: every-step group losses and their cell averages on a
//! problem whose period-2 oscillation is known in closed form, the sparse protocol's bias on
//! it, pair means of cadence metrics, and the per-group eigen-solve against a dense Hessian.
use candle_core::{DType, Device, Tensor};
use eoslab::branch::compare::{self, Grid, Measurement};
use eoslab::data::Dataset;
use eoslab::hessian::{LanczosConfig, dense_hessian};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::monitor::{Monitor, MonitorConfig};
use eoslab::objective::Objective;
use eoslab::sharpness::SharpnessConfig;
use eoslab::train::{Every, GradientDescent, Observer};

/// Linear model f(x) = W x + b (1 input, 2 outputs) on x = (1, −1, 1) with labels (0, 1, 1),
/// MSE in the paper's convention. Per output the Hessian in (w, b) is [[2, 2/3], [2/3, 2]]:
/// eigenvalues 8/3 along (1, 1) and 4/3 along (1, −1). The least-squares optimum is
/// W* = (0.25, −0.25), b* = (0.25, 0.75), with residuals (−0.5, 0.5) for example 0 (x = 1,
/// label 0), 0 for example 1 (x = −1) and (0.5, −0.5) for example 2.
///
/// At η = 3/4 = 2/(8/3), GD maps an error a·(1, 1) on output 0 to −a·(1, 1): a period-2
/// oscillation that neither grows nor decays. Starting at W = (0.35, −0.25), b = (0.35, 0.75)
/// (a = 0.1), example 0's output 0 moves by 2a(−1)^t, so its loss alternates between
/// (−0.5 + 0.2)² + 0.5² = 0.34 (even t) and (−0.5 − 0.2)² + 0.5² = 0.74 (odd t): the time
/// average is 0.54, a sample at even steps reads 0.34. At η = 3/8 one step lands on the
/// optimum (error along the eigenvalue-8/3 direction is multiplied by 0), loss 0.5 from then on.
fn problem() -> (Dataset, Objective) {
    let mut ds = Dataset::new("quadratic", vec![1.0, -1.0, 1.0], vec![0, 1, 1], 1, 2).unwrap();
    // Example 0 is the group under study; example 2 another group.
    ds.group = vec![1, 0, 2];
    let obj = Objective::from_dataset(&ds, &Device::Cpu, DType::F64, LossKind::Mse, None).unwrap();
    (ds, obj)
}

fn start(lr: f64) -> GradientDescent {
    let (_, obj) = problem();
    let model = Model::new(
        &ModelSpec::mlp(&[1, 2], Activation::Tanh),
        InitSpec {
            scale: 1.0,
            seed: 0,
        },
        &Device::Cpu,
        DType::F64,
    )
    .unwrap();
    for (name, var) in model.params() {
        let t = match name.as_str() {
            "net.0.weight" => Tensor::from_vec(vec![0.35, -0.25], (2, 1), &Device::Cpu),
            _ => Tensor::from_vec(vec![0.35, 0.75], 2, &Device::Cpu),
        };
        var.set(&t.unwrap()).unwrap();
    }
    GradientDescent::new(model, obj, lr, 0.0).unwrap()
}

fn sharpness() -> SharpnessConfig {
    SharpnessConfig {
        every: Every::pairs(4),
        lanczos: LanczosConfig {
            k: 1,
            tol: 1e-10,
            max_iter: 20,
            seed: 0,
        },
        subset: None,
        warm_start: true,
        track_above: None,
    }
}

/// Run `steps` steps on branch `name`, measuring on the schedule `every` (with pairs) and
/// logging every step's group losses.
fn run(gd: &mut GradientDescent, mon: &mut Monitor, steps: usize, every: usize) {
    let schedule = Every::pairs(every);
    for i in 0..steps {
        if schedule.hits(i) {
            mon.measure(gd).unwrap();
        }
        let mut series = mon.step_series();
        let mut obs: [&mut dyn Observer; 1] = [&mut series];
        gd.step(&mut obs).unwrap();
    }
}

#[test]
fn every_step_averages_resolve_a_period_two_oscillation_that_sampling_misses() {
    let (ds, obj) = problem();
    let base = Monitor::new(sharpness(), &obj, &ds, None, "eos", 0).unwrap();
    let mut eos_mon = base.for_branch("eos").with_series(true);
    let mut stable_mon = base.for_branch("stable").with_series(true);
    // 40 EoS steps at η = 3/4 (t_eff 30) and 80 stable steps at η = 3/8, measured every 4 and
    // every 8 steps: both every 3 units of t_eff.
    let (mut eos, mut stable) = (start(0.75), start(0.375));
    run(&mut eos, &mut eos_mon, 40, 4);
    run(&mut stable, &mut stable_mon, 80, 8);

    // The oscillation is there, step by step: 0.34, 0.74, 0.34, …
    let s = eos_mon.log.series("eos", 0, "inlier", "step_loss");
    assert_eq!(s.len(), 40);
    for (t, (_, v)) in s.iter().enumerate() {
        let want = if t % 2 == 0 { 0.34 } else { 0.74 };
        assert!((v - want).abs() < 1e-9, "step {t}: {v}");
    }
    // The training set's every-step loss is the step's own loss.
    let train = eos_mon.log.series("eos", 0, "train", "step_loss");
    for (r, (_, v)) in eos.history.iter().zip(&train) {
        assert_eq!(r.loss.to_bits(), v.to_bits());
    }

    let mut log = eos_mon.log;
    log.extend(stable_mon.log);
    let groups = vec!["inlier".to_string()];
    let grid = Grid {
        t_star: 0.0,
        dt: 3.0,
        window: (0.0, 30.0),
    };
    // Every step: EoS cells average 0.54; the stable branch reads 0.34 at step 0 and 0.5 after,
    // so its first cell (8 steps) averages (0.34 + 7 · 0.5) / 8 = 0.48.
    let every = compare::compare(&log, 0, &groups, grid, Measurement::EveryStep);
    let d = &every.delta["inlier"];
    assert_eq!(d.len(), 10);
    assert!((d[0].1 - (0.54 - 0.48)).abs() < 1e-9, "{d:?}");
    for (t, v) in &d[1..] {
        assert!((v - 0.04).abs() < 1e-9, "cell at {t}: {v}");
    }
    let want = (0.06 + 9.0 * 0.04) / 10.0;
    assert!((every.window_delta["inlier"] - want).abs() < 1e-9);
    // Sparse: the cadence samples the EoS branch at even steps only (0.34): Δℓ reads −0.16
    // where the time average says +0.04 — the sign flips.
    let sparse = compare::compare(&log, 0, &groups, grid, Measurement::Sparse);
    let d = &sparse.delta["inlier"];
    assert!(d.len() >= 9);
    for (t, v) in d.iter().filter(|p| p.0 > 0.0) {
        assert!((v + 0.16).abs() < 1e-9, "sample at {t}: {v}");
    }
    // Pair means of a cadence metric see both parities: 0.54.
    let pairs = compare::pair_means(&log.series_steps("eos", 0, "inlier", "loss"));
    assert_eq!(pairs.len(), 10);
    assert!(pairs.iter().all(|p| (p.1 - 0.54).abs() < 1e-9), "{pairs:?}");
}

#[test]
fn a_groups_own_top_eigenpair_matches_its_dense_hessian() {
    let (ds, obj) = problem();
    let gd = start(0.75);
    let mut mon = Monitor::with_config(
        sharpness(),
        MonitorConfig {
            group_eigen: true,
            ..MonitorConfig::default()
        },
        &obj,
        &ds,
        None,
        "eos",
        0,
    )
    .unwrap();
    mon.measure(&gd).unwrap();
    // Example 0 alone: its Hessian per output is 2·[[1, 1], [1, 1]], top eigenvalue 4.
    let h = dense_hessian(&gd.model, &obj.subset(&[0]).unwrap()).unwrap();
    let n = 4;
    let dense = nalgebra::DMatrix::from_row_slice(n, n, &h);
    let top = dense
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    assert!((top - 4.0).abs() < 1e-12);
    let own = mon.log.series("eos", 0, "inlier", "lambda_own")[0].1;
    assert!((own - 4.0).abs() < 1e-8, "{own}");
    // Its gradient lies in the span of the top eigenvectors of its own Hessian (rank 2, both
    // eigenvalues 4: the (1, 1) direction of each output), so cos²(g, v_own) ≤ 1, and the
    // group's gradient is a Hessian image, so the sum over both top eigenvectors would be 1.
    let c = mon.log.series("eos", 0, "inlier", "cos2_own")[0].1;
    assert!((0.0..=1.0 + 1e-12).contains(&c), "{c}");
}
