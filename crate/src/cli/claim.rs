//! `eoslab claim`: its options, and each claim's experiment run from its preset, in resumable
//! run directories under `--out`.
use crate::branch::{BranchConfig, BranchResult, Job};
use crate::checkpoint::parse_dtype;
use crate::config::parse_device;
use crate::experiment::presets::Preset;
use crate::experiment::{Verdict, claims, eos};
use crate::resume::ResumeOptions;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

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
    claim_with(name, &ClaimOptions::on(seeds, out, data))
}

/// [`claim`] with every option of `eoslab claim`.
pub fn claim_with(name: &str, opts: &ClaimOptions) -> Result<()> {
    for verdict in run_claims_with(name, opts)? {
        println!("{verdict}");
        println!(
            "{}",
            serde_json::to_string_pretty(&verdict.numbers).expect("json")
        );
    }
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
    /// Effective time each branch runs after the fork (branching claims), overriding the
    /// preset's horizon.
    pub horizon: Option<f64>,
    /// Which fork claim `tradeoff` runs: `exit` (default), `enter` or `both` (see [`DESIGNS`]).
    pub design: Option<String>,
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

    fn apply(&self, cfg: &mut BranchConfig) -> Result<()> {
        if let Some(s) = self.seeds {
            cfg.seeds = (0..s as u64).collect();
        }
        if let Some(h) = self.horizon {
            cfg.horizon = h;
        }
        self.data.apply(&mut cfg.run.data)?;
        self.apply_run(&mut cfg.run)
    }

    /// The design of claim `tradeoff` (`exit` unless given), checked.
    fn design(&self) -> Result<&str> {
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

/// Run claim `name` (its preset, on `data`) and return its verdict.
pub fn run_claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<Verdict> {
    run_claim_with(name, &ClaimOptions::on(seeds, out, data))
}

/// Run claim `name` with `opts` and return its verdict (an error for `--design both`, which
/// gives three: see [`run_claims_with`]).
pub fn run_claim_with(name: &str, opts: &ClaimOptions) -> Result<Verdict> {
    let mut v = run_claims_with(name, opts)?;
    if v.len() != 1 {
        return Err(Error::Config(format!(
            "claim {name} gives {} verdicts here: use run_claims_with",
            v.len()
        )));
    }
    Ok(v.remove(0))
}

/// Run claim `name` with `opts` and return its verdicts (one, or three for `tradeoff
/// --design both`). With an output directory the run is resumable: rerunning the same command
/// continues an interrupted run (and a different configuration in that directory is an
/// error). Each experiment has its own directory under it: `tradeoff` (exit design),
/// `tradeoff-enter`, `coherent` and `random`, `ce` and `mse`; `eos` writes into it directly.
pub fn run_claims_with(name: &str, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
    if !["eos", "tradeoff", "alignment", "saturation"].contains(&name) {
        return Err(Error::Config(format!(
            "unknown claim {name:?} (available: eos, tradeoff, alignment, saturation)"
        )));
    }
    let design = opts.design()?;
    if name != "tradeoff" && design != "exit" {
        return Err(Error::Config(format!(
            "--design applies to claim tradeoff (claim {name} runs the exit design)"
        )));
    }
    opts.preset()?;
    if name == "eos" && opts.horizon.is_some() {
        return Err(Error::Config(
            "--horizon applies to the branching claims (tradeoff, alignment, saturation)".into(),
        ));
    }
    // One spelling of the data directory, so that a rerun from elsewhere resumes the same run.
    let paper_dir = opts
        .data_dir
        .as_ref()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
    let preset = Preset::named(opts.preset()?, paper_dir.as_deref())?;
    if name == "eos" {
        return Ok(vec![run_eos(&preset, opts)?]);
    }
    let experiments: Vec<(BranchConfig, &str)> = match name {
        "tradeoff" => {
            let mut list = Vec::new();
            if design != "enter" {
                list.push((preset.tradeoff(), "tradeoff"));
            }
            if design != "exit" {
                list.push((preset.enter(), "tradeoff-enter"));
            }
            list
        }
        "alignment" => {
            let (c, r) = preset.alignment();
            vec![(c, "coherent"), (r, "random")]
        }
        _ => {
            let (ce, mse) = preset.saturation();
            vec![(ce, "ce"), (mse, "mse")]
        }
    };
    let mut cfgs = Vec::new();
    for (mut cfg, d) in experiments {
        opts.apply(&mut cfg)?;
        cfgs.push((cfg, d));
    }
    let results = run_branching(&cfgs, opts)?;
    Ok(verdicts(name, design, &results))
}

/// Claim `eos` of `preset` with `opts`.
fn run_eos(preset: &Preset, opts: &ClaimOptions) -> Result<Verdict> {
    let mut cfg = preset.eos();
    if let Some(s) = opts.seeds {
        cfg.seeds = (0..s as u64).collect();
    }
    opts.data.apply(&mut cfg.run.data)?;
    opts.apply_run(&mut cfg.run)?;
    let out = opts.out.as_deref();
    let ro = opts.resume_options();
    let res = eos::run_with(&cfg, out.map(|o| (o, &ro)))?;
    if let Some(dir) = out {
        res.write(dir)?;
    }
    Ok(res.verdict())
}

/// Every branching experiment `(configuration, directory name under --out)`, all seeds side
/// by side ([`crate::parallel::default_jobs`] at a time), resumable with `--out`.
fn run_branching(cfgs: &[(BranchConfig, &str)], opts: &ClaimOptions) -> Result<Vec<BranchResult>> {
    let ro: ResumeOptions = opts.resume_options();
    let dirs: Vec<Option<PathBuf>> = cfgs
        .iter()
        .map(|(_, d)| opts.out.as_ref().map(|o| o.join(d)))
        .collect();
    let jobs: Vec<Job> = cfgs
        .iter()
        .zip(&dirs)
        .map(|((cfg, _), dir)| Job {
            cfg,
            dir: dir.as_deref(),
            resume: dir.as_ref().map(|_| &ro),
        })
        .collect();
    crate::report::run_many(&jobs, crate::parallel::default_jobs())
}

/// The verdicts of a branching claim from its results (in the order [`run_claims_with`] ran
/// them).
fn verdicts(name: &str, design: &str, r: &[BranchResult]) -> Vec<Verdict> {
    match (name, design) {
        ("tradeoff", "exit") => vec![claims::tradeoff(&r[0])],
        ("tradeoff", "enter") => vec![claims::tradeoff_enter(&r[0])],
        ("tradeoff", _) => vec![
            claims::tradeoff(&r[0]),
            claims::tradeoff_enter(&r[1]),
            claims::tradeoff_consistent(&r[0], &r[1]),
        ],
        ("alignment", _) => vec![claims::alignment(&r[0], &r[1])],
        _ => vec![claims::saturation(&r[0], &r[1])],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designs_are_checked_before_any_work() {
        let with = |design: &str| ClaimOptions {
            design: Some(design.into()),
            preset: Some("digits".into()),
            ..ClaimOptions::default()
        };
        let e = run_claims_with("tradeoff", &with("sideways"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit, enter, both"), "{e}");
        let e = run_claims_with("alignment", &with("enter"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--design applies to claim tradeoff"), "{e}");
        assert_eq!(with("both").design().unwrap(), "both");
        assert_eq!(ClaimOptions::default().design().unwrap(), "exit");
    }
}
