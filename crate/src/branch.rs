//! The branching intervention: train a baseline to the edge-of-stability entry t*, fork the
//! exact state into an EoS branch and a stable branch, run both for the same effective time,
//! and compare every group's loss on a common t_eff grid.
use crate::checkpoint::{self, CheckpointMeta};
use crate::data::Dataset;
use crate::experiment::config::RunConfig;
use crate::experiment::verdict::{median, quantile};
use crate::groups::{self, GroupConfig};
use crate::metrics::RunLog;
use crate::model::{InitSpec, Model};
use crate::monitor::Monitor;
use crate::objective::Objective;
use crate::resume::{Resume, ResumeOptions};
use crate::train::{GradientDescent, Observer, Progress};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Baseline at a small η_low; once λ_max ≥ 2/η (state beyond the larger rate's threshold)
    /// the EoS branch raises the rate to η while the stable branch continues at η_low.
    Enter {
        /// The small, stable rate of the baseline and of the stable branch.
        low: f64,
    },
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
}

impl BranchConfig {
    /// Rates `(η of the EoS branch, η of the stable branch, η of the baseline)`.
    pub fn rates(&self) -> (f64, f64, f64) {
        match self.design {
            Design::Exit { m } => (self.run.lr, m * self.run.lr, self.run.lr),
            Design::Enter { low } => (self.run.lr, low, low),
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
    /// Everything measured (branches `baseline`, `eos`, `stable`).
    pub log: RunLog,
    /// Per group: Δℓ(t_eff) = ℓ_EoS − ℓ_stable on the EoS branch's measurement grid.
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

/// Run a branch process for `horizon` effective time, measuring every `every` steps; with
/// `resume`, checkpointed periodically and restored from its last checkpoint.
fn run_branch(
    gd: &mut GradientDescent,
    monitor: &mut Monitor,
    every: usize,
    horizon: f64,
    (name, seed): (&str, u64),
    resume: Option<&Resume>,
) -> Result<()> {
    let label = format!("{name} seed={seed}");
    let steps = (horizon / gd.state.lr).round() as usize;
    let start = gd.state.step;
    let mut ck = resume.map(|r| r.process(seed, name, every));
    if let Some(ck) = ck.as_mut() {
        ck.restore(gd, &mut monitor.tracker, &mut monitor.log)?;
    }
    let mut hooks = resume.map(|r| r.hooks(label.clone()));
    let mut progress = Progress::new(label, (steps / 4).max(1));
    loop {
        let i = gd.state.step - start;
        if i.is_multiple_of(every) || i == steps {
            if let Some(ck) = &ck {
                ck.save_if_due(i, gd, &monitor.tracker, &monitor.log)?;
            }
            monitor.measure(gd)?;
        }
        if i >= steps {
            break;
        }
        let mut obs: Vec<&mut dyn Observer> = vec![&mut progress];
        if let Some(h) = hooks.as_mut() {
            obs.push(h);
        }
        gd.step(&mut obs)?;
    }
    Ok(())
}

/// Linear interpolation of `(x, y)` (sorted by x) at `x`; NaN outside the range.
pub fn interpolate(series: &[(f64, f64)], x: f64) -> f64 {
    let eps = 1e-9 * x.abs().max(1.0);
    match series.iter().position(|p| p.0 >= x - eps) {
        None => f64::NAN,
        Some(0) => {
            if (series[0].0 - x).abs() <= eps {
                series[0].1
            } else {
                f64::NAN
            }
        }
        Some(i) => {
            let (a, b) = (series[i - 1], series[i]);
            if (b.0 - x).abs() <= eps {
                b.1
            } else {
                a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)
            }
        }
    }
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
/// directory is then the run directory).
pub fn run_seed_with(
    cfg: &BranchConfig,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
    dir: Option<&Path>,
    resume: Option<&Resume>,
) -> Result<SeedBranches> {
    let run = &cfg.run;
    let (device, dtype) = (run.device()?, run.dtype()?);
    let (eta_eos, eta_stable, eta_base) = cfg.rates();
    let spec = run.model_spec(train.d, train.n_classes);
    let model = Model::new(
        &spec,
        InitSpec {
            scale: run.init_scale,
            seed,
        },
        &device,
        dtype,
    )?;
    let objective = Objective::from_dataset(train, &device, dtype, run.loss, run.chunk)?;
    let test_obj = Objective::from_dataset(test, &device, dtype, run.loss, run.chunk)?;
    let mut gd = GradientDescent::new(model, objective.clone(), eta_base, run.momentum)?;
    let mut monitor = Monitor::new(
        run.sharpness.clone(),
        &objective,
        train,
        Some(test_obj),
        "baseline",
        seed,
    )?;
    let every = run.sharpness.every.k;
    // The fork condition: λ_max at or beyond the EoS rate's threshold 2(1+β)/η.
    let target = 2.0 * (1.0 + run.momentum) / eta_eos;
    let mut progress = Progress::new(format!("baseline seed={seed}"), (run.steps / 4).max(1));
    let mut ck = resume.map(|r| r.process(seed, "baseline", every));
    if let Some(ck) = ck.as_mut() {
        ck.restore(&mut gd, &mut monitor.tracker, &mut monitor.log)?;
    }
    let mut hooks = resume.map(|r| r.hooks(format!("baseline seed={seed}")));
    loop {
        if gd.state.step % every == 0 {
            if let Some(ck) = &ck {
                ck.save_if_due(gd.state.step, &gd, &monitor.tracker, &monitor.log)?;
            }
            let rec = monitor.measure(&gd)?;
            if gd.state.step >= run.burn_in && rec.lambda_max() >= target {
                break;
            }
        }
        if gd.state.step >= run.steps {
            let max = monitor
                .tracker
                .records
                .iter()
                .map(|r| r.lambda_max())
                .fold(f64::NEG_INFINITY, f64::max);
            return Err(Error::Numerics(format!(
                "seed {seed}: λ_max never reached 2/η = {target:.3} within {} baseline steps (largest {max:.3}); \
                 raise `steps` or the step size",
                run.steps
            )));
        }
        let mut obs: Vec<&mut dyn Observer> = vec![&mut progress];
        if let Some(h) = hooks.as_mut() {
            obs.push(h);
        }
        gd.step(&mut obs)?;
    }
    let fork_step = gd.state.step;
    let t_star = gd.state.t_eff;
    if let Some(dir) = dir {
        let meta = CheckpointMeta::for_process(
            &gd,
            BTreeMap::from([
                ("init".to_string(), seed),
                ("data".to_string(), run.data.seed),
            ]),
            &train.fingerprint(),
            serde_json::to_value(cfg).map_err(|e| Error::Numerics(e.to_string()))?,
        );
        checkpoint::save(
            &dir.join(format!("seed-{seed}")).join("fork.safetensors"),
            &gd,
            &meta,
        )?;
    }
    let mut eos = gd.fork()?;
    eos.set_lr(eta_eos)?;
    let mut stable = gd.fork()?;
    stable.set_lr(eta_stable)?;
    let mut m_eos = monitor.for_branch("eos");
    let mut m_stable = monitor.for_branch("stable");
    let dt = every as f64 * eta_eos;
    run_branch(
        &mut eos,
        &mut m_eos,
        every,
        cfg.horizon,
        ("eos", seed),
        resume,
    )?;
    let every_stable = ((dt / eta_stable).round() as usize).max(1);
    run_branch(
        &mut stable,
        &mut m_stable,
        every_stable,
        cfg.horizon,
        ("stable", seed),
        resume,
    )?;

    let thr_stable = 2.0 * (1.0 + run.momentum) / eta_stable;
    let t_star2 = m_stable
        .tracker
        .records
        .iter()
        .skip(1)
        .find(|r| r.lambda_max() >= thr_stable)
        .map(|r| r.t_eff);
    let window = (t_star, t_star2.unwrap_or(t_star + cfg.horizon));
    let mut names = m_eos.group_names();
    let mut log = monitor.log;
    log.extend(m_eos.log);
    log.extend(m_stable.log);
    names.push("train".into());
    names.push("test".into());
    let mut delta = BTreeMap::new();
    let mut window_delta = BTreeMap::new();
    for g in &names {
        let e = log.series("eos", seed, g, "loss");
        let s = log.series("stable", seed, g, "loss");
        let d: Vec<(f64, f64)> = e
            .iter()
            .map(|&(t, v)| (t, v - interpolate(&s, t)))
            .filter(|p| p.1.is_finite())
            .collect();
        let inside: Vec<f64> = d
            .iter()
            .filter(|p| p.0 >= window.0 - 1e-9 && p.0 <= window.1 + 1e-9)
            .map(|p| p.1)
            .collect();
        window_delta.insert(
            g.clone(),
            if inside.is_empty() {
                f64::NAN
            } else {
                inside.iter().sum::<f64>() / inside.len() as f64
            },
        );
        delta.insert(g.clone(), d);
    }
    eprintln!(
        "[branch] seed={seed}: fork at step {fork_step} (t_eff {t_star:.3}), t** {}, window Δℓ: {}",
        t_star2
            .map(|t| format!("{t:.3}"))
            .unwrap_or_else(|| "not reached".into()),
        window_delta
            .iter()
            .map(|(g, v)| format!("{g} {v:+.3e}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(SeedBranches {
        seed,
        fork_step,
        t_star,
        t_star2,
        window,
        log,
        delta,
        window_delta,
    })
}

/// Run every seed; with `dir`, also write the run directory (see [`BranchResult::write`]).
pub fn run(cfg: &BranchConfig, dir: Option<&Path>) -> Result<BranchResult> {
    run_with(cfg, dir, None)
}

/// [`run`]; with `resume` options (and `dir`), resumable: the directory is claimed for this
/// configuration (a different one is an error), each process is checkpointed periodically,
/// completed seeds are kept, and a rerun continues where the last one stopped (see
/// [`crate::resume`]).
pub fn run_with(
    cfg: &BranchConfig,
    dir: Option<&Path>,
    resume: Option<&ResumeOptions>,
) -> Result<BranchResult> {
    cfg.validate()?;
    let (train, test) = prepare(cfg)?;
    let resume = match (dir, resume) {
        (Some(d), Some(o)) => Some(Resume::open(
            d,
            serde_json::to_value(cfg).map_err(|e| Error::Numerics(e.to_string()))?,
            &train.fingerprint(),
            o.clone(),
        )?),
        (None, Some(_)) => {
            return Err(Error::Config(
                "a resumable run needs an output directory".into(),
            ));
        }
        _ => None,
    };
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if resume.is_none() {
            crate::data::atomic::write_atomic(&dir.join("config.json"), cfg.to_json().as_bytes())?;
        }
        crate::data::tensors::export(&train, &dir.join("train.safetensors"), &[])?;
    }
    let mut seeds = Vec::new();
    for &s in &cfg.seeds {
        if let Some(r) = &resume
            && let Some(done) = crate::resume::load_seed(r, s)?
        {
            seeds.push(done);
            continue;
        }
        let result = run_seed_with(cfg, &train, &test, s, dir, resume.as_ref())?;
        if let Some(r) = &resume {
            crate::resume::save_seed(r, &result)?;
        }
        seeds.push(result);
    }
    let mut groups: Vec<String> = seeds[0].window_delta.keys().cloned().collect();
    // Paper groups first (in id order), then the whole-set rows.
    groups.sort_by_key(|g| {
        (
            crate::groups::GroupKind::ALL
                .iter()
                .position(|k| k.name() == g)
                .unwrap_or(99),
            g.clone(),
        )
    });
    let result = BranchResult {
        config: cfg.clone(),
        groups,
        seeds,
        train,
    };
    if let Some(dir) = dir {
        result.write(dir)?;
    }
    Ok(result)
}

/// Median and quartiles of a group's per-seed window Δℓ, and sign counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupEffect {
    /// Group name.
    pub group: String,
    /// Median across seeds of the window-averaged Δℓ.
    pub median: f64,
    /// 25th percentile.
    pub q25: f64,
    /// 75th percentile.
    pub q75: f64,
    /// Fraction of seeds with Δℓ < 0 (EoS helps).
    pub frac_negative: f64,
    /// Fraction of seeds with Δℓ > 0 (EoS hurts).
    pub frac_positive: f64,
    /// Per-seed values.
    pub per_seed: Vec<f64>,
}

impl BranchResult {
    /// Per-group effect over seeds.
    pub fn effects(&self) -> Vec<GroupEffect> {
        self.groups
            .iter()
            .map(|g| {
                let v: Vec<f64> = self
                    .seeds
                    .iter()
                    .map(|s| s.window_delta.get(g).copied().unwrap_or(f64::NAN))
                    .collect();
                let n = v.len() as f64;
                GroupEffect {
                    group: g.clone(),
                    median: median(&v),
                    q25: quantile(&v, 0.25),
                    q75: quantile(&v, 0.75),
                    frac_negative: v.iter().filter(|x| **x < 0.0).count() as f64 / n,
                    frac_positive: v.iter().filter(|x| **x > 0.0).count() as f64 / n,
                    per_seed: v,
                }
            })
            .collect()
    }

    /// The effect of one group.
    pub fn effect(&self, group: &str) -> Option<GroupEffect> {
        self.effects().into_iter().find(|e| e.group == group)
    }

    /// Δℓ(t_eff − t*) across seeds for `group`: `(t, median, q25, q75)` on the shared grid.
    pub fn delta_band(&self, group: &str) -> Vec<(f64, f64, f64, f64)> {
        let curves: Vec<Vec<(f64, f64)>> = self
            .seeds
            .iter()
            .map(|s| {
                s.delta
                    .get(group)
                    .map(|d| d.iter().map(|&(t, v)| (t - s.t_star, v)).collect())
                    .unwrap_or_default()
            })
            .collect();
        let Some(grid) = curves
            .iter()
            .map(|c| c.len())
            .min()
            .and_then(|n| curves.first().map(|c| c[..n].to_vec()))
        else {
            return Vec::new();
        };
        grid.iter()
            .enumerate()
            .map(|(i, &(t, _))| {
                let v: Vec<f64> = curves.iter().map(|c| c[i].1).collect();
                (t, median(&v), quantile(&v, 0.25), quantile(&v, 0.75))
            })
            .collect()
    }

    /// Median window length (t** − t*, or the horizon where t** was not reached).
    pub fn median_window(&self) -> f64 {
        median(
            &self
                .seeds
                .iter()
                .map(|s| s.window.1 - s.window.0)
                .collect::<Vec<_>>(),
        )
    }

    /// All seeds' logs in one.
    pub fn log(&self) -> RunLog {
        let mut log = RunLog::new("branch");
        for s in &self.seeds {
            log.rows.extend(s.log.rows.iter().cloned());
        }
        log
    }

    /// Write metrics (Parquet + CSV), the per-group summary, and figures into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.log().write(dir, "metrics")?;
        crate::metrics::write_frame(
            &mut crate::report::effects_frame(&self.effects())?,
            dir,
            "summary",
        )?;
        for (name, fig) in crate::report::branch_figures(self, 0)? {
            fig.save(&dir.join(format!("{name}.svg")))?;
        }
        Ok(())
    }

    /// Group names of the paper's groups only (no `train` / `test`).
    pub fn paper_groups(&self) -> Vec<String> {
        let all: BTreeSet<&str> = crate::groups::GroupKind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        self.groups
            .iter()
            .filter(|g| all.contains(g.as_str()))
            .cloned()
            .collect()
    }
}
