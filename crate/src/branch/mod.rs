//! The branching intervention: train a baseline to the edge-of-stability entry t*
//! ([`baseline`]), fork the exact state into an EoS branch and a stable branch ([`fork`]), run
//! both for the same effective time ([`process`]), and compare every group's loss on a common
//! t_eff grid ([`compare`]); per-group effects across seeds are in [`effects`], how a branch's
//! λ_max settles in [`settling`]. Every process runs in the one driver loop,
//! [`crate::resume::drive`].
pub mod baseline;
pub mod compare;
mod effects;
pub mod fork;
mod jobs;
pub mod persist;
mod process;
pub mod settling;

pub use compare::{Comparison, Grid, Measurement, interpolate};
pub use effects::{BandEffect, DECIDED_FRACTION, GroupEffect};
pub use jobs::{Job, run, run_key, run_many, run_shared, run_with};
pub use settling::Settling;

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::groups::{self, GroupConfig};
use crate::metrics::RunLog;
use crate::monitor::{Monitor, MonitorConfig};
use crate::resume::Resume;
use crate::train::GradientDescent;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which fork.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Design {
    /// Baseline at η to t*; the stable branch continues at m·η (so λ ≈ 2/η < 2/(mη)).
    Exit {
        /// Learning-rate multiplier of the stable branch (paper: 0.1 for MSE, 0.5 for CE).
        m: f64,
    },
    /// Baseline at a small η_low; at the first measured step with λ_max ≥ 2/η (the state is
    /// beyond the larger rate's threshold) the EoS ("enter") branch raises the rate to η while
    /// the stable ("stay") branch continues at η_low. The state must still be clearly stable
    /// at η_low there: λ_max ≤ (1 − margin)·2/η_low ([`fork::check_enter`]).
    Enter {
        /// The small, stable rate of the baseline and of the stable branch.
        low: f64,
        /// How far below 2/η_low the fork's λ_max must be, as a fraction of 2/η_low.
        #[serde(default = "default_margin")]
        margin: f64,
    },
}

/// The enter design's default margin below 2/η_low: λ_max ≤ 0.9·2/η_low at the fork.
pub const DEFAULT_MARGIN: f64 = 0.1;

fn default_margin() -> f64 {
    DEFAULT_MARGIN
}

impl Design {
    /// The enter design at baseline rate `low` with the default margin.
    pub fn enter(low: f64) -> Design {
        Design::Enter {
            low,
            margin: DEFAULT_MARGIN,
        }
    }
    /// `exit` or `enter`.
    pub fn name(&self) -> &'static str {
        match self {
            Design::Exit { .. } => "exit",
            Design::Enter { .. } => "enter",
        }
    }
}

/// A branching experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BranchConfig {
    /// Run settings; `run.lr` is the EoS rate η, `run.steps` caps the baseline.
    pub run: RunConfig,
    /// Groups injected into the training set.
    pub groups: GroupConfig,
    /// Exit or enter design.
    pub design: Design,
    /// Effective time both branches run after the fork.
    pub horizon: f64,
    /// Initialisation seeds.
    pub seeds: Vec<u64>,
    /// How each branch's group losses enter Δℓ (default: every step, cell-averaged).
    #[serde(default)]
    pub measurement: Measurement,
    /// Extra per-group measurements at the cadence.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// λ_max-only checks on the stable branch between two measurements, until t** is found
    /// (0: t** only at the measurement cadence).
    #[serde(default)]
    pub t2_checks: usize,
    /// End both branches this much effective time after t** (`None`: always at the horizon,
    /// which stays the cap). The window ends at t**; what follows is only for the figures.
    #[serde(default)]
    pub after_t2: Option<f64>,
    /// Measure the group metrics on the baseline too (default), or only λ_max: the baseline
    /// then only finds the fork, and every result after it is the same (the measurements do
    /// not touch the trajectory, and λ_max's warm start is the same either way).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub baseline_metrics: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl BranchConfig {
    /// Rates `(η of the EoS branch, η of the stable branch, η of the baseline)`.
    pub fn rates(&self) -> (f64, f64, f64) {
        match self.design {
            Design::Exit { m } => (self.run.lr, m * self.run.lr, self.run.lr),
            Design::Enter { low, .. } => (self.run.lr, low, low),
        }
    }
    /// Check the settings make sense before hours of compute.
    pub fn validate(&self) -> Result<()> {
        let (eos, stable, _) = self.rates();
        if !(stable > 0.0 && stable < eos) {
            return Err(Error::Config(format!(
                "the stable branch's rate {stable} must be in (0, η = {eos})"
            )));
        }
        if let Design::Enter { low, margin } = self.design {
            fork::check_enter_rates(low, eos, margin, self.run.momentum)?;
        }
        if self.horizon.is_nan() || self.horizon <= 0.0 || self.seeds.is_empty() {
            return Err(Error::Config(
                "horizon must be positive and at least one seed given".into(),
            ));
        }
        Ok(())
    }
    /// The configuration as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }
}

/// One seed's branches.
#[derive(Clone, Debug)]
pub struct SeedBranches {
    /// Init seed.
    pub seed: u64,
    /// Step of the fork (t* as a measured step).
    pub fork_step: usize,
    /// Effective time of the fork.
    pub t_star: f64,
    /// Effective time at which the stable branch reached its own threshold (t**), if it did.
    pub t_star2: Option<f64>,
    /// The comparison window [t*, t** or t* + horizon].
    pub window: (f64, f64),
    /// Width of the common t_eff grid's cells (the EoS branch's measurement period · η).
    pub dt: f64,
    /// Everything measured (branches `baseline`, `eos`, `stable`).
    pub log: RunLog,
    /// Per group: Δℓ(t_eff) = ℓ_EoS − ℓ_stable on the common grid (see [`compare`]).
    pub delta: BTreeMap<String, Vec<(f64, f64)>>,
    /// Per group: Δℓ averaged over the window.
    pub window_delta: BTreeMap<String, f64>,
}

/// All seeds.
#[derive(Clone, Debug)]
pub struct BranchResult {
    /// The configuration.
    pub config: BranchConfig,
    /// Group names (the paper's groups, then `train`).
    pub groups: Vec<String>,
    /// Per-seed results.
    pub seeds: Vec<SeedBranches>,
    /// The exact training set (with group ids).
    pub train: Dataset,
}

/// Prepare data and groups for a configuration: `(train with groups, test)`.
pub fn prepare(cfg: &BranchConfig) -> Result<(Dataset, Dataset)> {
    let (train, test) = cfg.run.data.load()?;
    let grouped = groups::build(&train, &cfg.groups)?;
    Ok((grouped.train, test))
}

/// Run one seed: baseline to the fork, then both branches. Writes the fork checkpoint under
/// `dir` when given.
pub fn run_seed(
    cfg: &BranchConfig,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
    dir: Option<&Path>,
) -> Result<SeedBranches> {
    run_seed_with(cfg, train, test, seed, dir, None)
}

/// [`run_seed`], with periodic checkpoints and resumption when `resume` is given (its
/// directory is then the run directory): baseline → fork → branches → effects.
pub fn run_seed_with(
    cfg: &BranchConfig,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
    dir: Option<&Path>,
    resume: Option<&Resume>,
) -> Result<SeedBranches> {
    let clock = std::time::Instant::now();
    let (gd, monitor) = baseline::run_baseline(cfg, train, test, seed, resume)?;
    let mut seconds = vec![clock.elapsed().as_secs_f64()];
    let (mut eos, mut stable) = fork_seed(cfg, &gd, &monitor, seed)?;
    if let Some(dir) = dir {
        save_fork(cfg, &gd, train, seed, dir)?;
    }
    let mut m_eos = monitor.for_branch("eos").with_series(true);
    let mut m_stable = monitor.for_branch("stable").with_series(true);
    let t_star2 = process::run_branches(
        cfg,
        [(&mut eos, &mut m_eos), (&mut stable, &mut m_stable)],
        seed,
        resume,
        &mut seconds,
    )?;
    let (fork_step, t_star) = (gd.state.step, gd.state.t_eff);
    let steps = [
        fork_step,
        eos.state.step - fork_step,
        stable.state.step - fork_step,
    ];
    let measured = [&monitor, &m_eos, &m_stable].map(|m| m.tracker.records.len());
    report_seed(seed, (t_star, t_star2), &seconds, steps, measured);
    Ok(effects(
        cfg,
        seed,
        (fork_step, t_star, t_star2),
        [monitor, m_eos, m_stable],
    ))
}

/// The two branches forked from the baseline's state `gd`, whose last measurement (by
/// `monitor`) is at the fork step: `(EoS branch, stable branch)`; errors name the seed.
pub fn fork_seed(
    cfg: &BranchConfig,
    gd: &GradientDescent,
    monitor: &Monitor,
    seed: u64,
) -> Result<(GradientDescent, GradientDescent)> {
    let lambda = monitor
        .tracker
        .records
        .last()
        .map(|r| r.lambda_max())
        .unwrap_or(f64::NAN);
    fork::fork_branches(gd, &cfg.design, cfg.rates().0, lambda).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("seed {seed}: {m}")),
        e => e,
    })
}

/// One seed's effects: every group's Δℓ on the common grid and over the window [t*, t** or
/// t* + horizon], from the logs of the baseline and both branches' monitors.
fn effects(
    cfg: &BranchConfig,
    seed: u64,
    (fork_step, t_star, t_star2): (usize, f64, Option<f64>),
    [baseline, m_eos, m_stable]: [Monitor; 3],
) -> SeedBranches {
    let dt = cfg.run.sharpness.every.k as f64 * cfg.rates().0;
    let window = (t_star, t_star2.unwrap_or(t_star + cfg.horizon));
    let mut names = m_eos.group_names();
    names.extend(["train".to_string(), "test".to_string()]);
    let mut log = baseline.log;
    log.extend(m_eos.log);
    log.extend(m_stable.log);
    let grid = Grid { t_star, dt, window };
    let Comparison {
        delta,
        window_delta,
    } = compare::compare(&log, seed, &names, grid, cfg.measurement);
    SeedBranches {
        seed,
        fork_step,
        t_star,
        t_star2,
        window,
        dt,
        log,
        delta,
        window_delta,
    }
}

/// Write the fork's state to `dir/seed-<seed>/fork.safetensors`.
fn save_fork(
    cfg: &BranchConfig,
    gd: &GradientDescent,
    train: &Dataset,
    seed: u64,
    dir: &Path,
) -> Result<()> {
    let meta = CheckpointMeta::for_process(
        gd,
        BTreeMap::from([
            ("init".to_string(), seed),
            ("data".to_string(), cfg.run.data.seed),
        ]),
        &train.fingerprint(),
        serde_json::to_value(cfg).map_err(|e| Error::Numerics(e.to_string()))?,
    );
    checkpoint::save(
        &dir.join(format!("seed-{seed}")).join("fork.safetensors"),
        gd,
        &meta,
    )
}

/// One line on stderr per seed: the fork, t**, and where the time went (`seconds`: cumulative
/// after the baseline, the stable branch and the EoS branch; `steps` and `measured`: baseline,
/// EoS branch, stable branch).
fn report_seed(
    seed: u64,
    (t_star, t_star2): (f64, Option<f64>),
    seconds: &[f64],
    steps: [usize; 3],
    measured: [usize; 3],
) {
    eprintln!(
        "[branch] seed={seed}: fork at step {} (t_eff {t_star:.3}), t** {}; \
         {:.1} s baseline ({} steps, {} measurements), {:.1} s EoS ({} steps, {}), {:.1} s \
         stable ({} steps, {})",
        steps[0],
        t_star2
            .map(|t| format!("{t:.3} (t** − t* = {:.3})", t - t_star))
            .unwrap_or_else(|| "not reached within the horizon".into()),
        seconds[0],
        steps[0],
        measured[0],
        seconds[2] - seconds[1],
        steps[1],
        measured[1],
        seconds[1] - seconds[0],
        steps[2],
        measured[2],
    );
}
