//! The curvature toolkit against dense references on small models: the Gauss-Newton split
//! (`G + R = H`, `G` positive semi-definite, `G = Jᵀ ∇²ℓ J` with a finite-difference Jacobian,
//! `H = G` at a zero-residual MSE point), Hutchinson / Hutch++ traces and the SLQ density
//! against the dense eigendecomposition.
mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use eoslab::hessian::{
    Curvature, DensityConfig, HessianOp, LanczosConfig, TraceConfig, TraceMethod, dense_curvature,
};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::{Derivatives, Objective};
use nalgebra::{DMatrix, SymmetricEigen};

fn dense(m: &Model, obj: &Objective, which: Curvature) -> DMatrix<f64> {
    let p = m.num_params();
    DMatrix::from_row_slice(p, p, &dense_curvature(m, obj, which).unwrap())
}

/// Eigenvalues, descending.
fn eigenvalues(a: &DMatrix<f64>) -> Vec<f64> {
    let mut ev: Vec<f64> = SymmetricEigen::new(a.clone())
        .eigenvalues
        .iter()
        .copied()
        .collect();
    ev.sort_by(|a, b| b.total_cmp(a));
    ev
}

fn cnn(seed: u64) -> Model {
    let spec = ModelSpec::Cnn {
        input: [1, 4, 4],
        channels: vec![2],
        kernel: 3,
        pool: 2,
        outputs: 3,
        activation: Activation::Tanh,
    };
    Model::new(
        &spec,
        InitSpec { scale: 1.0, seed },
        &Device::Cpu,
        DType::F64,
    )
    .unwrap()
}

/// `G + R = H`, G symmetric positive semi-definite, for MLPs (closed form and autodiff, which
/// must agree) and a CNN (autodiff), under MSE and cross-entropy.
#[test]
fn gauss_newton_split_adds_up_to_the_hessian() {
    let cases: Vec<(String, Model, usize)> = vec![
        (
            "tanh mlp".into(),
            mlp(&[4, 6, 5, 3], Activation::Tanh, DType::F64, 1),
            4,
        ),
        (
            "gelu mlp".into(),
            mlp(&[4, 7, 3], Activation::Gelu, DType::F64, 2),
            4,
        ),
        (
            "relu mlp".into(),
            mlp(&[4, 7, 3], Activation::Relu, DType::F64, 3),
            4,
        ),
        ("tanh cnn".into(), cnn(4), 16),
    ];
    for (name, m, d) in &cases {
        jitter(m, 7);
        for loss in [LossKind::Mse, LossKind::CrossEntropy] {
            let obj = random_objective(13, *d, 3, loss, DType::F64, 5, Some(6));
            let what = format!("{name}/{loss}");
            let hows: &[Derivatives] = if name.contains("mlp") {
                &[Derivatives::Auto, Derivatives::Autodiff]
            } else {
                &[Derivatives::Autodiff]
            };
            let mut gs = Vec::new();
            for &how in hows {
                let obj = obj.with_derivatives(how);
                let h = dense(m, &obj, Curvature::Hessian);
                let g = dense(m, &obj, Curvature::GaussNewton);
                let r = dense(m, &obj, Curvature::Residual);
                let e = (&g + &r - &h).abs().max() / h.abs().max();
                assert!(e < 1e-12, "{what} ({how:?}): |G + R - H| / |H| = {e:e}");
                let asym = (&g - g.transpose()).abs().max() / g.abs().max();
                assert!(asym < 1e-12, "{what} ({how:?}): G asymmetry {asym:e}");
                let ev = eigenvalues(&g);
                let min = *ev.last().unwrap();
                assert!(
                    min > -1e-12 * ev[0],
                    "{what} ({how:?}): G has eigenvalue {min:e}"
                );
                assert!(r.abs().max() > 1e-6 * h.abs().max(), "{what}: R vanished");
                gs.push(g);
            }
            if gs.len() == 2 {
                let e = (&gs[0] - &gs[1]).abs().max() / gs[1].abs().max();
                assert!(e < 1e-12, "{what}: closed-form vs autodiff G {e:e}");
            }
        }
    }
}

/// G against an independent construction: `Jᵀ ∇²ℓ J` from a central finite-difference Jacobian
/// of the outputs and the loss's output Hessian written out by hand.
#[test]
fn gauss_newton_equals_jacobian_sandwich() {
    let m = mlp(&[3, 5, 3], Activation::Tanh, DType::F64, 11);
    jitter(&m, 12);
    let n = 7;
    for loss in [LossKind::Mse, LossKind::CrossEntropy] {
        let obj = random_objective(n, 3, 3, loss, DType::F64, 13, None);
        let p = m.num_params();
        let theta: Vec<Tensor> = m.tensors().iter().map(|t| t.copy().unwrap()).collect();
        let flat = host(&theta);
        let outputs = |x: &[f64]| -> Vec<f64> {
            m.set_tensors(&m.unflatten(&Tensor::new(x, &Device::Cpu).unwrap()).unwrap())
                .unwrap();
            let o = obj.outputs(&m).unwrap();
            o.flatten_all().unwrap().to_vec1().unwrap()
        };
        let f0 = outputs(&flat);
        let eps = 1e-6;
        let mut jac = DMatrix::zeros(n * 3, p);
        for j in 0..p {
            let (mut a, mut b) = (flat.clone(), flat.clone());
            a[j] += eps;
            b[j] -= eps;
            let (fa, fb) = (outputs(&a), outputs(&b));
            for i in 0..n * 3 {
                jac[(i, j)] = (fa[i] - fb[i]) / (2.0 * eps);
            }
        }
        m.set_tensors(&theta).unwrap();
        // ∇²ℓ / n, block diagonal: 2I for MSE, diag(p) − ppᵀ for cross-entropy.
        let mut hout = DMatrix::zeros(n * 3, n * 3);
        for e in 0..n {
            let o = &f0[3 * e..3 * e + 3];
            let mx = o.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = o.iter().map(|v| (v - mx).exp()).sum();
            let pr: Vec<f64> = o.iter().map(|v| (v - mx).exp() / z).collect();
            for a in 0..3 {
                for b in 0..3 {
                    hout[(3 * e + a, 3 * e + b)] = match loss {
                        LossKind::CrossEntropy => {
                            (if a == b { pr[a] } else { 0.0 }) - pr[a] * pr[b]
                        }
                        _ => {
                            if a == b {
                                2.0
                            } else {
                                0.0
                            }
                        }
                    } / n as f64;
                }
            }
        }
        let reference = jac.transpose() * hout * &jac;
        let g = dense(&m, &obj, Curvature::GaussNewton);
        let e = (&g - &reference).abs().max() / reference.abs().max();
        assert!(e < 1e-7, "{loss}: G vs Jᵀ∇²ℓJ (finite differences) {e:e}");
    }
}

/// MSE at a point whose outputs equal the targets: every residual is zero, so H = G.
#[test]
fn mse_at_zero_residual_has_hessian_equal_to_gauss_newton() {
    let m = mlp(&[4, 6, 3], Activation::Tanh, DType::F64, 21);
    jitter(&m, 22);
    // Every label class 0; last layer weight 0 and bias e_0: f(x) = onehot(0) for every x.
    let obj = random_objective(11, 4, 1, LossKind::Mse, DType::F64, 23, None);
    let obj = Objective::new(obj.x().clone(), obj.y().clone(), 3, LossKind::Mse, None).unwrap();
    let mut t: Vec<Tensor> = m.tensors().iter().map(|t| t.copy().unwrap()).collect();
    let names: Vec<String> = m.params().iter().map(|(n, _)| n.clone()).collect();
    let wi = names.iter().position(|n| n == "net.2.weight").unwrap();
    let bi = names.iter().position(|n| n == "net.2.bias").unwrap();
    t[wi] = t[wi].zeros_like().unwrap();
    t[bi] = Tensor::new(&[1.0f64, 0.0, 0.0], &Device::Cpu).unwrap();
    m.set_tensors(&t).unwrap();
    assert!(obj.value(&m).unwrap().abs() < 1e-30);
    for how in [Derivatives::Auto, Derivatives::Autodiff] {
        let obj = obj.with_derivatives(how);
        let h = dense(&m, &obj, Curvature::Hessian);
        let g = dense(&m, &obj, Curvature::GaussNewton);
        let r = dense(&m, &obj, Curvature::Residual);
        assert!(h.abs().max() > 1e-3, "{how:?}: H vanished");
        assert!(
            r.abs().max() < 1e-14 * h.abs().max(),
            "{how:?}: R = {}",
            r.abs().max()
        );
        let e = (&h - &g).abs().max() / h.abs().max();
        assert!(e < 1e-14, "{how:?}: |H - G| / |H| = {e:e}");
    }
}

/// Traces (Hutchinson, Hutch++), the SLQ density and the top eigenvalues of H and of G, against
/// the dense eigendecomposition of a small MLP's Hessian and Gauss-Newton matrix.
#[test]
fn trace_density_and_top_eigenvalues_match_dense_spectra() {
    let m = mlp(&[4, 6, 3], Activation::Tanh, DType::F64, 31);
    jitter(&m, 32);
    let obj = random_objective(20, 4, 3, LossKind::CrossEntropy, DType::F64, 33, None);
    let p = m.num_params();
    let op = HessianOp::new(&m, &obj).unwrap();
    for which in [Curvature::Hessian, Curvature::GaussNewton] {
        let a = dense(&m, &obj, which);
        let ev = eigenvalues(&a);
        let tr = a.trace();
        let op = op.part(which);
        // Hutch++ with a sketch as large as the space: exact.
        let exact = op
            .trace(&TraceConfig {
                method: TraceMethod::HutchPlusPlus,
                products: 3 * p,
                seed: 1,
            })
            .unwrap();
        assert!(
            (exact.estimate - tr).abs() < 1e-10 * ev[0].abs(),
            "{which:?}: Hutch++ {} vs dense {tr}",
            exact.estimate
        );
        // Hutchinson: within 4 standard errors; the error estimate itself within 30% of the
        // exact one, √(2 (‖A‖_F² − Σ A_jj²) / m).
        let m_probes = 400;
        let h = op
            .trace(&TraceConfig {
                method: TraceMethod::Hutchinson,
                products: m_probes,
                seed: 2,
            })
            .unwrap();
        let off: f64 =
            a.iter().map(|x| x * x).sum::<f64>() - a.diagonal().iter().map(|x| x * x).sum::<f64>();
        let sd = (2.0 * off / m_probes as f64).sqrt();
        assert!(
            (h.estimate - tr).abs() < 4.0 * sd,
            "{which:?}: {h:?} vs {tr}"
        );
        assert!(
            (h.std_error / sd - 1.0).abs() < 0.3,
            "{which:?}: se {} vs {sd}",
            h.std_error
        );
        // SLQ with as many steps as dimensions: the top Ritz values are eigenvalues, the mean of
        // the density is tr/p within its sampling error.
        let cfg = DensityConfig {
            probes: 6,
            steps: p,
            ..DensityConfig::default()
        };
        let dens = op.density(&cfg).unwrap();
        for i in 0..3 {
            assert!(
                (dens.outliers[i] - ev[i]).abs() < 1e-8 * ev[0].abs(),
                "{which:?}: outlier {i} {} vs {}",
                dens.outliers[i],
                ev[i]
            );
        }
        let sd_mean = (2.0 * off).sqrt() / p as f64 / (cfg.probes as f64).sqrt();
        let mean = dens.spectral_mean(|x| x);
        assert!(
            (mean - tr / p as f64).abs() < 4.0 * sd_mean,
            "{which:?}: density mean {mean} vs {}",
            tr / p as f64
        );
        let dx = dens.grid[1] - dens.grid[0];
        let mass = dens.density.iter().sum::<f64>() * dx;
        assert!((mass - 1.0).abs() < 1e-3, "{which:?}: mass {mass}");
        let eig = op
            .top_eigen(
                &LanczosConfig {
                    k: 3,
                    tol: 1e-10,
                    max_iter: p,
                    seed: 0,
                },
                None,
            )
            .unwrap();
        for i in 0..3 {
            assert!(
                (eig.values[i] - ev[i]).abs() < 1e-8 * ev[0].abs(),
                "{which:?} λ{i}"
            );
        }
    }
}

/// The sharpness tracker's `track_above` option at a fixed point: it adds a pair while the
/// smallest tracked eigenvalue is above c/η, settles on every eigenvalue above it plus one, and
/// keeps each eigenvector's sign from one measurement to the next.
#[test]
fn tracker_follows_every_eigenvalue_above_the_threshold() {
    use eoslab::sharpness::{SharpnessConfig, SharpnessTracker, TrackAbove};
    use eoslab::train::GdState;
    let m = mlp(&[4, 6, 3], Activation::Tanh, DType::F64, 41);
    jitter(&m, 42);
    let obj = random_objective(20, 4, 3, LossKind::Mse, DType::F64, 43, None);
    let ev = eigenvalues(&dense(&m, &obj, Curvature::Hessian));
    // c = 1 and η between 1/λ2 and 1/λ3: exactly two eigenvalues above c/η.
    let state = GdState::new(2.0 / (ev[1] + ev[2]), 0.0);
    let mut t = SharpnessTracker::new(SharpnessConfig {
        lanczos: LanczosConfig {
            k: 1,
            tol: 1e-10,
            max_iter: 200,
            seed: 0,
        },
        track_above: Some(TrackAbove { c: 1.0, max_k: 6 }),
        ..SharpnessConfig::default()
    });
    let op = HessianOp::new(&m, &obj).unwrap();
    let mut prev: Option<Vec<Tensor>> = None;
    for step in 0..4 {
        t.measure_with(&op, step, 0.0, &state).unwrap();
        let vecs = t.vectors.clone().unwrap();
        if let Some(p) = &prev {
            for (a, b) in vecs.iter().zip(p) {
                let d: f64 = (a * b).unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(d > 0.99, "step {step}: eigenvector sign flipped (cos {d})");
            }
        }
        prev = Some(vecs);
    }
    let ks: Vec<usize> = t.records.iter().map(|r| r.values.len()).collect();
    assert_eq!(ks, vec![1, 2, 3, 3]);
    let last = &t.records[3].values;
    for i in 0..3 {
        assert!(
            (last[i] - ev[i]).abs() < 1e-8 * ev[0],
            "λ{i}: {} vs {}",
            last[i],
            ev[i]
        );
    }
}

/// The spectra experiment on the digits preset (one seed, small solver settings): the snapshots
/// sit where they should (half the fork step, the fork, equal effective times on both
/// branches), the fork's top Hessian eigenvalue has reached 2/η, G is positive semi-definite at
/// every point, and tr H = tr G + tr R within the estimates' standard errors. Through
/// `eoslab spectra`, a rerun of the written config.json gives the same table byte for byte.
#[test]
fn spectra_along_a_fork() {
    use eoslab::experiment::spectra::{self, SpectraConfig};
    use eoslab::hessian::SpectrumConfig;
    let mut branch = eoslab::experiment::presets::digits_tradeoff();
    branch.seeds = vec![0];
    let cfg = SpectraConfig {
        branch,
        seed: 0,
        before: 0.5,
        after: vec![1.0],
        spectrum: SpectrumConfig {
            curvatures: vec![
                Curvature::Hessian,
                Curvature::GaussNewton,
                Curvature::Residual,
            ],
            k: 1,
            tol: 1e-4,
            max_iter: 200,
            trace: TraceConfig {
                method: TraceMethod::HutchPlusPlus,
                products: 24,
                seed: 0,
            },
            density: DensityConfig {
                probes: 1,
                steps: 16,
                ..DensityConfig::default()
            },
        },
    };
    let r = spectra::run(&cfg).unwrap();
    let labels: Vec<&str> = r.snapshots.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["before", "t*", "eos +1", "stable +1"]);
    let s = &r.snapshots;
    let (eta, m) = (0.1, 0.1);
    assert_eq!(s[0].step, (r.fork_step as f64 / 2.0).round() as usize);
    assert_eq!(s[1].step, r.fork_step);
    assert_eq!(s[2].step, r.fork_step + (1.0f64 / eta).round() as usize);
    assert_eq!(
        s[3].step,
        r.fork_step + (1.0f64 / (m * eta)).round() as usize
    );
    assert!(
        (s[2].t_eff - s[3].t_eff).abs() < 1e-9,
        "{} vs {}",
        s[2].t_eff,
        s[3].t_eff
    );
    assert!((s[2].threshold - 20.0).abs() < 1e-9 && (s[3].threshold - 200.0).abs() < 1e-9);
    let top = |i: usize, c: Curvature| s[i].part(c).unwrap().top.eigenvalues[0];
    // The baseline stops at its first measurement with λ_max ≥ 2/η (to the tracker's 1e-4).
    assert!(
        top(1, Curvature::Hessian) >= 20.0 * (1.0 - 1e-3),
        "{}",
        top(1, Curvature::Hessian)
    );
    assert!(
        top(0, Curvature::Hessian) < 20.0,
        "before t*: {}",
        top(0, Curvature::Hessian)
    );
    for snap in s {
        let g = snap.part(Curvature::GaussNewton).unwrap();
        assert!(
            g.top.eigenvalues.iter().all(|v| *v > 0.0),
            "{}: {:?}",
            snap.label,
            g.top
        );
        let tr = |c: Curvature| snap.part(c).unwrap().trace.clone();
        let (h, g, res) = (
            tr(Curvature::Hessian),
            tr(Curvature::GaussNewton),
            tr(Curvature::Residual),
        );
        let se = (h.std_error.powi(2) + g.std_error.powi(2) + res.std_error.powi(2)).sqrt();
        let gap = h.estimate - g.estimate - res.estimate;
        assert!(
            gap.abs() < 4.0 * se,
            "{}: tr H − tr G − tr R = {gap} (se {se})",
            snap.label
        );
    }
    let table = r.table().unwrap();
    assert_eq!(table.height(), 4 * 3);
    assert_eq!(r.summary().unwrap().height(), 4);
    let checks = r.checks();
    assert!(checks.holds(), "{}", checks.details());
    assert_eq!(checks.checks.len(), 1 + 4 * 4, "{}", checks.details());

    // The command line: a config file with overrides (only H, to save time), then a rerun of
    // what it wrote.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("in.json");
    std::fs::write(&path, cfg.to_json()).unwrap();
    let a = tmp.path().join("a");
    let sets = [
        "after=[0.5]".to_string(),
        r#"spectrum.curvatures=["hessian"]"#.to_string(),
    ];
    let ra = eoslab::cli::spectra(Some(&path), &sets, &a).unwrap();
    assert_eq!(ra.snapshots[2].label, "eos +0.5");
    assert_eq!(ra.snapshots[2].parts.len(), 1);
    for f in [
        "config.json",
        "spectra.json",
        "spectra.csv",
        "density_hessian.svg",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }
    let b = tmp.path().join("b");
    eoslab::cli::spectra(Some(&a.join("config.json")), &[], &b).unwrap();
    let csv = |d: &std::path::Path| std::fs::read(d.join("spectra.csv")).unwrap();
    assert_eq!(csv(&a), csv(&b), "a rerun of config.json differs");
    // Bad input: a misspelt override and a file that is not a configuration, both named.
    let e = eoslab::cli::spectra(Some(&path), &["seeed=1".into()], &b)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("in.json") && e.contains("no field \"seeed\""),
        "{e}"
    );
    let e = eoslab::cli::spectra(Some(&a.join("spectra.csv")), &[], &b)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spectra.csv") && e.contains("not valid JSON")
            || e.contains("not a spectra configuration"),
        "{e}"
    );
}

/// `track_above` from the command line's `--set` (the JSON leaves the field out while it is
/// unset) on a digits run through the edge of stability: every solve asks for one pair more
/// than the previous measurement had above c/η (at least 1, at most `max_k`), so the count
/// follows the eigenvalues that cross the threshold.
#[test]
fn track_above_follows_the_eigenvalues_that_cross_c_over_eta() {
    use eoslab::experiment::{eos, presets};
    let sets = [
        "lrs=[0.1]",
        "seeds=[0]",
        "run.steps=400",
        r#"run.sharpness.track_above={"c": 0.5, "max_k": 4}"#,
    ]
    .map(String::from);
    let cfg = eoslab::overrides::apply(&presets::digits_eos(), &sets).unwrap();
    let t = cfg.run.sharpness.track_above.unwrap();
    assert_eq!((t.c, t.max_k), (0.5, 4));
    let r = eos::run(&cfg).unwrap();
    let recs = &r.runs[0].sharpness;
    let threshold = 0.5 / 0.1;
    let mut most = 0;
    for w in recs.windows(2) {
        let above = w[0].values.iter().filter(|v| **v >= threshold).count();
        assert_eq!(
            w[1].values.len(),
            (above + 1).clamp(1, 4),
            "step {}",
            w[1].step
        );
        most = most.max(w[1].values.len());
    }
    assert!(most >= 3, "no second eigenvalue crossed c/η: {most}");
    let line: Vec<String> = recs
        .iter()
        .map(|r| format!("{}:{}", r.step, r.values.len()))
        .collect();
    eprintln!("tracked pairs per measurement: {}", line.join(" "));
}

/// `eoslab spectrum` on a CNN checkpoint (autodiff products): with Hutch++'s sketch spanning
/// the whole space its traces are the dense traces of H, G and R, and the top eigenvalues are
/// the dense ones.
#[test]
fn spectrum_command_on_a_cnn_checkpoint_matches_dense_spectra() {
    use eoslab::checkpoint::{self, CheckpointMeta};
    use eoslab::data::Dataset;
    use eoslab::train::GradientDescent;
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = eoslab::rng::Rng::new(51);
    let (n, d) = (24, 16);
    let ds = Dataset::new(
        "toy",
        rng.normals(n * d),
        (0..n).map(|i| (i % 3) as u32).collect(),
        d,
        3,
    )
    .unwrap();
    let m = cnn(52);
    let obj = Objective::from_dataset(&ds, &Device::Cpu, DType::F64, LossKind::CrossEntropy, None)
        .unwrap();
    let mut gd = GradientDescent::new(m, obj.clone(), 0.5, 0.0).unwrap();
    gd.run(5, &mut []).unwrap();
    let (ck, data) = (
        tmp.path().join("cnn.safetensors"),
        tmp.path().join("train.safetensors"),
    );
    eoslab::data::tensors::export(&ds, &data, &[]).unwrap();
    let meta = CheckpointMeta::for_process(
        &gd,
        Default::default(),
        &ds.fingerprint(),
        serde_json::Value::Null,
    );
    checkpoint::save(&ck, &gd, &meta).unwrap();
    let p = gd.model.num_params();
    let mut o = eoslab::cli::SpectrumOptions::new(ck, data);
    o.spectrum.curvatures = vec![
        Curvature::Hessian,
        Curvature::GaussNewton,
        Curvature::Residual,
    ];
    (o.spectrum.k, o.spectrum.tol, o.spectrum.max_iter) = (2, 1e-10, p);
    o.spectrum.trace.products = 3 * p;
    let out = eoslab::cli::spectrum(&o).unwrap();
    assert_eq!(out["dim"], p);
    for which in [
        Curvature::Hessian,
        Curvature::GaussNewton,
        Curvature::Residual,
    ] {
        let a = dense(&gd.model, &obj, which);
        let ev = eigenvalues(&a);
        let part = &out["curvature"][which.name()];
        let tr = part["trace"]["estimate"].as_f64().unwrap();
        assert!(
            (tr - a.trace()).abs() < 1e-8 * ev[0].abs().max(1.0),
            "{which:?}: trace {tr} vs {}",
            a.trace()
        );
        for i in 0..2 {
            let v = part["top"]["eigenvalues"][i].as_f64().unwrap();
            assert!(
                (v - ev[i]).abs() < 1e-8 * ev[0].abs(),
                "{which:?} λ{i}: {v} vs {}",
                ev[i]
            );
        }
    }
}
