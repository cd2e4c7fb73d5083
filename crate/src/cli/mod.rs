//! The command line's actions, as library functions (so they are tested like the rest); the
//! claims' options and runs are in [`claim`].
mod claim;
pub mod collect;
mod rerun;
mod spectrum;
pub mod sweep;

pub use crate::experiment::options::{ClaimOptions, DESIGNS, DataChoice, PRESETS};
pub use claim::{
    claim, claim_with, print_verdicts, resolve, run_claim, run_claim_with, run_claims_with,
};
pub use rerun::{Experiment, read as read_config, rerun};
pub use spectrum::{SpectrumOptions, spectra, spectrum};

use crate::checkpoint::{Checkpoint, parse_dtype};
use crate::config::parse_device;
use crate::experiment::presets::Preset;
use crate::hessian::{HessianOp, LanczosConfig};
use crate::objective::Objective;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Top-k eigenvalues of the training loss of `checkpoint` on the training set in `data`.
pub fn sharpness(
    checkpoint: &Path,
    data: &Path,
    k: usize,
    tol: f64,
    max_iter: usize,
    device: &str,
    dtype: &str,
) -> Result<serde_json::Value> {
    let Point {
        ck,
        model,
        objective,
        fingerprint: fp,
    } = Point::load(checkpoint, data, device, dtype)?;
    let op = HessianOp::new(&model, &objective)?;
    let eig = op.top_eigen(
        &LanczosConfig {
            k,
            tol,
            max_iter,
            seed: 0,
        },
        None,
    )?;
    Ok(serde_json::json!({
        "checkpoint": checkpoint.display().to_string(),
        "data": data.display().to_string(),
        "step": ck.meta.state.step,
        "t_eff": ck.meta.state.t_eff,
        "lr": ck.meta.state.lr,
        "threshold": ck.meta.state.threshold(),
        "loss": op.value(),
        "eigenvalues": eig.values,
        "residuals": eig.residuals,
        "hvps": eig.iterations,
        "converged": eig.converged,
        "dataset_fingerprint": fp,
        "fingerprint_matches_checkpoint": fp == ck.meta.dataset_fingerprint,
    }))
}

/// A checkpoint's model and the training objective on a dataset file, checked to fit.
pub(crate) struct Point {
    pub ck: Checkpoint,
    pub model: crate::model::Model,
    pub objective: Objective,
    pub fingerprint: String,
}

impl Point {
    /// Load `checkpoint` on `device` (`dtype`: `f32`, `f64` or `checkpoint`) with `data`.
    pub(crate) fn load(checkpoint: &Path, data: &Path, device: &str, dtype: &str) -> Result<Point> {
        let ck = Checkpoint::load(checkpoint)?;
        let ds = crate::data::tensors::load(data)?;
        let device = parse_device(device)?;
        let dtype = if dtype == "checkpoint" {
            parse_dtype(&ck.meta.dtype)?
        } else {
            parse_dtype(dtype)?
        };
        if ds.d != ck.meta.spec.input_dim() || ds.n_classes > ck.meta.spec.output_dim() {
            return Err(Error::data(
                data,
                format!(
                    "{} features / {} classes do not fit the checkpoint's model ({} inputs, {} \
                     outputs)",
                    ds.d,
                    ds.n_classes,
                    ck.meta.spec.input_dim(),
                    ck.meta.spec.output_dim()
                ),
            ));
        }
        let fingerprint = ds.fingerprint();
        let model = ck.model(&device, dtype)?;
        let (x, y) = ds.to_tensors(&device, dtype)?;
        // Labels may cover only some classes: the one-hot targets take the model's outputs.
        let objective = Objective::new(x, y, ck.meta.spec.output_dim(), ck.meta.loss, None)?;
        Ok(Point {
            ck,
            model,
            objective,
            fingerprint,
        })
    }
}

/// Options of `eoslab train`: one baseline training run of a preset with per-step losses,
/// λ_max on the preset's schedule and timings (for measuring costs and comparing devices).
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// `digits` (default) or `paper-cifar10`.
    pub preset: Option<String>,
    /// CIFAR-10 binary batches (required by `paper-cifar10`).
    pub data_dir: Option<PathBuf>,
    /// `cpu` or `cuda:N`.
    pub device: Option<String>,
    /// `f32` or `f64`.
    pub dtype: Option<String>,
    /// Gradient steps.
    pub steps: usize,
    /// Step size (default: the preset's).
    pub lr: Option<f64>,
    /// `mse`, `mse-half` or `ce` (default: the preset's).
    pub loss: Option<String>,
    /// Init seed.
    pub seed: u64,
    /// Measure λ_max every this many steps (default: the preset's).
    pub sharpness_every: Option<usize>,
}

/// Peak resident memory of this process in MiB (Linux; NaN elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Run `eoslab train`: the preset's training set (groups injected, as the claims use it), its
/// model and schedule, for `steps` steps on the chosen device; returns losses, λ_max records
/// and timings as JSON.
pub fn train(opts: &TrainOptions) -> Result<serde_json::Value> {
    use crate::model::{InitSpec, Model};
    use crate::sharpness::SharpnessTracker;
    use crate::train::GradientDescent;
    use std::time::Instant;
    let copts = ClaimOptions {
        preset: opts.preset.clone(),
        data_dir: opts.data_dir.clone(),
        device: opts.device.clone(),
        dtype: opts.dtype.clone(),
        steps: Some(opts.steps),
        ..ClaimOptions::default()
    };
    let preset = copts.preset()?.to_string();
    let (mut run, groups) = Preset::named(&preset, opts.data_dir.as_deref())?.run_and_groups();
    copts.apply_run(&mut run)?;
    if let Some(lr) = opts.lr {
        run.lr = lr;
    }
    if let Some(l) = &opts.loss {
        run.loss = l.parse()?;
    }
    if let Some(k) = opts.sharpness_every {
        run.sharpness.every = crate::train::Every::new(k);
    }
    let (device, dtype) = (run.device()?, run.dtype()?);
    let t0 = Instant::now();
    let (train, _test) = run.data.load()?;
    let train = crate::groups::build(&train, &groups)?.train;
    let load_seconds = t0.elapsed().as_secs_f64();
    let spec = run.model_spec(train.d, train.n_classes);
    let model = Model::new(
        &spec,
        InitSpec {
            scale: run.init_scale,
            seed: opts.seed,
        },
        &device,
        dtype,
    )?;
    let n_params = model.num_params();
    let objective = Objective::from_dataset(&train, &device, dtype, run.loss, run.chunk)?;
    let mut gd = GradientDescent::new(model, objective, run.lr, run.momentum)?;
    let mut tracker = SharpnessTracker::new(run.sharpness.clone());
    let (mut step_s, mut sharp_s) = (Vec::new(), Vec::new());
    let label = format!("train {preset} on {} ({})", run.device, run.dtype);
    let mut progress = crate::train::Progress::new(label, (opts.steps / 4).max(1));
    for step in 0..=opts.steps {
        if run.sharpness.every.hits(step) || step == opts.steps {
            let t = Instant::now();
            let obj = tracker.objective_for(&gd.objective)?;
            let op = HessianOp::new(&gd.model, &obj)?;
            let state = gd.state.clone();
            tracker.measure_with(&op, step, state.t_eff, &state)?;
            sharp_s.push(t.elapsed().as_secs_f64());
        }
        if step == opts.steps {
            break;
        }
        let t = Instant::now();
        let mut obs: [&mut dyn crate::train::Observer; 1] = [&mut progress];
        gd.step(&mut obs)?;
        step_s.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &[f64]| crate::stats::median(v);
    Ok(serde_json::json!({
        "preset": preset,
        "device": run.device,
        "dtype": run.dtype,
        "loss_kind": run.loss.to_string(),
        "lr": run.lr,
        "seed": opts.seed,
        "n_train": train.n(),
        "inputs": train.d,
        "params": n_params,
        "dataset_fingerprint": train.fingerprint(),
        "steps": opts.steps,
        "load_seconds": load_seconds,
        "median_step_seconds": median(&step_s),
        "median_sharpness_seconds": median(&sharp_s),
        "total_seconds": t0.elapsed().as_secs_f64(),
        "peak_rss_mib": peak_rss_mib(),
        "history": gd.history.iter().map(|h| serde_json::json!({
            "step": h.step, "loss": h.loss, "grad_norm": h.grad_norm,
        })).collect::<Vec<_>>(),
        "sharpness": tracker.records.iter().map(|r| serde_json::json!({
            "step": r.step, "lambda_max": r.lambda_max(), "residual": r.residuals[0],
            "hvps": r.iterations, "converged": r.converged, "warm": r.warm,
        })).collect::<Vec<_>>(),
    }))
}

/// Write a synthetic data set in CIFAR-10's binary format (see
/// [`crate::experiment::paper::write_synthetic_cifar`]).
pub fn synthetic_cifar(
    dir: &Path,
    train_per_class: usize,
    test_per_class: usize,
    seed: u64,
) -> Result<()> {
    crate::experiment::paper::write_synthetic_cifar(dir, train_per_class, test_per_class, seed)
}

/// Run `eoslab regime`: the regime map's cells ([`crate::experiment::regime::default_cells`])
/// in shared resumable run directories under `out`; write `regime.parquet`/`.csv` and the
/// figures there and return every cell's decisive numbers as JSON.
pub fn regime(out: &Path) -> Result<serde_json::Value> {
    use crate::experiment::regime;
    let cells = regime::default_cells();
    let results = regime::run(&cells, &out.join("runs"))?;
    println!("{}", regime::write(&results, out)?);
    Ok(serde_json::json!(
        results
            .iter()
            .map(|r| serde_json::json!({ "cell": r.cell, "numbers": r.numbers() }))
            .collect::<Vec<_>>()
    ))
}
