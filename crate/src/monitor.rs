//! The measurement observer: at scheduled steps, the top Hessian eigenpairs (warm-started) and,
//! for each data group, the mechanism quantities of the paper — loss, accuracy, ‖g_k‖,
//! cos²(g_k, v_max), ‖g_k‖²cos², g_kᵀHg_k, the alignment with the top-k eigenspace and,
//! optionally, with the group's own top Hessian eigenvector — all from one forward/backward
//! graph of the training loss; and at every step, each group's loss and accuracy from the
//! step's own per-example losses (`step_loss`, `step_accuracy`: a segmented sum, no extra pass).
use crate::Result;
use crate::data::{Dataset, ORDINARY};
use crate::groups::group_name;
use crate::hessian::{HessianOp, LanczosConfig};
use crate::loss;
use crate::metrics::{MetricRow, RunLog};
use crate::model::{Model, flatten};
use crate::objective::Objective;
use crate::sharpness::{SharpnessConfig, SharpnessRecord, SharpnessTracker};
use crate::train::{GdState, GradientDescent, Observer, StepView, dot, sq_norm};
use serde::{Deserialize, Serialize};

/// What the monitor measures beyond the sharpness schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Also solve for each group's own top Hessian eigenpair (of the group's mean loss) and log
    /// `lambda_own` and `cos2_own` = cos²(g_k, v_max of the group's own loss).
    pub group_eigen: bool,
    /// Log the test set's loss and accuracy at every step (one extra forward pass of the test
    /// set per step), not only at the measurement cadence.
    pub test_every_step: bool,
    /// Log g_kᵀ H g_k per group (one Hessian-vector product of the training loss per group).
    pub group_curvature: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            group_eigen: false,
            test_every_step: true,
            group_curvature: true,
        }
    }
}

/// Sharpness plus per-group metrics, logged in long format.
pub struct Monitor {
    /// Eigenvalue tracking (its latest eigenvectors define v_max).
    pub tracker: SharpnessTracker,
    /// Long-format log of everything measured.
    pub log: RunLog,
    /// Extra measurements.
    pub config: MonitorConfig,
    groups: Vec<(String, Objective)>,
    test: Option<Objective>,
    branch: String,
    seed: u64,
    /// Per training example, its slot in `groups` (`None`: an ordinary example).
    slot: Vec<Option<usize>>,
    series: bool,
}

/// The observer that logs every step's group losses into a [`Monitor`] (see
/// [`Monitor::step_series`]).
pub struct StepSeries<'a>(&'a mut Monitor);

impl Observer for StepSeries<'_> {
    fn observe(&mut self, view: &StepView) -> Result<()> {
        self.0.record_step(view)
    }
}

impl Monitor {
    /// A monitor for the groups present in `train` (by group id) plus the optional test set.
    pub fn new(
        config: SharpnessConfig,
        objective: &Objective,
        train: &Dataset,
        test: Option<Objective>,
        branch: &str,
        seed: u64,
    ) -> Result<Self> {
        Self::with_config(
            config,
            MonitorConfig::default(),
            objective,
            train,
            test,
            branch,
            seed,
        )
    }

    /// [`Monitor::new`] with extra measurements.
    pub fn with_config(
        config: SharpnessConfig,
        extra: MonitorConfig,
        objective: &Objective,
        train: &Dataset,
        test: Option<Objective>,
        branch: &str,
        seed: u64,
    ) -> Result<Self> {
        let mut ids: Vec<u8> = train
            .group
            .iter()
            .copied()
            .filter(|&g| g != ORDINARY)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut groups = Vec::new();
        let mut slot = vec![None; train.n()];
        for id in ids {
            let idx: Vec<usize> = (0..train.n()).filter(|&i| train.group[i] == id).collect();
            for &i in &idx {
                slot[i] = Some(groups.len());
            }
            groups.push((group_name(id).to_string(), objective.subset(&idx)?));
        }
        Ok(Monitor {
            tracker: SharpnessTracker::new(config),
            log: RunLog::new(""),
            config: extra,
            groups,
            test,
            branch: branch.into(),
            seed,
            slot,
            series: false,
        })
    }

    /// The same monitor, logging every step's group losses (when `on`) through
    /// [`Monitor::step_series`].
    pub fn with_series(mut self, on: bool) -> Self {
        self.series = on;
        self
    }

    /// An observer that logs this step's `step_loss` and `step_accuracy` of every group, the
    /// training set (`train`) and, if configured, the test set (`test`).
    pub fn step_series(&mut self) -> StepSeries<'_> {
        StepSeries(self)
    }

    /// Log the group losses and accuracies of the step shown in `view` (no-op unless the
    /// series is on).
    pub fn record_step(&mut self, view: &StepView) -> Result<()> {
        if !self.series {
            return Ok(());
        }
        let (loss, correct) = view.examples.to_host()?;
        let k = self.groups.len();
        // Segmented sums: one pass over the examples, slot k is the whole training set.
        let mut sums = vec![(0.0, 0.0, 0usize); k + 1];
        for ((l, c), s) in loss.iter().zip(&correct).zip(&self.slot) {
            for j in s.iter().copied().chain([k]) {
                sums[j].0 += l;
                sums[j].1 += c;
                sums[j].2 += 1;
            }
        }
        let (step, t_eff) = (view.state.step, view.state.t_eff);
        for (j, (l, c, n)) in sums.into_iter().enumerate() {
            let name = if j == k {
                "train".to_string()
            } else {
                self.groups[j].0.clone()
            };
            let n = n.max(1) as f64;
            self.row(step, t_eff, &name, "step_loss", l / n);
            self.row(step, t_eff, &name, "step_accuracy", c / n);
        }
        if self.config.test_every_step
            && let Some(test) = &self.test
        {
            let (l, acc) = test_metrics(test, view.model)?;
            self.row(step, t_eff, "test", "step_loss", l);
            self.row(step, t_eff, "test", "step_accuracy", acc);
        }
        Ok(())
    }

    /// Another branch of the same run: same groups, the tracker's eigenvectors kept for warm
    /// starts, a fresh log.
    pub fn for_branch(&self, branch: &str) -> Monitor {
        let mut tracker = SharpnessTracker::new(self.tracker.config.clone());
        tracker.vectors = self.tracker.vectors.clone();
        Monitor {
            tracker,
            log: RunLog::new(""),
            config: self.config.clone(),
            groups: self.groups.clone(),
            test: self.test.clone(),
            branch: branch.into(),
            seed: self.seed,
            slot: self.slot.clone(),
            series: self.series,
        }
    }

    /// Group names measured.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.iter().map(|(n, _)| n.clone()).collect()
    }

    fn row(&mut self, step: usize, t_eff: f64, group: &str, metric: &str, value: f64) {
        self.log.rows.push(MetricRow {
            branch: self.branch.clone(),
            seed: self.seed,
            step,
            t_eff,
            group: group.into(),
            metric: metric.into(),
            value,
        });
    }

    /// Measure λ_max (and the tracked eigenpairs) only, logging `lambda_*` and `residual_*`.
    pub fn measure_sharpness(&mut self, gd: &GradientDescent) -> Result<SharpnessRecord> {
        let state = &gd.state;
        let obj = self.tracker.objective_for(&gd.objective)?;
        let op = HessianOp::new(&gd.model, &obj)?;
        let rec = self
            .tracker
            .measure_with(&op, state.step, state.t_eff, state)?
            .clone();
        self.log_sharpness(&rec);
        Ok(rec)
    }

    fn log_sharpness(&mut self, rec: &SharpnessRecord) {
        let (step, t_eff) = (rec.step, rec.t_eff);
        for (i, (v, r)) in rec.values.iter().zip(&rec.residuals).enumerate() {
            self.row(step, t_eff, "all", &format!("lambda_{}", i + 1), *v);
            self.row(step, t_eff, "all", &format!("residual_{}", i + 1), *r);
        }
        self.row(step, t_eff, "all", "threshold", rec.threshold);
    }

    /// Measure everything at the process's current parameters.
    pub fn measure(&mut self, gd: &GradientDescent) -> Result<SharpnessRecord> {
        self.measure_at(&gd.model, &gd.objective, &gd.state)
    }

    /// Measure everything for `model` on `objective` with optimiser `state`.
    pub fn measure_at(
        &mut self,
        model: &Model,
        objective: &Objective,
        state: &GdState,
    ) -> Result<SharpnessRecord> {
        let (step, t_eff) = (state.step, state.t_eff);
        let sharp_obj = self.tracker.objective_for(objective)?;
        let op = HessianOp::new(model, &sharp_obj)?;
        let rec = self.tracker.measure_with(&op, step, t_eff, state)?.clone();
        self.log_sharpness(&rec);
        let vecs = self.tracker.vectors.clone().unwrap_or_default();
        // The whole training set, then each group: gradient-based quantities.
        let full = ("train".to_string(), objective.clone());
        let targets: Vec<(String, Objective)> = std::iter::once(full)
            .chain(self.groups.iter().cloned())
            .collect();
        // Sharpness measured on the whole training set: the operator already holds the training
        // set's value and gradient (the same arithmetic, hence the same bits), so no second pass.
        let op_is_train = self.tracker.config.subset.is_none();
        for (i, (name, obj)) in targets.iter().enumerate() {
            let (l, g) = if i == 0 && op_is_train {
                (op.value(), op.gradient()?)
            } else {
                obj.value_and_grad(model)?
            };
            let out = obj.outputs(model)?;
            let acc = loss::accuracy(&out, obj.y())?;
            let g2 = sq_norm(&g)?;
            let gflat = flatten(&g)?;
            let proj: Vec<f64> = vecs
                .iter()
                .map(|v| flat_dot(&gflat, v))
                .collect::<Result<_>>()?;
            let cos2 = if g2 > 0.0 {
                proj.first().map(|p| p * p / g2).unwrap_or(f64::NAN)
            } else {
                f64::NAN
            };
            let topk = if g2 > 0.0 {
                proj.iter().map(|p| p * p).sum::<f64>() / g2
            } else {
                f64::NAN
            };
            if self.config.group_curvature {
                let ghg = dot(&g, &op.apply(&g)?)?;
                self.row(step, t_eff, name, "gHg", ghg);
            }
            if self.config.group_eigen && i > 0 {
                // The group's own curvature: the top eigenpair of its mean loss, solved cold from
                // a fixed start (deterministic, so resumed runs need no saved state; a group's
                // Hessian has low rank, so this takes a few cheap products).
                let eig = HessianOp::new(model, obj)?.top_eigen(&OWN_EIGEN, None)?;
                let p = flat_dot(&gflat, &eig.vectors[0])?;
                let own = if g2 > 0.0 { p * p / g2 } else { f64::NAN };
                self.row(step, t_eff, name, "lambda_own", eig.values[0]);
                self.row(step, t_eff, name, "cos2_own", own);
            }
            self.row(step, t_eff, name, "loss", l);
            self.row(step, t_eff, name, "accuracy", acc);
            self.row(step, t_eff, name, "grad_norm", g2.sqrt());
            self.row(step, t_eff, name, "cos2_vmax", cos2);
            self.row(step, t_eff, name, "proj2_vmax", g2 * cos2);
            self.row(step, t_eff, name, "cos2_topk", topk);
            // The per-example margin distribution as deciles: how confidently each group is
            // classified (the saturation claim's mechanism under cross-entropy).
            let m: Vec<f64> = loss::margins(&out, obj.onehot())?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1()?;
            for (q, metric) in margin_metrics() {
                let v = crate::stats::quantile(&m, q);
                self.row(step, t_eff, name, &metric, v);
            }
        }
        if let Some(test) = self.test.clone() {
            let (l, acc) = test_metrics(&test, model)?;
            self.row(step, t_eff, "test", "loss", l);
            self.row(step, t_eff, "test", "accuracy", acc);
        }
        Ok(rec)
    }
}

/// Settings of the per-group eigen-solve (`group_eigen`): top eigenpair to relative residual
/// 1e-4, cold start from seed 0.
const OWN_EIGEN: LanczosConfig = LanczosConfig {
    k: 1,
    tol: 1e-4,
    max_iter: 100,
    seed: 0,
};

/// Mean loss and accuracy of `test` at `model`.
fn test_metrics(test: &Objective, model: &Model) -> Result<(f64, f64)> {
    let out = test.outputs(model)?;
    let l = loss::mean(test.loss, &out, test.onehot())?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok((l, loss::accuracy(&out, test.y())?))
}

/// The margin deciles logged per group: (level in [0, 1], metric name), in increasing order.
pub fn margin_metrics() -> Vec<(f64, String)> {
    (0..=10)
        .map(|i| (i as f64 / 10.0, format!("margin_p{}", 10 * i)))
        .collect()
}

fn flat_dot(a: &candle_core::Tensor, b: &candle_core::Tensor) -> Result<f64> {
    Ok((a * b)?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?)
}

impl Observer for Monitor {
    fn observe(&mut self, view: &StepView) -> Result<()> {
        if self.tracker.config.every.hits(view.record.step) {
            self.measure_at(view.model, view.objective, view.state)?;
        }
        Ok(())
    }
}
