//! The baseline of one seed: trained at the baseline rate until λ_max reaches the EoS rate's
//! threshold 2(1+β)/η after the burn-in; the state there is the fork.
use super::BranchConfig;
use crate::data::Dataset;
use crate::model::{InitSpec, Model};
use crate::monitor::Monitor;
use crate::objective::Objective;
use crate::resume::{Flow, Plan, Resume, Stateful, drive};
use crate::train::{Every, GradientDescent, Observer, Progress};
use crate::{Error, Result};

/// The baseline of one seed at step 0: the seed's initialisation, gradient descent on `train` at
/// the baseline rate.
pub fn start(cfg: &BranchConfig, train: &Dataset, seed: u64) -> Result<GradientDescent> {
    let run = &cfg.run;
    let (device, dtype) = (run.device()?, run.dtype()?);
    let spec = run.model_spec(train.d, train.n_classes);
    let init = InitSpec {
        scale: run.init_scale,
        seed,
    };
    let model = Model::new(&spec, init, &device, dtype)?;
    let objective = Objective::from_dataset(train, &device, dtype, run.loss, run.chunk)?;
    GradientDescent::new(model, objective, cfg.rates().2, run.momentum)
}

/// The baseline of one seed, trained at the baseline rate until λ_max reaches the EoS rate's
/// threshold 2(1+β)/η (after the burn-in): the process at the fork and its monitor.
pub fn run_baseline(
    cfg: &BranchConfig,
    train: &Dataset,
    test: &Dataset,
    seed: u64,
    resume: Option<&Resume>,
) -> Result<(GradientDescent, Monitor)> {
    let run = &cfg.run;
    let (device, dtype) = (run.device()?, run.dtype()?);
    let (eta_eos, _, _) = cfg.rates();
    let mut gd = start(cfg, train, seed)?;
    let objective = gd.objective.clone();
    let test_obj = Objective::from_dataset(test, &device, dtype, run.loss, run.chunk)?;
    let mut monitor = Monitor::with_config(
        run.sharpness.clone(),
        cfg.monitor.clone(),
        &objective,
        train,
        Some(test_obj),
        "baseline",
        seed,
    )?;
    let label = format!("baseline seed={seed}");
    let mut progress = Progress::new(label.clone(), (run.steps / 4).max(1));
    let mut plan = Baseline {
        monitor: &mut monitor,
        schedule: &run.sharpness.every,
        metrics: cfg.baseline_metrics,
        burn_in: run.burn_in,
        target: crate::train::stability_threshold(eta_eos, run.momentum),
        steps: run.steps,
        seed,
    };
    let checkpoints = resume.map(|r| r.process(seed, "baseline", run.sharpness.every.k));
    let mut hooks = resume.map(|r| r.hooks(label));
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    if let Some(h) = hooks.as_mut() {
        observers.push(h);
    }
    drive(&mut gd, &mut plan, checkpoints, &mut observers)?;
    Ok((gd, monitor))
}

/// The plan of a baseline: measured on `schedule` (the group metrics too with `metrics`),
/// stopped at the first measurement after `burn_in` with λ_max ≥ `target`; reaching `steps`
/// first is an error.
struct Baseline<'a> {
    monitor: &'a mut Monitor,
    schedule: &'a Every,
    metrics: bool,
    burn_in: usize,
    target: f64,
    steps: usize,
    seed: u64,
}

impl Plan for Baseline<'_> {
    fn parts(&mut self) -> Vec<&mut dyn Stateful> {
        vec![&mut *self.monitor]
    }
    fn at(&mut self, gd: &GradientDescent, _: usize) -> Result<Flow> {
        let step = gd.state.step;
        if self.schedule.hits(step) {
            let rec = if self.metrics {
                self.monitor.measure(gd)?
            } else {
                self.monitor.measure_sharpness(gd)?
            };
            if step >= self.burn_in && rec.lambda_max() >= self.target {
                return Ok(Flow::Stop);
            }
        }
        if step < self.steps {
            return Ok(Flow::Continue);
        }
        let max = self
            .monitor
            .tracker
            .records
            .iter()
            .map(|r| r.lambda_max())
            .fold(f64::NEG_INFINITY, f64::max);
        Err(Error::Numerics(format!(
            "seed {}: λ_max never reached 2/η = {:.3} within {} baseline steps (largest \
             {max:.3}); raise `steps` or the step size",
            self.seed, self.target, self.steps
        )))
    }
}
