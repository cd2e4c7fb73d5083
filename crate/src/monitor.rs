//! The measurement observer: at scheduled steps, the top Hessian eigenpairs (warm-started) and,
//! for each data group, the mechanism quantities of the paper — loss, accuracy, ‖g_k‖,
//! cos²(g_k, v_max), ‖g_k‖²cos², g_kᵀHg_k, and the alignment with the top-k eigenspace — all
//! from one forward/backward graph of the training loss.
use crate::Result;
use crate::data::{Dataset, ORDINARY};
use crate::groups::group_name;
use crate::hessian::HessianOp;
use crate::loss;
use crate::metrics::{MetricRow, RunLog};
use crate::model::{Model, flatten};
use crate::objective::Objective;
use crate::sharpness::{SharpnessConfig, SharpnessRecord, SharpnessTracker};
use crate::train::{GdState, GradientDescent, Observer, StepView, dot, sq_norm};

/// Sharpness plus per-group metrics, logged in long format.
pub struct Monitor {
    /// Eigenvalue tracking (its latest eigenvectors define v_max).
    pub tracker: SharpnessTracker,
    /// Long-format log of everything measured.
    pub log: RunLog,
    groups: Vec<(String, Objective)>,
    test: Option<Objective>,
    branch: String,
    seed: u64,
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
        let mut ids: Vec<u8> = train
            .group
            .iter()
            .copied()
            .filter(|&g| g != ORDINARY)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut groups = Vec::new();
        for id in ids {
            let idx: Vec<usize> = (0..train.n()).filter(|&i| train.group[i] == id).collect();
            groups.push((group_name(id).to_string(), objective.subset(&idx)?));
        }
        Ok(Monitor {
            tracker: SharpnessTracker::new(config),
            log: RunLog::new(""),
            groups,
            test,
            branch: branch.into(),
            seed,
        })
    }

    /// Another branch of the same run: same groups, the tracker's eigenvectors kept for warm
    /// starts, a fresh log.
    pub fn for_branch(&self, branch: &str) -> Monitor {
        let mut tracker = SharpnessTracker::new(self.tracker.config.clone());
        tracker.vectors = self.tracker.vectors.clone();
        Monitor {
            tracker,
            log: RunLog::new(""),
            groups: self.groups.clone(),
            test: self.test.clone(),
            branch: branch.into(),
            seed: self.seed,
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
        for (i, (v, r)) in rec.values.iter().zip(&rec.residuals).enumerate() {
            self.row(step, t_eff, "all", &format!("lambda_{}", i + 1), *v);
            self.row(step, t_eff, "all", &format!("residual_{}", i + 1), *r);
        }
        self.row(step, t_eff, "all", "threshold", rec.threshold);
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
            let ghg = dot(&g, &op.apply(&g)?)?;
            self.row(step, t_eff, name, "loss", l);
            self.row(step, t_eff, name, "accuracy", acc);
            self.row(step, t_eff, name, "grad_norm", g2.sqrt());
            self.row(step, t_eff, name, "cos2_vmax", cos2);
            self.row(step, t_eff, name, "proj2_vmax", g2 * cos2);
            self.row(step, t_eff, name, "cos2_topk", topk);
            self.row(step, t_eff, name, "gHg", ghg);
            // The per-example margin distribution as deciles: how confidently each group is
            // classified (the saturation claim's mechanism under cross-entropy).
            let m: Vec<f64> = loss::margins(&out, obj.onehot())?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1()?;
            for (q, metric) in margin_metrics() {
                let v = crate::experiment::verdict::quantile(&m, q);
                self.row(step, t_eff, name, &metric, v);
            }
        }
        if let Some(test) = self.test.clone() {
            let out = test.outputs(model)?;
            let l = loss::mean(test.loss, &out, test.onehot())?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            let acc = loss::accuracy(&out, test.y())?;
            self.row(step, t_eff, "test", "loss", l);
            self.row(step, t_eff, "test", "accuracy", acc);
        }
        Ok(rec)
    }
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
