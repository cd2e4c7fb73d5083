//! The options of a claim's run — preset, data, device, dtype, lengths, output directory, field
//! overrides — one definition, taken by the command line, the notebooks and the tests alike.
use crate::branch::BranchConfig;
use crate::config::DeviceSpec;
use crate::eos::EosConfig;
use crate::resume::ResumeOptions;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a claim's examples come from when not the shipped digits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

/// The presets `eoslab claim` and `eoslab train` know (the first is the default).
pub const PRESETS: [&str; 3] = [
    crate::experiment::cifar_subset::NAME,
    "digits",
    crate::experiment::paper::NAME,
];

/// Everything `eoslab claim` takes besides the claim's name (a sweep's tasks store theirs as
/// JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Effective time each branch runs after the fork (branching claims), overriding the
    /// preset's horizon.
    pub horizon: Option<f64>,
    /// Which fork claim `tradeoff` runs: `exit` (default), `enter` or `both` (see [`DESIGNS`]).
    pub design: Option<String>,
    /// `path.to.field=value` overrides of each experiment's configuration, applied last (see
    /// [`crate::overrides`]).
    pub set: Vec<String>,
}

/// The designs `eoslab claim tradeoff --design` takes: `exit` (claim `tradeoff`), `enter`
/// (`tradeoff-enter`) and `both` (those two and `tradeoff-consistent`).
pub const DESIGNS: [&str; 3] = ["exit", "enter", "both"];

impl ClaimOptions {
    /// The preset's defaults with a seed count, an output directory and a data choice.
    pub fn on(seeds: Option<usize>, out: Option<&Path>, data: &DataChoice) -> Self {
        Self {
            seeds,
            out: out.map(Path::to_path_buf),
            data: data.clone(),
            ..Self::default()
        }
    }

    pub(crate) fn preset(&self) -> Result<&str> {
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
    pub(crate) fn apply_run(&self, run: &mut crate::experiment::RunConfig) -> Result<()> {
        if let Some(d) = &self.device {
            let spec: DeviceSpec = d.parse()?;
            spec.open()?;
            run.device = spec;
        }
        if let Some(t) = &self.dtype {
            run.dtype = t.parse()?;
        }
        if let Some(s) = self.steps {
            run.steps = s;
        }
        Ok(())
    }

    /// Every option on a branching experiment's configuration, the `--set` overrides last.
    pub(crate) fn apply(&self, cfg: &mut BranchConfig) -> Result<()> {
        if let Some(s) = self.seeds {
            cfg.seeds = (0..s as u64).collect();
        }
        if let Some(h) = self.horizon {
            cfg.horizon = h;
        }
        self.data.apply(&mut cfg.run.data)?;
        self.apply_run(&mut cfg.run)?;
        *cfg = crate::overrides::apply(cfg, &self.set)?;
        cfg.validate()
    }

    /// Every option on the `eos` experiment's configuration, the `--set` overrides last.
    pub(crate) fn apply_eos(&self, cfg: &mut EosConfig) -> Result<()> {
        if let Some(s) = self.seeds {
            cfg.seeds = (0..s as u64).collect();
        }
        self.data.apply(&mut cfg.run.data)?;
        self.apply_run(&mut cfg.run)?;
        *cfg = crate::overrides::apply(cfg, &self.set)?;
        Ok(())
    }

    /// The design of claim `tradeoff` (`exit` unless given), checked.
    pub(crate) fn design(&self) -> Result<&str> {
        let d = self.design.as_deref().unwrap_or(DESIGNS[0]);
        if !DESIGNS.contains(&d) {
            return Err(Error::Config(format!(
                "unknown design {d:?} (available: {})",
                DESIGNS.join(", ")
            )));
        }
        Ok(d)
    }

    /// The resume options of a run with an output directory.
    pub fn resume_options(&self) -> ResumeOptions {
        ResumeOptions {
            checkpoint_every: self.checkpoint_every.unwrap_or(512),
            step_budget: self.step_budget.map(crate::resume::StepBudget::new),
            progress_every: Some(30.0),
        }
    }
}
