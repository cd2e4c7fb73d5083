//! The edge of stability and one exit fork in plain library calls, without the experiment
//! machinery (no run directories, resume, schedules of pairs, t_eff grids or band statistics):
//! the whole idea of the paper in one file a reader can hold in their head.
//!
//! 1. Load the shipped UCI digits (3 vs 8) and inject the paper's four groups (inliers, boundary
//!    points, label-flipped output-outliers, displaced input-outliers; 8 per class each).
//! 2. Train an MLP 64-256-256-2 (tanh, init scale 0.2, MSE) by full-batch GD at η = 0.1 and
//!    measure λ_max (Lanczos on exact Hessian-vector products) every 10 steps, until it reaches
//!    the stability threshold 2/η: t*, the fork.
//! 3. Fork: the EoS branch keeps η, the stable branch continues at m·η (m = 0.1), each for the
//!    same effective time T (t_eff = Σ η), logging every group's loss at every step.
//! 4. Δℓ_k = (mean loss of group k over the window on the EoS branch) − (the same on the stable
//!    branch): negative where the edge of stability helps group k, positive where it hurts.
//!
//! The full system (`eoslab claim tradeoff`, `crate/src/branch/`) differs in what a claim needs
//! and this file leaves out: t* interpolated between measurements, measurements in pairs of
//! consecutive steps (the period-2 oscillation), the window ending at t** (when the stable
//! branch's own λ_max reaches 2/(mη)), many seeds, and the criterion on them. The settings are
//! those of `eoslab claim tradeoff --preset digits` except the horizon (20 there).
//!
//! ```text
//! cargo run --release --example minimal            # a few seconds on one core
//! cargo run --release --example minimal -- 3       # another seed
//! ```
use candle_core::{DType, Device, Tensor};
use eoslab::data::Dataset;
use eoslab::groups::{GroupConfig, group_name};
use eoslab::hessian::{HessianOp, LanczosConfig};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec};
use eoslab::objective::Objective;
use eoslab::train::{GradientDescent, Observer, StepView};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Step size of the baseline and of the EoS branch.
const LR: f64 = 0.1;
/// The stable branch's rate multiplier (the paper's exit design under MSE).
const M: f64 = 0.1;
/// Effective time each branch runs after the fork.
const HORIZON: f64 = 4.0;
/// Steps before any λ_max measurement (the early transient).
const BURN_IN: usize = 150;
/// λ_max every this many baseline steps.
const MEASURE_EVERY: usize = 10;
/// Give up if λ_max has not reached 2/η by then.
const MAX_STEPS: usize = 3000;

/// The shipped digits 3 vs 8 with the paper's groups injected.
fn data() -> Res<Dataset> {
    let (train, _test) = eoslab::experiment::presets::digits_data().load()?;
    Ok(eoslab::groups::build(&train, &GroupConfig::paper(8))?.train)
}

/// Gradient descent on `ds` from a seeded initialisation.
fn baseline(ds: &Dataset, seed: u64) -> Res<GradientDescent> {
    let spec = ModelSpec::mlp(&[ds.d, 256, 256, ds.n_classes], Activation::Tanh);
    let model = Model::new(
        &spec,
        InitSpec { scale: 0.2, seed },
        &Device::Cpu,
        DType::F32,
    )?;
    let (x, y) = ds.to_tensors(&Device::Cpu, DType::F32)?;
    let objective = Objective::new(x, y, ds.n_classes, LossKind::Mse, None)?;
    Ok(GradientDescent::new(model, objective, LR, 0.0)?)
}

/// λ_max at the current parameters, warm-started from the previous top eigenvector.
fn sharpness(gd: &GradientDescent, warm: &mut Option<Tensor>) -> Res<f64> {
    let cfg = LanczosConfig {
        k: 1,
        tol: 1e-4,
        ..LanczosConfig::default()
    };
    let start = warm.as_ref().map(std::slice::from_ref);
    let eig = HessianOp::new(&gd.model, &gd.objective)?.top_eigen(&cfg, start)?;
    *warm = eig.vectors.first().cloned();
    Ok(eig.values[0])
}

/// Every group's mean loss at every step: an observer, shown θ_t before each update.
struct GroupLosses {
    /// Group id of each example (0: ordinary).
    ids: Vec<u8>,
    /// The group ids present, in order.
    groups: Vec<u8>,
    /// Per step: (t_eff, mean loss of each group in `groups`).
    rows: Vec<(f64, Vec<f64>)>,
}

impl GroupLosses {
    fn new(ds: &Dataset) -> Self {
        let mut groups: Vec<u8> = ds.group.iter().copied().filter(|&g| g > 0).collect();
        groups.sort_unstable();
        groups.dedup();
        GroupLosses {
            ids: ds.group.clone(),
            groups,
            rows: Vec::new(),
        }
    }

    /// Each group's loss averaged over the steps logged (the window mean; the steps of one
    /// branch are equally spaced in t_eff, so this is the mean over effective time).
    fn window_mean(&self) -> Vec<f64> {
        let n = self.rows.len() as f64;
        (0..self.groups.len())
            .map(|k| self.rows.iter().map(|(_, l)| l[k]).sum::<f64>() / n)
            .collect()
    }
}

impl Observer for GroupLosses {
    fn observe(&mut self, view: &StepView) -> eoslab::Result<()> {
        let (loss, _correct) = view.examples.to_host()?;
        let means = self
            .groups
            .iter()
            .map(|&g| {
                let (sum, n) = loss
                    .iter()
                    .zip(&self.ids)
                    .filter(|&(_, &id)| id == g)
                    .fold((0.0, 0usize), |(s, n), (l, _)| (s + l, n + 1));
                sum / n as f64
            })
            .collect();
        self.rows.push((view.state.t_eff, means));
        Ok(())
    }
}

/// Train at η until λ_max ≥ 2/η (measured every `MEASURE_EVERY` steps after the burn-in);
/// returns the trajectory of (step, λ_max).
fn train_to_the_edge(gd: &mut GradientDescent) -> Res<Vec<(usize, f64)>> {
    let threshold = eoslab::train::stability_threshold(LR, 0.0);
    let (mut warm, mut lambdas) = (None, Vec::new());
    gd.run(BURN_IN, &mut [])?;
    while gd.state.step < MAX_STEPS {
        let lambda = sharpness(gd, &mut warm)?;
        lambdas.push((gd.state.step, lambda));
        if lambda >= threshold {
            return Ok(lambdas);
        }
        gd.run(MEASURE_EVERY, &mut [])?;
    }
    Err(format!("λ_max did not reach 2/η = {threshold} within {MAX_STEPS} steps").into())
}

/// Run one branch for `HORIZON` units of effective time at rate `lr`, logging group losses.
fn branch(mut gd: GradientDescent, lr: f64, ds: &Dataset) -> Res<(GroupLosses, f64)> {
    gd.set_lr(lr)?;
    let mut log = GroupLosses::new(ds);
    let steps = (HORIZON / lr).round() as usize;
    gd.run(steps, &mut [&mut log])?;
    let lambda = sharpness(&gd, &mut None)?;
    Ok((log, lambda))
}

fn main() -> Res<()> {
    let seed: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|e| format!("seed {s:?}: {e}"))?,
        None => 0,
    };
    let ds = data()?;
    println!(
        "digits 3 vs 8 with groups: n = {}, d = {}; MLP {}-256-256-{}, tanh, MSE, η = {LR}, seed {seed}",
        ds.n(),
        ds.d,
        ds.d,
        ds.n_classes
    );

    // Progressive sharpening to the edge of stability.
    let mut gd = baseline(&ds, seed)?;
    let lambdas = train_to_the_edge(&mut gd)?;
    for (step, l) in lambdas.iter().step_by(5) {
        println!(
            "  step {step:>4}: λ_max = {l:7.3}   (2/η = {:.1})",
            2.0 / LR
        );
    }
    let (t_star, at_fork) = *lambdas.last().expect("one measurement");
    println!(
        "t* = step {t_star} (t_eff {:.1}): λ_max = {at_fork:.3} ≥ 2/η; loss {:.4}",
        gd.state.t_eff,
        gd.objective.value(&gd.model)?
    );

    // The fork: identical parameters, two rates, the same effective time.
    let stable = gd.fork()?;
    let (eos_log, eos_lambda) = branch(gd, LR, &ds)?;
    let (stable_log, stable_lambda) = branch(stable, M * LR, &ds)?;
    println!(
        "after {HORIZON} units of t_eff: λ_max {eos_lambda:.3} on the EoS branch (2/η = {:.1}), \
         {stable_lambda:.3} on the stable branch (its threshold 2/(mη) = {:.1})",
        2.0 / LR,
        2.0 / (M * LR)
    );

    // Δℓ per group over the window [t*, t* + HORIZON].
    println!(
        "\n{:<16} {:>12} {:>12} {:>12}",
        "group", "ℓ EoS", "ℓ stable", "Δℓ"
    );
    let (e, s) = (eos_log.window_mean(), stable_log.window_mean());
    for (k, &g) in eos_log.groups.iter().enumerate() {
        let reading = if e[k] < s[k] {
            "EoS helps"
        } else {
            "EoS hurts"
        };
        println!(
            "{:<16} {:>12.5} {:>12.5} {:>+12.3e}  {reading}",
            group_name(g),
            e[k],
            s[k],
            e[k] - s[k]
        );
    }
    Ok(())
}
