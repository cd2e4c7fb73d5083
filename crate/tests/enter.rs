//! The enter design: a stable run at a small rate η_low forked, beyond the threshold 2/η_high
//! of a larger rate, into an *enter* branch at η_high and a *stay* branch at η_low.
//!
//! - the fork is bit-identical to its parent (the baseline replayed independently), and the
//!   stay branch is the parent's own continuation;
//! - the pre-fork check rejects a state on the wrong side of either threshold, naming the
//!   numbers, in a unit call and in a run;
//! - on the shipped digits the enter branch's λ_max, above 2/η_high at the fork, settles
//!   within 10 % of 2/η_high while the stay branch keeps sharpening.
mod common;

use candle_core::DType;
use common::host;
use eoslab::branch::{self, BranchConfig, Design, fork};
use eoslab::checkpoint::Checkpoint;
use eoslab::experiment::{paper, presets};
use eoslab::model::{InitSpec, Model};
use eoslab::objective::Objective;
use eoslab::train::GradientDescent;

fn bits(gd: &GradientDescent) -> Vec<u64> {
    host(&gd.model.tensors())
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// The digits enter preset, one seed, a short horizon.
fn digits(horizon: f64) -> BranchConfig {
    let mut cfg = presets::digits_enter();
    cfg.seeds = vec![0];
    cfg.horizon = horizon;
    cfg
}

/// The baseline of `cfg`'s seed 0 at η_low from a fresh initialisation, `steps` steps.
fn replay(cfg: &BranchConfig, steps: usize) -> GradientDescent {
    let (train, _) = branch::prepare(cfg).unwrap();
    let run = &cfg.run;
    let spec = run.model_spec(train.d, train.n_classes);
    let init = InitSpec {
        scale: run.init_scale,
        seed: 0,
    };
    let dev = candle_core::Device::Cpu;
    let model = Model::new(&spec, init, &dev, DType::F32).unwrap();
    let obj = Objective::from_dataset(&train, &dev, DType::F32, run.loss, run.chunk).unwrap();
    let (_, _, low) = cfg.rates();
    let mut gd = GradientDescent::new(model, obj, low, run.momentum).unwrap();
    gd.run(steps, &mut []).unwrap();
    gd
}

#[test]
fn enter_fork_is_bit_identical_to_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = digits(0.5);
    let r = branch::run(&cfg, Some(tmp.path())).unwrap();
    let s = &r.seeds[0];
    let parent = replay(&cfg, s.fork_step);
    // The fork checkpoint holds exactly the state the baseline reached.
    let ck = Checkpoint::load(&tmp.path().join("seed-0/fork.safetensors")).unwrap();
    assert_eq!(ck.meta.state.step, s.fork_step);
    assert_eq!(ck.meta.state.lr, 0.05);
    let saved: Vec<u64> = host(&ck.params.values().cloned().collect::<Vec<_>>())
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(saved, bits(&parent));
    // Both branches start from the parent's bits; the stay branch continues it step for step.
    let lambda = s
        .log
        .series("baseline", 0, "all", "lambda_1")
        .last()
        .unwrap()
        .1;
    let (mut enter, mut stay) = fork::fork_branches(&parent, &cfg.design, 0.1, lambda).unwrap();
    assert_eq!(bits(&enter), bits(&parent));
    assert_eq!(bits(&stay), bits(&parent));
    assert_eq!((enter.state.lr, stay.state.lr), (0.1, 0.05));
    let mut cont = replay(&cfg, s.fork_step);
    cont.run(3, &mut []).unwrap();
    stay.run(3, &mut []).unwrap();
    assert_eq!(bits(&stay), bits(&cont));
    enter.run(3, &mut []).unwrap();
    assert_ne!(bits(&enter), bits(&cont));
}

#[test]
fn pre_fork_check_rejects_either_wrong_side() {
    let cfg = digits(0.5);
    let parent = replay(&cfg, 2);
    let design = Design::enter(0.05);
    // 2/η_high = 20, 2/η_low = 40, at most 0.9 · 40 = 36.
    assert!(fork::fork_branches(&parent, &design, 0.1, 25.0).is_ok());
    let below = fork::fork_branches(&parent, &design, 0.1, 19.5)
        .err()
        .unwrap()
        .to_string();
    assert!(
        below.contains("λ_max = 19.5000") && below.contains("below 2/η_high"),
        "{below}"
    );
    let above = fork::fork_branches(&parent, &design, 0.1, 37.0)
        .err()
        .unwrap()
        .to_string();
    for n in [
        "λ_max = 37.0000",
        "2/η_high = 20.0000",
        "2/η_low = 40.0000",
        "margin 0.1",
    ] {
        assert!(above.contains(n), "{n} missing: {above}");
    }
    // A parent at another rate is not the stay branch's parent.
    assert!(fork::fork_branches(&parent, &Design::enter(0.04), 0.1, 25.0).is_err());
    // Rates that leave no room are refused before any work.
    let mut tight = cfg.clone();
    tight.design = Design::Enter {
        low: 0.09,
        margin: 0.1,
    };
    let e = tight.validate().unwrap_err().to_string();
    assert!(e.contains("2/η_low = 22.2222"), "{e}");
}

#[test]
fn a_run_whose_fork_state_is_too_sharp_for_eta_low_is_an_error() {
    // Synthetic CIFAR-format data, MLP 3072-16-16-2: λ_max ≈ 26 at init, so with
    // η_high = 0.2 (2/η_high = 10) the fork point is step 0; at η_low = 0.07 the state is not
    // clearly stable (0.9 · 2/0.07 = 25.7).
    let tmp = tempfile::tempdir().unwrap();
    paper::write_synthetic_cifar(tmp.path(), 12, 2, 0).unwrap();
    let mut cfg = paper::enter(tmp.path());
    cfg.groups.per_class = 2;
    cfg.groups.knn = 8;
    cfg.seeds = vec![0];
    cfg.run.hidden = vec![16, 16];
    cfg.run.burn_in = 0;
    cfg.run.steps = 10;
    cfg.run.sharpness.lanczos.max_iter = 20;
    cfg.run.lr = 0.2;
    cfg.design = Design::enter(0.07);
    cfg.horizon = 0.2;
    let e = branch::run(&cfg, None).err().unwrap().to_string();
    assert!(e.contains("seed 0: step 0: enter fork: λ_max = "), "{e}");
    assert!(
        e.contains("not clearly below 2/η_low") && e.contains("2/η_low = 28.5714"),
        "{e}"
    );
    // At η_low = 0.05 (at most 36) the same state forks.
    cfg.design = Design::enter(0.05);
    let r = branch::run(&cfg, None).unwrap();
    assert_eq!(r.seeds[0].fork_step, 0);
}

#[test]
fn enter_branch_settles_at_its_threshold_while_the_stay_branch_sharpens() {
    // The first measured crossing of 2/η_high = 20 is at step 520, λ_max ≈ 20.07: a burn-in of
    // 700 steps moves the fork to where the baseline has sharpened clearly beyond it.
    let mut cfg = digits(20.0);
    cfg.run.burn_in = 700;
    let r = branch::run(&cfg, None).unwrap();
    let (enter, stay) = (r.settling(0, "eos"), r.settling(0, "stable"));
    assert_eq!((enter.threshold, stay.threshold), (20.0, 40.0));
    // Beyond 2/η_high at the fork, clearly stable at η_low.
    assert!(
        enter.at_fork >= 1.1 * 20.0 && enter.at_fork <= 36.0,
        "{enter:?}"
    );
    assert_eq!(enter.at_fork, stay.at_fork);
    assert!(enter.settles_within(0.1), "enter branch: {enter:?}");
    // The stay branch keeps sharpening, well past 2/η_high.
    assert!(
        stay.last > 1.1 * stay.at_fork && stay.settled > 1.1 * 20.0,
        "stay: {stay:?}"
    );
}
