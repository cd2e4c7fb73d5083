//! The paper-scale preset (`paper-cifar10`) on tiny synthetic data in CIFAR-10's binary format,
//! written by the test: it runs end to end on the CPU, and an interrupted run resumed from its
//! checkpoints gives exactly the results of an uninterrupted one.
//!
//! Test sizes: the preset's groups of 25 per class need ≥ 200 images, and one λ_max at the
//! paper's width costs about a minute in the test profile (unoptimised dependencies), so the
//! smoke test keeps the preset's data pipeline, architecture (3072-512-512-2 ReLU, init 0.2),
//! loss, fork design and schedule but shrinks the data (12 images per class, groups of 2), the
//! solver (4 Lanczos steps) and the horizon, and raises η so that λ_max ≥ 2/η at once. The
//! resume test needs several runs, so it also narrows the hidden layers to 16.
use eoslab::branch::{self, BranchConfig, BranchResult};
use eoslab::cli::{ClaimOptions, DataChoice};
use eoslab::experiment::paper;
use eoslab::resume::{ResumeOptions, StepBudget};
use std::path::Path;

fn synthetic(dir: &Path) {
    paper::write_synthetic_cifar(dir, 12, 2, 0).unwrap();
}

/// The paper preset with test-size data and solver.
fn small(data: &Path) -> BranchConfig {
    let mut cfg = paper::tradeoff(data);
    cfg.groups.per_class = 2;
    cfg.groups.knn = 8;
    cfg.seeds = vec![0];
    cfg.run.sharpness.lanczos.max_iter = 4;
    cfg
}

#[test]
fn paper_preset_runs_end_to_end_on_cifar_format_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    synthetic(&data);
    let mut cfg = small(&data);
    // The preset as the paper has it, apart from the test sizes above.
    assert_eq!(cfg.run.hidden, vec![512, 512]);
    assert_eq!((cfg.run.init_scale, cfg.run.lr), (0.2, 0.01));
    assert_eq!(cfg.run.sharpness.every.k, 32);
    assert!(cfg.run.sharpness.warm_start);
    assert_eq!(cfg.design, branch::Design::Exit { m: 0.1 });
    assert_eq!(
        paper::saturation(&data).0.design,
        branch::Design::Exit { m: 0.5 }
    );
    // λ_max at init is ≈ 25 here (≈ 16 from 4 Lanczos steps): η = 0.2 (2/η = 10) forks at
    // the first measurement.
    cfg.run.lr = 0.2;
    cfg.run.burn_in = 0;
    cfg.run.steps = 4;
    cfg.horizon = 0.1;
    let out = tmp.path().join("run");
    let res = branch::run_with(&cfg, Some(&out), Some(&ResumeOptions::default())).unwrap();
    assert_eq!(res.train.d, 3072);
    assert_eq!(res.train.n_classes, 2);
    assert_eq!(res.train.n(), 24);
    let s = &res.seeds[0];
    assert_eq!(s.fork_step, 0);
    // Both branches ran for the horizon and every paper group has a Δℓ.
    for g in ["inlier", "boundary", "output-outlier", "input-outlier"] {
        assert!(s.window_delta[g].is_finite(), "{g}: {:?}", s.window_delta);
    }
    let v = eoslab::experiment::claims::tradeoff(&res);
    assert!(v.line().starts_with("CLAIM tradeoff:"), "{v}");
    for f in [
        "config.json",
        "resume.json",
        "train.safetensors",
        "seed-0/fork.safetensors",
        "seed-0/result.safetensors",
        "metrics.parquet",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(
        !out.join("seed-0/resume").exists(),
        "a completed seed's checkpoints are removed"
    );
}

fn assert_same(a: &BranchResult, b: &BranchResult) {
    assert_eq!(a.seeds.len(), b.seeds.len());
    for (x, y) in a.seeds.iter().zip(&b.seeds) {
        assert_eq!(
            (x.seed, x.fork_step, x.t_star.to_bits()),
            (y.seed, y.fork_step, y.t_star.to_bits())
        );
        assert_eq!(x.t_star2.map(f64::to_bits), y.t_star2.map(f64::to_bits));
        assert_eq!(
            (x.window.0.to_bits(), x.window.1.to_bits()),
            (y.window.0.to_bits(), y.window.1.to_bits())
        );
        assert_eq!(x.log.rows.len(), y.log.rows.len(), "seed {}", x.seed);
        for (r, q) in x.log.rows.iter().zip(&y.log.rows) {
            assert_eq!(
                (&r.branch, r.step, &r.group, &r.metric, r.t_eff.to_bits()),
                (&q.branch, q.step, &q.group, &q.metric, q.t_eff.to_bits())
            );
            assert_eq!(r.value.to_bits(), q.value.to_bits(), "{r:?} vs {q:?}");
        }
        let bits = |m: &std::collections::BTreeMap<String, f64>| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&x.window_delta), bits(&y.window_delta));
        assert_eq!(x.delta.len(), y.delta.len());
    }
}

/// [`small`] with hidden layers of 16 and η = 0.05 (2/η = 40: λ_max, 26 at init, crosses it at
/// step 6), measured at pairs of steps every 3 as the CPU presets measure: for runs that need
/// several branches' worth of steps.
fn narrow(data: &Path) -> BranchConfig {
    let mut cfg = small(data);
    cfg.run.hidden = vec![16, 16];
    cfg.run.lr = 0.05;
    cfg.run.burn_in = 0;
    cfg.run.steps = 60;
    cfg.run.sharpness.every = eoslab::train::Every::pairs(3);
    cfg.run.sharpness.lanczos.max_iter = 20;
    cfg
}

#[test]
fn interrupted_run_resumes_to_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    synthetic(&data);
    let mut cfg = narrow(&data);
    cfg.t2_checks = 2;
    cfg.after_t2 = Some(0.1);
    cfg.horizon = 0.6; // 12 EoS steps, 120 stable steps
    cfg.seeds = vec![0, 1];
    let opts = |budget: Option<usize>| ResumeOptions {
        checkpoint_every: 3,
        step_budget: budget.map(StepBudget::new),
        progress_every: None,
    };
    let a = branch::run_with(&cfg, Some(&tmp.path().join("a")), Some(&opts(None))).unwrap();
    assert!(
        a.seeds[0].fork_step > 0,
        "the fork comes after some baseline steps"
    );

    // The same run, stopped four times: in seed 0's baseline, in its stable branch, and twice
    // more; each rerun continues from the last checkpoint or completed seed.
    let b_dir = tmp.path().join("b");
    let mut stops = 0;
    for budget in [4, 60, 100, 50] {
        match branch::run_with(&cfg, Some(&b_dir), Some(&opts(Some(budget)))) {
            Err(eoslab::Error::Interrupted(_)) => stops += 1,
            Err(e) => panic!("{e}"),
            Ok(_) => break,
        }
    }
    assert!(stops >= 3, "only {stops} interruptions");
    let b = branch::run_with(&cfg, Some(&b_dir), Some(&opts(None))).unwrap();
    assert_same(&a, &b);
    // A completed directory reruns from its stored results alone.
    let c = branch::run_with(&cfg, Some(&b_dir), Some(&opts(Some(0)))).unwrap();
    assert_same(&a, &c);

    // Seeds side by side on two workers (and resumed there): the same bits.
    let p_dir = tmp.path().join("p");
    let job = |budget| branch::Job {
        cfg: &cfg,
        dir: Some(&p_dir),
        resume: Some(budget),
    };
    let (stop, full) = (opts(Some(30)), opts(None));
    assert!(matches!(
        branch::run_many(&[job(&stop)], 2),
        Err(eoslab::Error::Interrupted(_))
    ));
    let p = branch::run_many(&[job(&full)], 2).unwrap().remove(0);
    assert_same(&a, &p);
    // Every step of both branches has its group losses, over the same effective time: up to
    // 0.1 after t** when the stable branch reached it (at most the horizon, 0.6); the window's
    // statistics are finite.
    for s in &a.seeds {
        let eos_steps = s.log.series("eos", s.seed, "inlier", "step_loss").len();
        let stable_steps = s.log.series("stable", s.seed, "train", "step_loss").len();
        assert!(
            eos_steps <= 12 && stable_steps <= 120,
            "{eos_steps} {stable_steps}"
        );
        assert!((eos_steps as f64 * 0.05 - stable_steps as f64 * 0.005).abs() < 0.026);
        if let Some(t2) = s.t_star2 {
            let end = s.t_star + stable_steps as f64 * 0.005;
            assert!(
                end >= t2 + 0.1 - 1e-9 || stable_steps == 120,
                "{end} vs {t2}"
            );
        }
    }
    assert!(
        a.band_effects()
            .iter()
            .all(|b| b.mean_of_median.is_finite())
    );

    // Another configuration in that directory is refused, naming the difference.
    let mut other = cfg.clone();
    other.run.lr = 0.04;
    let e = branch::run_with(&other, Some(&b_dir), Some(&opts(None)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.lr: 0.05 (directory) vs 0.04 (now)"), "{e}");
}

#[test]
fn claim_options_are_checked_before_any_work() {
    let paper = |dir: Option<&str>, device: Option<&str>| ClaimOptions {
        preset: Some(paper::NAME.into()),
        data_dir: dir.map(Into::into),
        device: device.map(Into::into),
        ..ClaimOptions::default()
    };
    let err = |o: &ClaimOptions| {
        eoslab::cli::run_claim_with("tradeoff", o)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&paper(None, None)).contains("--data-dir"));
    // The device is checked before the (here missing) data is read: never a CPU fallback.
    #[cfg(not(feature = "cuda"))]
    assert!(err(&paper(Some("/nonexistent"), Some("cuda:0"))).contains("without CUDA support"));
    assert!(err(&paper(Some("/nonexistent"), Some("tpu"))).contains("expected cpu or cuda:N"));
    let e = err(&ClaimOptions {
        dtype: Some("f16".into()),
        ..paper(Some("/nonexistent"), None)
    });
    assert!(e.contains("f16"), "{e}");
    let e = err(&ClaimOptions {
        data: DataChoice {
            path: Some("x.csv".into()),
            classes: None,
        },
        ..paper(Some("/nonexistent"), None)
    });
    assert!(e.contains("--data-dir"), "{e}");
    let e = err(&ClaimOptions {
        preset: Some("imagenet".into()),
        ..ClaimOptions::default()
    });
    assert!(e.contains("paper-cifar10"), "{e}");
    // A missing CIFAR directory names the missing file.
    let e = err(&paper(Some("/nonexistent"), Some("cpu")));
    assert!(e.contains("data_batch_1.bin"), "{e}");
}

#[test]
fn interrupted_eos_claim_resumes_to_identical_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    synthetic(&data);
    let mut cfg = paper::eos(&data);
    cfg.groups.as_mut().unwrap().per_class = 2;
    cfg.groups.as_mut().unwrap().knn = 8;
    cfg.run.hidden = vec![16, 16];
    cfg.run.steps = 15;
    cfg.run.sharpness.every = eoslab::train::Every::new(3);
    cfg.run.sharpness.lanczos.max_iter = 20;
    cfg.lrs = vec![0.02, 0.05];
    cfg.seeds = vec![0];
    let opts = |budget: Option<usize>| ResumeOptions {
        checkpoint_every: 3,
        step_budget: budget.map(StepBudget::new),
        progress_every: None,
    };
    let a = eoslab::experiment::eos::run_with(&cfg, Some((&tmp.path().join("a"), &opts(None))))
        .unwrap();
    let b_dir = tmp.path().join("b");
    let mut stops = 0;
    for budget in [7, 10] {
        match eoslab::experiment::eos::run_with(&cfg, Some((&b_dir, &opts(Some(budget))))) {
            Err(eoslab::Error::Interrupted(_)) => stops += 1,
            other => panic!(
                "expected an interruption, got {:?}",
                other.map(|r| r.runs.len())
            ),
        }
    }
    assert_eq!(stops, 2);
    let b = eoslab::experiment::eos::run_with(&cfg, Some((&b_dir, &opts(None)))).unwrap();
    assert_eq!(a.runs.len(), 2);
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!((x.lr, x.seed), (y.lr, y.seed));
        let h = |r: &eoslab::experiment::eos::SeedRun| {
            r.history
                .iter()
                .map(|s| {
                    (
                        s.step,
                        s.t_eff.to_bits(),
                        s.loss.to_bits(),
                        s.grad_norm.to_bits(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(h(x), h(y), "history η={} seed={}", x.lr, x.seed);
        let s = |r: &eoslab::experiment::eos::SeedRun| {
            r.sharpness
                .iter()
                .map(|s| (s.step, s.values[0].to_bits(), s.iterations, s.warm))
                .collect::<Vec<_>>()
        };
        assert_eq!(s(x), s(y), "sharpness η={} seed={}", x.lr, x.seed);
        assert_eq!(x.entry, y.entry);
    }
    assert_eq!(
        eoslab::experiment::claims::eos(&a).line(),
        eoslab::experiment::claims::eos(&b).line()
    );
}

#[test]
fn branches_end_a_set_time_after_t2() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cifar");
    synthetic(&data);
    let mut cfg = narrow(&data);
    // A mild cut: the stable threshold 2/(0.9 η) ≈ 44 is just above the EoS one, so the stable
    // branch reaches it soon.
    cfg.design = branch::Design::Exit { m: 0.9 };
    cfg.t2_checks = 2;
    cfg.after_t2 = Some(0.3);
    cfg.horizon = 3.0;
    let r = branch::run_with(&cfg, None, None).unwrap();
    let s = &r.seeds[0];
    let t2 = s.t_star2.expect("the stable branch reaches 2/(mη)");
    let end = |b: &str| {
        s.log
            .series(b, 0, "train", "step_loss")
            .last()
            .map(|p| p.0)
            .unwrap()
    };
    // Both branches stop ≈ 0.3 after t** (the stable one at a measured pair, the EoS branch
    // at the same effective time to within a step), well before the horizon.
    let (e, st) = (end("eos"), end("stable"));
    assert!(
        st + 0.045 >= t2 + 0.3 - 1e-9 && st < t2 + 0.3 + 0.15 + 0.05,
        "{st} vs t** {t2}"
    );
    assert!((e - st).abs() <= 0.05 + 1e-9, "eos {e} vs stable {st}");
    assert!(st < s.t_star + cfg.horizon - 0.5);
    assert_eq!(s.window, (s.t_star, t2));
}
