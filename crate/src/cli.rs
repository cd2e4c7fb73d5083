//! The command line's actions, as library functions (so they are tested like the rest).
use crate::branch;
use crate::checkpoint::{Checkpoint, parse_dtype};
use crate::experiment::config::parse_device;
use crate::experiment::presets::Preset;
use crate::experiment::{claims, eos};
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
                "{} features / {} classes do not fit the checkpoint's model ({} inputs, {} outputs)",
                ds.d,
                ds.n_classes,
                ck.meta.spec.input_dim(),
                ck.meta.spec.output_dim()
            ),
        ));
    }
    let fp = ds.fingerprint();
    let model = ck.model(&device, dtype)?;
    let objective = Objective::from_dataset(&ds, &device, dtype, ck.meta.loss, None)?;
    let objective = if ds.n_classes < ck.meta.spec.output_dim() {
        // Labels only cover some classes: widen the one-hot targets to the model's outputs.
        Objective::new(
            objective.x().clone(),
            objective.y().clone(),
            ck.meta.spec.output_dim(),
            ck.meta.loss,
            None,
        )?
    } else {
        objective
    };
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

/// Where a claim's examples come from when not the shipped digits.
#[derive(Clone, Debug, Default)]
pub struct DataChoice {
    /// A CSV (label in the last column) or safetensors (`x`, `y`) file, or MNIST IDX files
    /// (their directory or the images file).
    pub path: Option<std::path::PathBuf>,
    /// Classes to keep, relabelled 0..k in this order.
    pub classes: Option<Vec<u32>>,
}

impl DataChoice {
    /// Apply to a preset's data configuration.
    pub fn apply(&self, data: &mut crate::experiment::DataConfig) -> Result<()> {
        if let Some(p) = &self.path {
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            let name = p.to_string_lossy().to_ascii_lowercase();
            let file_name = p
                .file_name()
                .map(|f| f.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            // A directory can only be MNIST's IDX files; the loader lists what it finds there.
            data.source = if p.is_dir() || file_name.contains("-idx3-ubyte") {
                crate::experiment::DataSource::Mnist { path: p.clone() }
            } else if ext == "safetensors" {
                crate::experiment::DataSource::Safetensors { path: p.clone() }
            } else if ext == "csv" || name.ends_with(".csv.gz") {
                crate::experiment::DataSource::Csv { path: p.clone() }
            } else {
                return Err(Error::data(
                    p,
                    "expected a .csv, .csv.gz or .safetensors file, a directory of MNIST IDX \
                     files, or an MNIST images file (*-idx3-ubyte[.gz])",
                ));
            };
            if self.classes.is_none() {
                data.classes = None;
            }
            // A preset's image preparation belongs to its own data: other data is standardised
            // per feature, kept at full size, and split 80/20 when it has no test split.
            data.standardize = crate::experiment::Standardize::PerFeature;
            data.reduce = crate::data::Reduce::default();
            if data.test_fraction == 0.0 {
                data.test_fraction = 0.2;
            }
        }
        if let Some(c) = &self.classes {
            data.classes = Some(c.clone());
        }
        Ok(())
    }
}

/// Run claim `name` with its preset (shipped data unless `data` says otherwise); print the
/// claim line and a JSON summary. `out` receives the run directories (metrics, checkpoints,
/// figures).
pub fn claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<()> {
    claim_with(
        name,
        &ClaimOptions {
            seeds,
            out: out.map(Path::to_path_buf),
            data: data.clone(),
            ..ClaimOptions::default()
        },
    )
}

/// [`claim`] with every option of `eoslab claim`.
pub fn claim_with(name: &str, opts: &ClaimOptions) -> Result<()> {
    let verdict = run_claim_with(name, opts)?;
    println!("{verdict}");
    println!(
        "{}",
        serde_json::to_string_pretty(&verdict.numbers).expect("json")
    );
    Ok(())
}

/// The presets `eoslab claim` and `eoslab train` know (the first is the default).
pub const PRESETS: [&str; 3] = [
    crate::experiment::cifar_subset::NAME,
    "digits",
    crate::experiment::paper::NAME,
];

/// Everything `eoslab claim` takes besides the claim's name.
#[derive(Clone, Debug, Default)]
pub struct ClaimOptions {
    /// `digits` (default: the shipped data, CPU scale) or `paper-cifar10`.
    pub preset: Option<String>,
    /// CIFAR-10 binary batches (required by `paper-cifar10`).
    pub data_dir: Option<PathBuf>,
    /// Number of seeds (default: the preset's).
    pub seeds: Option<usize>,
    /// Output directory; when given the run is resumable (see [`crate::resume`]).
    pub out: Option<PathBuf>,
    /// Other data for the digits preset (a CSV or safetensors file, class subset).
    pub data: DataChoice,
    /// `cpu` or `cuda:N` (default: the preset's, `cpu`).
    pub device: Option<String>,
    /// `f32` or `f64` (default: the preset's, `f32`).
    pub dtype: Option<String>,
    /// Cap on baseline steps (branching claims) or run length (`eos`), overriding the preset.
    pub steps: Option<usize>,
    /// Stop after this many gradient steps in this invocation (rerun to resume).
    pub step_budget: Option<usize>,
    /// Checkpoint period in steps (default 512).
    pub checkpoint_every: Option<usize>,
}

impl ClaimOptions {
    fn preset(&self) -> Result<&str> {
        let p = self.preset.as_deref().unwrap_or(PRESETS[0]);
        if !PRESETS.contains(&p) {
            return Err(Error::Config(format!(
                "unknown preset {p:?} (available: {})",
                PRESETS.join(", ")
            )));
        }
        if p == crate::experiment::paper::NAME {
            if self.data_dir.is_none() {
                return Err(Error::Config(format!(
                    "preset {p} needs --data-dir: the directory holding CIFAR-10's binary \
                     batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin)"
                )));
            }
            if self.data.path.is_some() || self.data.classes.is_some() {
                return Err(Error::Config(format!(
                    "preset {p} reads CIFAR-10 classes 1 vs 9 from --data-dir; --data and \
                     --classes apply to the other presets"
                )));
            }
        } else if self.data_dir.is_some() {
            return Err(Error::Config(
                "--data-dir is for --preset paper-cifar10 (the other presets take --data)".into(),
            ));
        }
        Ok(p)
    }

    /// Device, dtype and step overrides on a run configuration; the device and dtype are
    /// checked here, before any data is read.
    fn apply_run(&self, run: &mut crate::experiment::RunConfig) -> Result<()> {
        if let Some(d) = &self.device {
            parse_device(d)?;
            run.device = d.trim().to_ascii_lowercase();
        }
        if let Some(t) = &self.dtype {
            parse_dtype(t)?;
            run.dtype = t.clone();
        }
        if let Some(s) = self.steps {
            run.steps = s;
        }
        Ok(())
    }

    fn apply(&self, cfg: &mut crate::branch::BranchConfig) -> Result<()> {
        if let Some(s) = self.seeds {
            cfg.seeds = (0..s as u64).collect();
        }
        self.data.apply(&mut cfg.run.data)?;
        self.apply_run(&mut cfg.run)
    }

    /// The resume options of a run with an output directory.
    pub fn resume_options(&self) -> crate::resume::ResumeOptions {
        crate::resume::ResumeOptions {
            checkpoint_every: self.checkpoint_every.unwrap_or(512),
            step_budget: self.step_budget.map(crate::resume::StepBudget::new),
            progress_every: Some(30.0),
        }
    }
}

/// Run claim `name` (its preset, on `data`) and return its verdict.
pub fn run_claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<crate::experiment::Verdict> {
    run_claim_with(
        name,
        &ClaimOptions {
            seeds,
            out: out.map(Path::to_path_buf),
            data: data.clone(),
            ..ClaimOptions::default()
        },
    )
}

/// Run claim `name` with `opts` and return its verdict. With an output directory the run is
/// resumable: rerunning the same command continues an interrupted run (and a different
/// configuration in that directory is an error).
pub fn run_claim_with(name: &str, opts: &ClaimOptions) -> Result<crate::experiment::Verdict> {
    if !["eos", "tradeoff", "alignment", "saturation"].contains(&name) {
        return Err(Error::Config(format!(
            "unknown claim {name:?} (available: eos, tradeoff, alignment, saturation)"
        )));
    }
    opts.preset()?;
    // One spelling of the data directory, so that a rerun from elsewhere resumes the same run.
    let paper_dir = opts
        .data_dir
        .as_ref()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
    let preset = Preset::named(opts.preset()?, paper_dir.as_deref())?;
    let out = opts.out.as_deref();
    let ro = opts.resume_options();
    let sub = |d: &str| out.map(|o| o.join(d));
    let branch = |cfg: &crate::branch::BranchConfig, d: &str| {
        let dir = sub(d);
        branch::run_with(cfg, dir.as_deref(), dir.as_ref().map(|_| &ro))
    };
    Ok(match name {
        "eos" => {
            let mut cfg = preset.eos();
            if let Some(s) = opts.seeds {
                cfg.seeds = (0..s as u64).collect();
            }
            opts.data.apply(&mut cfg.run.data)?;
            opts.apply_run(&mut cfg.run)?;
            let res = eos::run_with(&cfg, out.map(|o| (o, &ro)))?;
            if let Some(dir) = out {
                res.write(dir)?;
            }
            res.verdict()
        }
        "tradeoff" => {
            let mut cfg = preset.tradeoff();
            opts.apply(&mut cfg)?;
            claims::tradeoff(&branch(&cfg, "tradeoff")?)
        }
        "alignment" => {
            let (mut c, mut r) = preset.alignment();
            opts.apply(&mut c)?;
            opts.apply(&mut r)?;
            let rc = branch(&c, "coherent")?;
            let rr = branch(&r, "random")?;
            claims::alignment(&rc, &rr)
        }
        _ => {
            let (mut ce, mut mse) = preset.saturation();
            opts.apply(&mut ce)?;
            opts.apply(&mut mse)?;
            let rce = branch(&ce, "ce")?;
            let rmse = branch(&mse, "mse")?;
            claims::saturation(&rce, &rmse)
        }
    })
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
    let median = |v: &[f64]| crate::experiment::verdict::median(v);
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
