//! The command line's actions, as library functions (so they are tested like the rest).
use crate::branch;
use crate::checkpoint::{Checkpoint, parse_dtype};
use crate::experiment::config::parse_device;
use crate::experiment::{claims, eos, presets};
use crate::hessian::{HessianOp, LanczosConfig};
use crate::objective::Objective;
use crate::{Error, Result};
use std::path::Path;

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
    /// A CSV (label in the last column) or safetensors (`x`, `y`) file.
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
            data.source = if ext == "safetensors" {
                crate::experiment::DataSource::Safetensors { path: p.clone() }
            } else if ext == "csv" || name.ends_with(".csv.gz") {
                crate::experiment::DataSource::Csv { path: p.clone() }
            } else {
                return Err(Error::data(
                    p,
                    "expected a .csv, .csv.gz or .safetensors file",
                ));
            };
            if self.classes.is_none() {
                data.classes = None;
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
    let verdict = run_claim(name, seeds, out, data)?;
    println!("{verdict}");
    println!(
        "{}",
        serde_json::to_string_pretty(&verdict.numbers).expect("json")
    );
    Ok(())
}

fn adjust(
    cfg: &mut crate::branch::BranchConfig,
    seeds: Option<usize>,
    data: &DataChoice,
) -> Result<()> {
    if let Some(s) = seeds {
        cfg.seeds = (0..s as u64).collect();
    }
    data.apply(&mut cfg.run.data)
}

/// Run claim `name` (its preset, on `data`) and return its verdict.
pub fn run_claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<crate::experiment::Verdict> {
    let sub = |d: &str| out.map(|o| o.join(d));
    Ok(match name {
        "eos" => {
            let mut cfg = presets::digits_eos();
            if let Some(s) = seeds {
                cfg.seeds = (0..s as u64).collect();
            }
            data.apply(&mut cfg.run.data)?;
            let res = eos::run(&cfg)?;
            if let Some(dir) = out {
                res.write(dir)?;
            }
            res.verdict()
        }
        "tradeoff" => {
            let mut cfg = presets::digits_tradeoff();
            adjust(&mut cfg, seeds, data)?;
            claims::tradeoff(&branch::run(&cfg, sub("tradeoff").as_deref())?)
        }
        "alignment" => {
            let (mut c, mut r) = presets::digits_alignment();
            adjust(&mut c, seeds, data)?;
            adjust(&mut r, seeds, data)?;
            let rc = branch::run(&c, sub("coherent").as_deref())?;
            let rr = branch::run(&r, sub("random").as_deref())?;
            claims::alignment(&rc, &rr)
        }
        "saturation" => {
            let (mut ce, mut mse) = presets::digits_saturation();
            adjust(&mut ce, seeds, data)?;
            adjust(&mut mse, seeds, data)?;
            let rce = branch::run(&ce, sub("ce").as_deref())?;
            let rmse = branch::run(&mse, sub("mse").as_deref())?;
            claims::saturation(&rce, &rmse)
        }
        other => {
            return Err(Error::Config(format!(
                "unknown claim {other:?} (available: eos, tradeoff, alignment, saturation)"
            )));
        }
    })
}
