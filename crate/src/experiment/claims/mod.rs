//! The paper's claims, one module each: a claim takes its experiments from a preset, runs them
//! into run directories (with their figures), reads its numbers off the results ("measure")
//! and decides them against its typed pre-registered criterion ("decide"). The command line
//! and the notebooks go through the [`Claim`] interface and the criteria here, so adding a
//! claim is one new module and one line in [`named`].
//!
//! | claim | module | criterion |
//! |---|---|---|
//! | `eos` | [`eos`] | [`EosCriterion`] |
//! | `tradeoff`, `tradeoff-enter` | [`tradeoff`] | [`TradeoffCriterion`] |
//! | `tradeoff-consistent` | [`consistent`] | [`ConsistentCriterion`] |
//! | `alignment` | [`alignment`] | [`AlignmentCriterion`] |
//! | `saturation` | [`saturation`] | [`SaturationCriterion`] |
pub mod alignment;
pub mod common;
pub mod consistent;
pub mod eos;
pub mod saturation;
pub mod tradeoff;

pub use alignment::{AlignmentCriterion, AlignmentMeasured};
pub use common::{grad_ratio, grad_ratio_seed, pair_value_near, window_mean};
pub use consistent::{ConsistentCriterion, ConsistentMeasured};
pub use eos::{EosCriterion, EosMeasured};
pub use saturation::{SaturationCriterion, SaturationMeasured};
pub use tradeoff::{TradeoffCriterion, TradeoffMeasured};

use super::options::ClaimOptions;
use super::presets::Preset;
use crate::branch::{BranchConfig, BranchResult, Job};
use crate::eos::EosResult;
use crate::resume::ResumeOptions;
use crate::verdict::Verdict;
use crate::{Error, Result};
use std::path::PathBuf;

/// A claim of the paper as the command line runs it.
pub trait Claim {
    /// Its name on the command line (`eoslab claim NAME`).
    fn name(&self) -> &'static str;
    /// Its pre-registered criterion, stated from the typed criterion's values.
    fn criterion(&self) -> String;
    /// Run its experiments from `preset` with `opts` (into run directories under `opts.out`,
    /// with their summaries and figures) and decide it: one verdict, or several for claims
    /// that decide more than one reading.
    fn run(&self, preset: &Preset, opts: &ClaimOptions) -> Result<Vec<Verdict>>;
}

/// Every claim's name, in the order of the notebooks.
pub const NAMES: [&str; 4] = ["eos", "tradeoff", "alignment", "saturation"];

/// The claim called `name`, with its default criterion; `design` (`exit`, `enter` or `both`)
/// chooses the fork of claim `tradeoff` and must be `exit` for the others.
pub fn named(name: &str, design: &str) -> Result<Box<dyn Claim>> {
    if !NAMES.contains(&name) {
        return Err(Error::Config(format!(
            "unknown claim {name:?} (available: {})",
            NAMES.join(", ")
        )));
    }
    if name != "tradeoff" && design != "exit" {
        return Err(Error::Config(format!(
            "--design applies to claim tradeoff (claim {name} runs the exit design)"
        )));
    }
    Ok(match name {
        "eos" => Box::new(Eos::default()),
        "tradeoff" => Box::new(Tradeoff {
            design: design.parse()?,
            ..Tradeoff::default()
        }),
        "alignment" => Box::new(Alignment::default()),
        _ => Box::new(Saturation::default()),
    })
}

/// Run every branching experiment `(configuration, directory name under opts.out)` with the
/// options applied, all seeds side by side ([`crate::parallel::default_jobs`] at a time),
/// resumable with an output directory, each run directory completed by the report.
fn run_branching(
    cfgs: Vec<(BranchConfig, &str)>,
    opts: &ClaimOptions,
) -> Result<Vec<BranchResult>> {
    let mut applied = Vec::new();
    for (mut cfg, d) in cfgs {
        opts.apply(&mut cfg)?;
        applied.push((cfg, d));
    }
    let ro: ResumeOptions = opts.resume_options();
    let dirs: Vec<Option<PathBuf>> = applied
        .iter()
        .map(|(_, d)| opts.out.as_ref().map(|o| o.join(d)))
        .collect();
    let jobs: Vec<Job> = applied
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

/// Claim `eos` with its criterion.
#[derive(Clone, Debug, Default)]
pub struct Eos {
    /// The criterion.
    pub criterion: EosCriterion,
}

impl Eos {
    /// The verdict on a result.
    pub fn verdict(&self, r: &EosResult) -> Verdict {
        self.criterion.decide(&EosMeasured::of(r))
    }
}

impl Claim for Eos {
    fn name(&self) -> &'static str {
        "eos"
    }
    fn criterion(&self) -> String {
        self.criterion.to_string()
    }
    fn run(&self, preset: &Preset, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
        if opts.horizon.is_some() {
            return Err(Error::Config(
                "--horizon applies to the branching claims (tradeoff, alignment, saturation)"
                    .into(),
            ));
        }
        let mut cfg = preset.eos();
        opts.apply_eos(&mut cfg)?;
        let out = opts.out.as_deref();
        let ro = opts.resume_options();
        let res = crate::eos::run_with(&cfg, out.map(|o| (o, &ro)))?;
        if let Some(dir) = out {
            res.write(dir)?;
        }
        Ok(vec![self.verdict(&res)])
    }
}

/// Which forks claim `tradeoff` runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Designs {
    /// The exit design (claim `tradeoff`).
    #[default]
    Exit,
    /// The enter design (claim `tradeoff-enter`).
    Enter,
    /// Both, and claim `tradeoff-consistent` on them.
    Both,
}

impl std::str::FromStr for Designs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Designs> {
        match s {
            "exit" => Ok(Designs::Exit),
            "enter" => Ok(Designs::Enter),
            "both" => Ok(Designs::Both),
            _ => Err(Error::Config(format!(
                "unknown design {s:?} (available: {})",
                super::options::DESIGNS.join(", ")
            ))),
        }
    }
}

/// Claim `tradeoff` (and `tradeoff-enter`, `tradeoff-consistent`) with its criteria.
#[derive(Clone, Debug, Default)]
pub struct Tradeoff {
    /// The forks run.
    pub design: Designs,
    /// The criterion of each design.
    pub criterion: TradeoffCriterion,
    /// The criterion of the two designs' agreement.
    pub consistent: ConsistentCriterion,
}

impl Tradeoff {
    /// Claim `tradeoff` on the exit design's result.
    pub fn verdict(&self, exit: &BranchResult) -> Verdict {
        self.criterion
            .decide("tradeoff", &TradeoffMeasured::of(exit))
    }
    /// Claim `tradeoff-enter` on the enter design's result.
    pub fn verdict_enter(&self, enter: &BranchResult) -> Verdict {
        self.criterion
            .decide("tradeoff-enter", &TradeoffMeasured::of(enter))
    }
    /// Claim `tradeoff-consistent` on both designs' results.
    pub fn verdict_consistent(&self, exit: &BranchResult, enter: &BranchResult) -> Verdict {
        self.consistent.decide(&ConsistentMeasured::of(exit, enter))
    }
}

impl Claim for Tradeoff {
    fn name(&self) -> &'static str {
        "tradeoff"
    }
    fn criterion(&self) -> String {
        let mut s = format!("tradeoff (each design): {}", self.criterion);
        if self.design == Designs::Both {
            s.push_str(&format!("; tradeoff-consistent: {}", self.consistent));
        }
        s
    }
    fn run(&self, preset: &Preset, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
        Ok(match self.design {
            Designs::Exit => {
                let r = run_branching(vec![(preset.tradeoff(), "tradeoff")], opts)?;
                vec![self.verdict(&r[0])]
            }
            Designs::Enter => {
                let r = run_branching(vec![(preset.enter(), "tradeoff-enter")], opts)?;
                vec![self.verdict_enter(&r[0])]
            }
            Designs::Both => {
                let r = run_branching(
                    vec![
                        (preset.tradeoff(), "tradeoff"),
                        (preset.enter(), "tradeoff-enter"),
                    ],
                    opts,
                )?;
                vec![
                    self.verdict(&r[0]),
                    self.verdict_enter(&r[1]),
                    self.verdict_consistent(&r[0], &r[1]),
                ]
            }
        })
    }
}

/// Claim `alignment` with its criterion.
#[derive(Clone, Debug, Default)]
pub struct Alignment {
    /// The criterion.
    pub criterion: AlignmentCriterion,
}

impl Alignment {
    /// The verdict on the coherent run and its random-direction control.
    pub fn verdict(&self, coherent: &BranchResult, random: &BranchResult) -> Verdict {
        self.criterion
            .decide(&AlignmentMeasured::of(coherent, random))
    }
}

impl Claim for Alignment {
    fn name(&self) -> &'static str {
        "alignment"
    }
    fn criterion(&self) -> String {
        self.criterion.to_string()
    }
    fn run(&self, preset: &Preset, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
        let (c, r) = preset.alignment();
        let res = run_branching(vec![(c, "coherent"), (r, "random")], opts)?;
        Ok(vec![self.verdict(&res[0], &res[1])])
    }
}

/// Claim `saturation` with its criterion.
#[derive(Clone, Debug, Default)]
pub struct Saturation {
    /// The criterion.
    pub criterion: SaturationCriterion,
}

impl Saturation {
    /// The verdict on the cross-entropy and the MSE run.
    pub fn verdict(&self, ce: &BranchResult, mse: &BranchResult) -> Verdict {
        self.criterion.decide(&SaturationMeasured::of(ce, mse))
    }
}

impl Claim for Saturation {
    fn name(&self) -> &'static str {
        "saturation"
    }
    fn criterion(&self) -> String {
        self.criterion.to_string()
    }
    fn run(&self, preset: &Preset, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
        let (ce, mse) = preset.saturation();
        let res = run_branching(vec![(ce, "ce"), (mse, "mse")], opts)?;
        Ok(vec![self.verdict(&res[0], &res[1])])
    }
}

/// Claim `eos` on a result, with the default criterion.
pub fn eos(r: &EosResult) -> Verdict {
    Eos::default().verdict(r)
}

/// Claim `tradeoff` on the exit design's result, with the default criterion.
pub fn tradeoff(r: &BranchResult) -> Verdict {
    Tradeoff::default().verdict(r)
}

/// Claim `tradeoff-enter` on the enter design's result, with the default criterion.
pub fn tradeoff_enter(r: &BranchResult) -> Verdict {
    Tradeoff::default().verdict_enter(r)
}

/// Claim `tradeoff-consistent` on both designs' results, with the default criterion.
pub fn tradeoff_consistent(exit: &BranchResult, enter: &BranchResult) -> Verdict {
    Tradeoff::default().verdict_consistent(exit, enter)
}

/// Claim `alignment` with the default criterion.
pub fn alignment(coherent: &BranchResult, random: &BranchResult) -> Verdict {
    Alignment::default().verdict(coherent, random)
}

/// Claim `saturation` with the default criterion.
pub fn saturation(ce: &BranchResult, mse: &BranchResult) -> Verdict {
    Saturation::default().verdict(ce, mse)
}
