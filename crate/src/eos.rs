//! Claim `eos`: progressive sharpening and the edge of stability, for several step sizes and
//! seeds. The notebook `00_edge_of_stability` and `eoslab claim eos` both call [`run`].
use crate::Result;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::groups::GroupConfig;
use crate::model::{InitSpec, Model};
use crate::objective::Objective;
use crate::plot::{Figure, LinePlot};
use crate::resume::{
    Flow, Persist, Plan, Resume, ResumeOptions, Stateful, TableReader, TableWriter, drive,
};
use crate::sharpness::{EosEntry, SharpnessRecord, SharpnessTracker};
use crate::stats::median;
use crate::train::{GradientDescent, Observer, Progress, StepRecord, StepView};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The experiment: one base run configuration, several step sizes, several seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EosConfig {
    /// Base run (its `lr` is replaced by each of `lrs`).
    pub run: RunConfig,
    /// Step sizes η.
    pub lrs: Vec<f64>,
    /// Initialisation seeds (the data split is fixed by `run.data.seed`).
    pub seeds: Vec<u64>,
    /// Groups injected into the training set (the same training set as the branching claims).
    pub groups: Option<GroupConfig>,
}

/// One training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedRun {
    /// Step size.
    pub lr: f64,
    /// Init seed.
    pub seed: u64,
    /// Loss at every step.
    pub history: Vec<StepRecord>,
    /// Sharpness measurements.
    pub sharpness: Vec<SharpnessRecord>,
    /// Edge-of-stability entry, if reached.
    pub entry: Option<EosEntry>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// All runs of the experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EosResult {
    /// The configuration that produced it.
    pub config: EosConfig,
    /// Training examples used.
    pub n_train: usize,
    /// Runs, grouped by step size in `config.lrs` order, seeds in order.
    pub runs: Vec<SeedRun>,
}

/// Train one model with sharpness tracking (`cfg.lr`, init seed `seed`) on `train`.
pub fn train_tracked(
    cfg: &RunConfig,
    seed: u64,
    train: &Dataset,
    label: &str,
) -> Result<(GradientDescent, SharpnessTracker)> {
    train_tracked_with(cfg, seed, train, label, None)
}

/// [`train_tracked`]; with `resume = (run directory, process name)`, checkpointed periodically
/// and restored from its last checkpoint.
pub fn train_tracked_with(
    cfg: &RunConfig,
    seed: u64,
    train: &Dataset,
    label: &str,
    resume: Option<(&Resume, &str)>,
) -> Result<(GradientDescent, SharpnessTracker)> {
    let (device, dtype) = (cfg.device()?, cfg.dtype()?);
    let spec = cfg.model_spec(train.d, train.n_classes);
    let model = Model::new(
        &spec,
        InitSpec {
            scale: cfg.init_scale,
            seed,
        },
        &device,
        dtype,
    )?;
    let objective = Objective::from_dataset(train, &device, dtype, cfg.loss, cfg.chunk)?;
    let mut gd = GradientDescent::new(model, objective, cfg.lr, cfg.momentum)?;
    let mut plan = Tracked {
        tracker: SharpnessTracker::new(cfg.sharpness.clone()),
        steps: cfg.steps,
    };
    let mut progress = Progress::new(label, (cfg.steps / 4).max(1));
    let checkpoints = resume.map(|(r, name)| r.process(seed, name, cfg.sharpness.every.k));
    let mut hooks = resume.map(|(r, _)| r.hooks(label));
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    if let Some(h) = hooks.as_mut() {
        observers.push(h);
    }
    drive(&mut gd, &mut plan, checkpoints, &mut observers)?;
    Ok((gd, plan.tracker))
}

/// The plan of an eos run: `steps` steps, the tracker measuring on its own schedule.
struct Tracked {
    tracker: SharpnessTracker,
    steps: usize,
}

impl Plan for Tracked {
    fn parts(&mut self) -> Vec<&mut dyn Stateful> {
        vec![&mut self.tracker]
    }
    fn at(&mut self, gd: &GradientDescent, _: usize) -> Result<Flow> {
        Ok(if gd.state.step >= self.steps {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }
    fn observe(&mut self, view: &StepView) -> Result<()> {
        self.tracker.observe(view)
    }
}

/// Run every (step size, seed) pair.
pub fn run(cfg: &EosConfig) -> Result<EosResult> {
    run_with(cfg, None)
}

/// [`run`]; with `resume = (directory, options)`, resumable: completed (step size, seed) runs
/// are kept in the directory and skipped on a rerun, the one in progress continues from its
/// last checkpoint, and a directory holding another configuration is an error.
pub fn run_with(cfg: &EosConfig, resume: Option<(&Path, &ResumeOptions)>) -> Result<EosResult> {
    let (train, _test) = cfg.run.data.load()?;
    let train = match &cfg.groups {
        Some(g) => crate::groups::build(&train, g)?.train,
        None => train,
    };
    let resume = match resume {
        Some((dir, o)) => Some(Resume::open(
            dir,
            serde_json::to_value(cfg).map_err(|e| crate::Error::Numerics(e.to_string()))?,
            &train.fingerprint(),
            o.clone(),
        )?),
        None => None,
    };
    let tasks: Vec<(f64, u64)> = cfg
        .lrs
        .iter()
        .flat_map(|&lr| cfg.seeds.iter().map(move |&s| (lr, s)))
        .collect();
    // Every (step size, seed) run is independent: run them side by side (results do not
    // depend on the number of workers, see `crate::parallel`).
    let runs = crate::parallel::run_tasks(tasks.len(), crate::parallel::default_jobs(), |t| {
        let (lr, seed) = tasks[t];
        run_one(cfg, &train, lr, seed, resume.as_ref())
    })?;
    Ok(EosResult {
        config: cfg.clone(),
        n_train: train.n(),
        runs,
    })
}

/// One (step size, seed) run of the `eos` claim, resumable when `resume` is given.
fn run_one(
    cfg: &EosConfig,
    train: &Dataset,
    lr: f64,
    seed: u64,
    resume: Option<&Resume>,
) -> Result<SeedRun> {
    let name = format!("lr-{lr}-seed-{seed}");
    let process = format!("lr-{lr}");
    if let Some(r) = resume
        && let Some(done) = crate::resume::load::<SeedRun>(&r.done_path(&name))?
    {
        eprintln!(
            "[resume] {name}: already complete in {}",
            r.done_path(&name).display()
        );
        // A run stopped between saving this result and removing its checkpoints left them.
        r.clean_process(seed, &process);
        return Ok(done);
    }
    let rc = RunConfig {
        lr,
        ..cfg.run.clone()
    };
    let t0 = std::time::Instant::now();
    let (gd, tracker) = train_tracked_with(
        &rc,
        seed,
        train,
        &format!("eos η={lr} seed={seed}"),
        resume.map(|r| (r, process.as_str())),
    )?;
    let entry = tracker.eos_entry(rc.burn_in);
    let seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "[eos] η={lr} seed={seed}: t* = {}, final λ_max = {:.2} (2/η = {:.2}), {seconds:.1}s",
        entry
            .map(|e| format!("{:.0}", e.t_star))
            .unwrap_or_else(|| "never".into()),
        tracker
            .records
            .last()
            .map(|r| r.lambda_max())
            .unwrap_or(f64::NAN),
        2.0 / lr
    );
    let run = SeedRun {
        lr,
        seed,
        history: gd.history,
        sharpness: tracker.records,
        entry,
        seconds,
    };
    if let Some(r) = resume {
        crate::resume::save(&r.done_path(&name), &run)?;
        r.clean_process(seed, &process);
    }
    Ok(run)
}

/// A completed run is stored in its run directory's `done/` (bit-exact) and skipped on a rerun.
impl Persist for SeedRun {
    fn put(&self, w: &mut TableWriter) -> Result<()> {
        w.meta("seed", self.seed.to_string());
        let e = self.entry;
        w.f64(
            "scalars",
            &[
                self.lr,
                self.seconds,
                e.is_some() as u8 as f64,
                e.map(|e| e.step as f64).unwrap_or(f64::NAN),
                e.map(|e| e.t_star).unwrap_or(f64::NAN),
                e.map(|e| e.t_eff).unwrap_or(f64::NAN),
            ],
            vec![6],
        );
        crate::resume::put_history(w, "hist.", &self.history);
        crate::resume::put_records(w, "rec.", &self.sharpness);
        Ok(())
    }

    fn get(t: &TableReader) -> Result<Self> {
        let sc = t.f64("scalars")?;
        if sc.len() != 6 {
            return Err(crate::Error::data(t.path(), "scalars: expected 6 values"));
        }
        let seed: u64 = t
            .meta("seed")?
            .parse()
            .map_err(|_| crate::Error::data(t.path(), "bad seed"))?;
        Ok(SeedRun {
            lr: sc[0],
            seed,
            history: crate::resume::get_history(t, "hist.")?,
            sharpness: crate::resume::get_records(t, "rec.")?,
            entry: (sc[2] == 1.0).then(|| EosEntry {
                step: sc[3] as usize,
                t_star: sc[4],
                t_eff: sc[5],
            }),
            seconds: sc[1],
        })
    }
}

impl SeedRun {
    /// Median of λ_max / threshold over measurements after t* (NaN if t* was never reached).
    pub fn post_entry_ratio(&self) -> f64 {
        let Some(e) = self.entry else { return f64::NAN };
        let r: Vec<f64> = self
            .sharpness
            .iter()
            .filter(|r| r.step >= e.step)
            .map(|r| r.lambda_max() / r.threshold)
            .collect();
        median(&r)
    }
    /// Mean loss over the last 10% of steps.
    pub fn final_loss(&self) -> f64 {
        let k = (self.history.len() / 10).max(1);
        let tail = &self.history[self.history.len() - k..];
        tail.iter().map(|r| r.loss).sum::<f64>() / k as f64
    }
    /// Loss at the first step at or after t*.
    pub fn loss_at_entry(&self) -> f64 {
        let Some(e) = self.entry else { return f64::NAN };
        self.history
            .iter()
            .find(|r| r.step as f64 >= e.t_star)
            .map(|r| r.loss)
            .unwrap_or(f64::NAN)
    }
}

impl EosConfig {
    /// The configuration as pretty JSON (shown in the notebook's setup cell).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }
}

impl EosResult {
    /// One row per run: t*, post-t* λ_max/(2/η), losses, solver cost, time.
    pub fn summary(&self) -> Result<DataFrame> {
        let col = |f: &dyn Fn(&SeedRun) -> f64| self.runs.iter().map(f).collect::<Vec<f64>>();
        let hvps = |r: &SeedRun, warm: bool| {
            let v: Vec<f64> = r
                .sharpness
                .iter()
                .filter(|s| s.warm == warm)
                .map(|s| s.iterations as f64)
                .collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        Ok(DataFrame::new_infer_height(vec![
            Column::new("lr".into(), col(&|r| r.lr)),
            Column::new(
                "seed".into(),
                self.runs.iter().map(|r| r.seed).collect::<Vec<u64>>(),
            ),
            Column::new(
                "t_star".into(),
                col(&|r| r.entry.map(|e| e.t_star).unwrap_or(f64::NAN)),
            ),
            Column::new(
                "post_lambda_over_2_eta".into(),
                col(&|r| r.post_entry_ratio()),
            ),
            Column::new("loss_at_t_star".into(), col(&|r| r.loss_at_entry())),
            Column::new("final_loss".into(), col(&|r| r.final_loss())),
            Column::new("hvps_cold".into(), col(&|r| hvps(r, false))),
            Column::new("hvps_warm".into(), col(&|r| hvps(r, true))),
            Column::new("seconds".into(), col(&|r| r.seconds)),
        ])?)
    }

    fn by_lr(&self, lr: f64) -> Vec<&SeedRun> {
        self.runs.iter().filter(|r| r.lr == lr).collect()
    }

    /// Write the figures, the summary table and all records (JSON) into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        self.sharpness_figure()?.save(&dir.join("sharpness.svg"))?;
        self.loss_figure()?.save(&dir.join("loss.svg"))?;
        crate::metrics::write_frame(&mut self.summary()?, dir, "summary")?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| crate::Error::Numerics(e.to_string()))?;
        crate::atomic::write_atomic(&dir.join("eos.json"), &json)
    }

    /// λ_max against step for every run, with the 2/η lines.
    pub fn sharpness_figure(&self) -> Result<Figure> {
        let mut p = LinePlot::new(
            "Sharpness rises to 2/η and stays there",
            "step",
            "λ_max (top Hessian eigenvalue)",
        );
        for (i, &lr) in self.config.lrs.iter().enumerate() {
            for (j, r) in self.by_lr(lr).into_iter().enumerate() {
                let label = if j == 0 {
                    format!("η = {lr}")
                } else {
                    String::new()
                };
                p = p.line(
                    label,
                    r.sharpness
                        .iter()
                        .map(|s| (s.step as f64, s.lambda_max()))
                        .collect(),
                    i,
                    false,
                );
            }
            p = p.hline(2.0 / lr, format!("2/η = {:.1}", 2.0 / lr), i);
        }
        p.render()
    }

    /// Training loss against step (log scale), first seed of each step size.
    pub fn loss_figure(&self) -> Result<Figure> {
        let mut p = LinePlot::new(
            "Training loss: non-monotone at the edge of stability, still decreasing",
            "step",
            "training loss",
        )
        .log_y();
        for (i, &lr) in self.config.lrs.iter().enumerate() {
            if let Some(r) = self.by_lr(lr).first() {
                p = p.line(
                    format!("η = {lr}, seed {}", r.seed),
                    r.history.iter().map(|h| (h.step as f64, h.loss)).collect(),
                    i,
                    false,
                );
            }
        }
        p.render()
    }
}
