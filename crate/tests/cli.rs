//! The command line's library functions: `sharpness` on a checkpoint agrees with the λ_max a run
//! tracked at that step; errors name the bad file.
use candle_core::{DType, Device};
use eoslab::checkpoint::{self, CheckpointMeta};
use eoslab::data::Dataset;
use eoslab::hessian::LanczosConfig;
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::Objective;
use eoslab::rng::Rng;
use eoslab::sharpness::{SharpnessConfig, SharpnessTracker};
use eoslab::train::{Every, GradientDescent, Observer};
use std::collections::BTreeMap;

#[test]
fn sharpness_command_matches_tracked_value() {
    let dir = std::env::temp_dir().join(format!("eoslab-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng::new(1);
    let (n, d) = (60, 5);
    let ds = Dataset::new(
        "toy",
        rng.normals(n * d),
        (0..n).map(|i| (i % 2) as u32).collect(),
        d,
        2,
    )
    .unwrap();
    let process = || {
        let model = Model::new(
            &ModelSpec::mlp(&[d, 16, 2], Activation::Tanh),
            InitSpec {
                scale: 1.0,
                seed: 3,
            },
            &Device::Cpu,
            DType::F64,
        )
        .unwrap();
        let obj =
            Objective::from_dataset(&ds, &Device::Cpu, DType::F64, LossKind::Mse, None).unwrap();
        GradientDescent::new(model, obj, 0.05, 0.0).unwrap()
    };
    let mut gd = process();
    let mut tracker = SharpnessTracker::new(SharpnessConfig {
        every: Every::new(10),
        lanczos: LanczosConfig {
            k: 2,
            tol: 1e-10,
            max_iter: 200,
            seed: 0,
        },
        subset: None,
        warm_start: true,
        track_above: None,
    });
    {
        // 31 steps: the tracker measures θ_0, θ_10, θ_20 and θ_30 (before each update).
        let mut obs: [&mut dyn Observer; 1] = [&mut tracker];
        gd.run(31, &mut obs).unwrap();
    }
    let rec = tracker
        .records
        .iter()
        .find(|r| r.step == 30)
        .unwrap()
        .clone();
    let ck = dir.join("ck.safetensors");
    let data = dir.join("train.safetensors");
    eoslab::data::tensors::export(&ds, &data, &[]).unwrap();
    // An independent run to step 30 (bit-identical by determinism), checkpointed there.
    let mut gd30 = process();
    gd30.run(30, &mut []).unwrap();
    let meta = CheckpointMeta::for_process(
        &gd30,
        BTreeMap::new(),
        &ds.fingerprint(),
        serde_json::Value::Null,
    );
    checkpoint::save(&ck, &gd30, &meta).unwrap();
    let out = eoslab::cli::sharpness(&ck, &data, 2, 1e-10, 200, "cpu", "checkpoint").unwrap();
    let lam = out["eigenvalues"][0].as_f64().unwrap();
    assert!(
        (lam - rec.values[0]).abs() < 1e-8 * rec.values[0],
        "cli {lam} vs tracked {}",
        rec.values[0]
    );
    assert_eq!(out["step"], 30);
    assert_eq!(out["fingerprint_matches_checkpoint"], true);

    // `eoslab spectrum` on the same checkpoint: its top Hessian eigenvalue is the same λ, and
    // with Hutch++ sketching the whole space (3p products) the traces are exact: tr H = tr G + tr R.
    let mut o = eoslab::cli::SpectrumOptions::new(ck.clone(), data.clone());
    o.spectrum.curvatures = vec![
        eoslab::hessian::Curvature::Hessian,
        eoslab::hessian::Curvature::GaussNewton,
        eoslab::hessian::Curvature::Residual,
    ];
    o.spectrum.tol = 1e-10;
    o.spectrum.trace.products = 3 * gd30.model.num_params();
    let sp = eoslab::cli::spectrum(&o).unwrap();
    let c = &sp["curvature"];
    let top = c["hessian"]["top"]["eigenvalues"][0].as_f64().unwrap();
    assert!(
        (top - rec.values[0]).abs() < 1e-8 * top,
        "spectrum {top} vs {}",
        rec.values[0]
    );
    let tr = |m: &str| c[m]["trace"]["estimate"].as_f64().unwrap();
    let (th, tg, tres) = (tr("hessian"), tr("gauss-newton"), tr("residual"));
    assert!(
        (th - tg - tres).abs() < 1e-8 * th.abs(),
        "traces {th} vs {tg} + {tres}"
    );
    let outlier = c["hessian"]["density"]["outliers"][0].as_f64().unwrap();
    assert!(
        (outlier - top).abs() < 1e-6 * top,
        "SLQ outlier {outlier} vs {top}"
    );
    let g_min = c["gauss-newton"]["density"]["outliers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(
        g_min > -1e-8 * top,
        "G has a resolved negative eigenvalue {g_min}"
    );

    // Wrong inputs: a data file whose width does not fit the model, a missing checkpoint.
    let wide = Dataset::new("wide", vec![0.0; 4 * 7], vec![0, 1, 0, 1], 7, 2).unwrap();
    let wide_path = dir.join("wide.safetensors");
    eoslab::data::tensors::export(&wide, &wide_path, &[]).unwrap();
    let e = eoslab::cli::sharpness(&ck, &wide_path, 1, 1e-6, 50, "cpu", "checkpoint")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wide.safetensors") && e.contains("7 features"),
        "{e}"
    );
    let e = eoslab::cli::sharpness(
        &dir.join("none.safetensors"),
        &data,
        1,
        1e-6,
        50,
        "cpu",
        "checkpoint",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("none.safetensors"), "{e}");
    let e = eoslab::cli::sharpness(&ck, &data, 1, 1e-6, 50, "cuda:0", "checkpoint")
        .unwrap_err()
        .to_string();
    assert!(e.contains("without CUDA"), "{e}");
    let e = eoslab::cli::spectrum(&eoslab::cli::SpectrumOptions::new(ck.clone(), wide_path))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wide.safetensors") && e.contains("7 features"),
        "{e}"
    );
}

#[test]
fn claim_data_choice_selects_source_and_classes() {
    use eoslab::cli::DataChoice;
    use eoslab::experiment::{DataSource, presets};
    let mut d = presets::digits_data();
    DataChoice {
        path: Some("my/data.csv.gz".into()),
        classes: None,
    }
    .apply(&mut d)
    .unwrap();
    assert!(matches!(d.source, DataSource::Csv { .. }));
    assert_eq!(
        d.classes, None,
        "the digits' class pair does not carry over to other data"
    );
    DataChoice {
        path: Some("x.safetensors".into()),
        classes: Some(vec![1, 9]),
    }
    .apply(&mut d)
    .unwrap();
    assert!(matches!(d.source, DataSource::Safetensors { .. }));
    assert_eq!(d.classes, Some(vec![1, 9]));
    let e = DataChoice {
        path: Some("x.parquet".into()),
        classes: None,
    }
    .apply(&mut d)
    .unwrap_err()
    .to_string();
    assert!(e.contains("x.parquet"), "{e}");
    let e = eoslab::cli::run_claim("nope", None, None, &DataChoice::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tradeoff"), "{e}");
}

#[test]
fn claim_data_choice_reads_mnist_directories_and_names_a_truncated_file() {
    use eoslab::cli::DataChoice;
    use eoslab::experiment::{DataSource, presets};
    let dir = tempfile::tempdir().unwrap();
    // 20 images of 2 x 2 pixels, labels alternating 3 and 8, as raw IDX files.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0, 0, 2];
    images.extend((0..80).map(|k| (k * 3) as u8));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 20];
    labels.extend((0..20).map(|i| if i % 2 == 0 { 3 } else { 8 }));
    let img = dir.path().join("train-images-idx3-ubyte");
    std::fs::write(&img, &images).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();

    for path in [dir.path().to_path_buf(), img.clone()] {
        let mut d = presets::digits_data();
        DataChoice {
            path: Some(path),
            classes: Some(vec![3, 8]),
        }
        .apply(&mut d)
        .unwrap();
        assert!(matches!(d.source, DataSource::Mnist { .. }));
        let (train, test) = d.load().unwrap();
        // test_fraction 0.2 of 10 per class.
        assert_eq!((train.n(), test.n()), (16, 4));
        assert_eq!((train.d, train.n_classes), (4, 2));
    }

    std::fs::write(&img, &images[..50]).unwrap();
    let mut d = presets::digits_data();
    DataChoice {
        path: Some(dir.path().to_path_buf()),
        classes: None,
    }
    .apply(&mut d)
    .unwrap();
    let e = d.load().unwrap_err().to_string();
    assert!(
        e.contains("train-images-idx3-ubyte")
            && e.contains("truncated: header says 20 x 2 x 2 images (80 bytes")
            && e.contains("file has 34"),
        "{e}"
    );
}

/// `eoslab run DIR/config.json` reruns a run directory's configuration: the same verdict and
/// numbers, the same configuration in its own directory; and `claim --set` reaches the same
/// field a dedicated flag does.
#[test]
fn run_reruns_a_run_directory_and_set_overrides_fields() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_eoslab");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let out = |cmd: &mut Command| {
        let o = cmd.env_remove("EOSLAB_JOBS").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let claim = |dir: &std::path::Path, extra: &[&str]| {
        out(Command::new(bin)
            .args(["claim", "tradeoff", "--preset", "digits", "--seeds", "2"])
            .args(extra)
            .arg("--out")
            .arg(dir))
    };
    let first = claim(&a, &["--horizon", "1"]);
    assert!(first.contains("\nCLAIM tradeoff: "), "{first}");
    let cfg = a.join("tradeoff").join("config.json");
    let again = out(Command::new(bin).arg("run").arg(&cfg).arg("--out").arg(&b));
    assert_eq!(
        again, first,
        "a rerun of config.json prints the same verdict and numbers"
    );
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    assert_eq!(read(b.join("config.json")), read(cfg.clone()));
    claim(&c, &["--set", "horizon=1"]);
    assert_eq!(
        read(c.join("tradeoff").join("config.json")),
        read(cfg.clone())
    );

    // A misspelt field is named, with the fields that exist there; nothing is written.
    let bad = Command::new(bin)
        .arg("run")
        .arg(&cfg)
        .args(["--set", "run.lrr=0.1", "--out"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && e.contains("no field \"lrr\" at run"),
        "{e}"
    );
    assert!(e.contains("config.json"), "{e}");
    assert!(!tmp.path().join("d").exists());
}

/// `eoslab sweep --local` runs a claim's seeds as separate task processes; `eoslab collect`
/// then prints exactly what the single-process `eoslab claim` prints, from the same per-seed
/// results; a finished sweep is not run again, and an unfinished one is named by collect.
#[test]
fn a_local_sweep_collects_to_the_single_process_claim() {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_eoslab");
    let tmp = tempfile::tempdir().unwrap();
    let claim = [
        "tradeoff",
        "--preset",
        "digits",
        "--seeds",
        "2",
        "--horizon",
        "1",
    ];
    let run = |args: &[&str], dir: &std::path::Path| {
        let o = Command::new(bin)
            .args(args)
            .arg(dir)
            .env_remove("EOSLAB_JOBS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (
            o.status.success(),
            String::from_utf8(o.stdout).unwrap(),
            err,
        )
    };
    let single = tmp.path().join("single");
    // Seeds side by side, each on one core: the bits of the sweep's one-core tasks.
    let single_args = [&["claim"], &claim[..], &["--jobs", "2", "--out"]].concat();
    let (ok, want, err) = run(&single_args, &single);
    assert!(ok, "{err}");
    let sw = tmp.path().join("sweep");
    let sweep = [&["sweep"], &claim[..], &["-j", "2", "--out"]].concat();
    // Without --submit or --local the sweep is only written; collect names what is missing.
    let (ok, _, err) = run(&sweep, &sw);
    assert!(ok && err.contains("2 tasks (2 unfinished)"), "{err}");
    let (ok, _, err) = run(&["collect"], &sw);
    assert!(!ok && err.contains("task 1: not finished"), "{err}");
    let (ok, _, err) = run(
        &[&sweep[..sweep.len() - 1], &["--local", "--out"]].concat(),
        &sw,
    );
    assert!(ok && err.contains("[sweep] task 1: finished"), "{err}");
    let (ok, got, err) = run(&["collect"], &sw);
    assert!(ok, "{err}");
    assert_eq!(got, want, "collect prints what eoslab claim prints");
    for s in 0..2 {
        let p = format!("tradeoff/seed-{s}/result.safetensors");
        assert_eq!(
            std::fs::read(single.join(&p)).unwrap(),
            std::fs::read(sw.join("collect/all").join(&p)).unwrap(),
            "seed {s}"
        );
    }
    assert!(sw.join("collect/summary.parquet").exists());
    let (ok, _, err) = run(
        &[&sweep[..sweep.len() - 1], &["--local", "--out"]].concat(),
        &sw,
    );
    assert!(
        ok && err.contains("0 unfinished") && !err.contains("[sweep] task"),
        "{err}"
    );
    // Another sweep in the same directory is refused.
    let other = [&["sweep"], &claim[..], &["--set", "horizon=2", "--out"]].concat();
    let (ok, _, err) = run(&other, &sw);
    assert!(!ok && err.contains("holds another sweep"), "{err}");
}
