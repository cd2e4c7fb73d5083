//! The two branch processes after the fork: each run for a stretch of effective time with
//! its measurements, the stable branch watching for t** (when its λ_max reaches its own
//! threshold) and deciding where both end.
use super::BranchConfig;
use crate::Result;
use crate::monitor::Monitor;
use crate::resume::{Flow, Plan, Resume, Stateful, drive};
use crate::train::{Every, GradientDescent, Observer, Progress, StepView};

/// Run both branches of one seed from the fork, the stable branch first (it decides t**, and
/// with `after_t2` where both end), then the EoS branch for the same effective time; both are
/// measured at the same effective times, every `every` EoS steps. Returns t** (if reached) and
/// appends the cumulative time after each branch to `seconds`.
pub(super) fn run_branches(
    cfg: &BranchConfig,
    [(eos, m_eos), (stable, m_stable)]: [(&mut GradientDescent, &mut Monitor); 2],
    seed: u64,
    resume: Option<&Resume>,
    seconds: &mut Vec<f64>,
) -> Result<Option<f64>> {
    let (eta_eos, eta_stable, _) = cfg.rates();
    let clock = std::time::Instant::now();
    let t_star = stable.state.t_eff;
    let every = cfg.run.sharpness.every.k;
    let dt = every as f64 * eta_eos;
    let schedule = |k: usize| Every {
        k,
        ..cfg.run.sharpness.every.clone()
    };
    let every_stable = ((dt / eta_stable).round() as usize).max(1);
    let thr_stable = crate::train::stability_threshold(eta_stable, cfg.run.momentum);
    let watch = Watch {
        every: if cfg.t2_checks > 0 {
            (every_stable / (cfg.t2_checks + 1)).max(1)
        } else {
            0
        },
        threshold: thr_stable,
        after: cfg.after_t2,
    };
    let base = seconds.last().copied().unwrap_or(0.0);
    run_branch(
        stable,
        m_stable,
        (&schedule(every_stable), Some(watch)),
        cfg.horizon,
        ("stable", seed),
        resume,
    )?;
    seconds.push(base + clock.elapsed().as_secs_f64());
    let t_star2 = first_reaching(m_stable, thr_stable);
    // The same effective time on the EoS branch (rounded to its steps).
    let horizon = (stable.state.t_eff - t_star).min(cfg.horizon);
    run_branch(
        eos,
        m_eos,
        (&schedule(every), None),
        horizon,
        ("eos", seed),
        resume,
    )?;
    seconds.push(base + clock.elapsed().as_secs_f64());
    Ok(t_star2)
}

/// Run a branch process for `horizon` effective time, measuring on `schedule` (steps counted
/// from the fork) and logging every step's group losses; with `resume`, checkpointed
/// periodically and restored from its last checkpoint.
fn run_branch(
    gd: &mut GradientDescent,
    monitor: &mut Monitor,
    (schedule, watch): (&Every, Option<Watch>),
    horizon: f64,
    (name, seed): (&str, u64),
    resume: Option<&Resume>,
) -> Result<()> {
    let label = format!("{name} seed={seed}");
    let steps = (horizon / gd.state.lr).round() as usize;
    let mut plan = Branch {
        monitor,
        schedule,
        watch,
        steps,
    };
    let checkpoints = resume.map(|r| r.process(seed, name, schedule.k));
    let mut hooks = resume.map(|r| r.hooks(label.clone()));
    let mut progress = Progress::new(label, (steps / 4).max(1));
    let mut observers: Vec<&mut dyn Observer> = vec![&mut progress];
    if let Some(h) = hooks.as_mut() {
        observers.push(h);
    }
    drive(gd, &mut plan, checkpoints, &mut observers)
}

/// The plan of a branch: `steps` steps from the fork, measured on `schedule` and at the last
/// step, every step's group losses logged; the stable branch's `watch` looks for t**.
struct Branch<'a> {
    monitor: &'a mut Monitor,
    schedule: &'a Every,
    watch: Option<Watch>,
    steps: usize,
}

impl Plan for Branch<'_> {
    fn parts(&mut self) -> Vec<&mut dyn Stateful> {
        vec![&mut *self.monitor]
    }
    fn at(&mut self, gd: &GradientDescent, i: usize) -> Result<Flow> {
        let monitor = &mut *self.monitor;
        if self.schedule.hits(i) || i == self.steps {
            monitor.measure(gd)?;
            // Stop a set stretch of effective time after t** (at the end of a measured pair).
            let measured_last = !self.schedule.pairs || !self.schedule.scheduled(i);
            if let Some(w) = self.watch
                && let Some(after) = w.after
                && let Some(t2) = first_reaching(monitor, w.threshold)
                && measured_last
                && gd.state.t_eff >= t2 + after - 1e-9
            {
                return Ok(Flow::Stop);
            }
        } else if let Some(w) = self.watch
            && w.every > 0
            && i.is_multiple_of(w.every)
            && first_reaching(monitor, w.threshold).is_none()
        {
            monitor.measure_sharpness(gd)?;
        }
        Ok(if i >= self.steps {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }
    fn observe(&mut self, view: &StepView) -> Result<()> {
        self.monitor.record_step(view)
    }
}

/// How the stable branch watches for t**: λ_max-only checks every `every` steps (0: none)
/// until λ_max first reaches `threshold` after the fork's own measurement, and, with `after`,
/// a stop that stretch of effective time after it.
#[derive(Clone, Copy, Debug)]
struct Watch {
    every: usize,
    threshold: f64,
    after: Option<f64>,
}

/// Effective time of the first measurement after the first with λ_max ≥ `threshold`.
fn first_reaching(monitor: &Monitor, threshold: f64) -> Option<f64> {
    monitor
        .tracker
        .records
        .iter()
        .skip(1)
        .find(|r| r.lambda_max() >= threshold)
        .map(|r| r.t_eff)
}
