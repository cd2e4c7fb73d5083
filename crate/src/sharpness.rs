//! Sharpness tracking: the top Hessian eigenvalues of the training loss at scheduled steps,
//! warm-started from the previous eigenvectors, and the edge-of-stability entry time t*.
use crate::hessian::{HessianOp, LanczosConfig};
use crate::objective::Objective;
use crate::train::{Every, GdState, Observer, StepView};
use crate::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// What to measure and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessConfig {
    /// Measurement schedule.
    pub every: Every,
    /// Eigen-solver settings (k = number of top eigenvalues).
    pub lanczos: LanczosConfig,
    /// Measure on these training examples only (`None` = the full training set).
    pub subset: Option<Vec<usize>>,
    /// Warm-start each solve from the previous eigenvectors.
    pub warm_start: bool,
    /// Track every eigenvalue above a threshold instead of a fixed `lanczos.k` (see
    /// [`TrackAbove`]); `None`: exactly `lanczos.k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_above: Option<TrackAbove>,
}

/// Track every eigenvalue above `c/η`, as central flows do: each solve asks for one more pair
/// than the previous measurement had above `c/η` (so a pair is added as soon as the smallest
/// tracked one rises above it, and dropped when it falls below), at least `lanczos.k` and at
/// most `max_k`. Eigenvectors keep their sign from one measurement to the next.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackAbove {
    /// The threshold is `c / η` (η the step size in force at the measurement).
    pub c: f64,
    /// Most eigenpairs tracked.
    pub max_k: usize,
}

impl Default for SharpnessConfig {
    fn default() -> Self {
        SharpnessConfig {
            every: Every::new(32),
            lanczos: LanczosConfig::default(),
            subset: None,
            warm_start: true,
            track_above: None,
        }
    }
}

/// One sharpness measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessRecord {
    /// Step t.
    pub step: usize,
    /// Effective time at θ_t.
    pub t_eff: f64,
    /// Step size in force.
    pub lr: f64,
    /// Stability threshold 2(1 + β)/η in force.
    pub threshold: f64,
    /// Top eigenvalues λ_1 ≥ … ≥ λ_k.
    pub values: Vec<f64>,
    /// Residual norms ‖H v_i − λ_i v_i‖.
    pub residuals: Vec<f64>,
    /// Hessian-vector products used.
    pub iterations: usize,
    /// Whether the solver met its tolerance.
    pub converged: bool,
    /// Whether the solve was warm-started.
    pub warm: bool,
}

impl SharpnessRecord {
    /// λ_max.
    pub fn lambda_max(&self) -> f64 {
        self.values[0]
    }
}

/// Observer that measures sharpness on a schedule and keeps the latest eigenvectors.
pub struct SharpnessTracker {
    /// Settings.
    pub config: SharpnessConfig,
    /// Every measurement so far.
    pub records: Vec<SharpnessRecord>,
    /// Latest top eigenvectors (flat, sorted-name parameter order).
    pub vectors: Option<Vec<Tensor>>,
    subset: Option<Objective>,
}

impl SharpnessTracker {
    /// A tracker with `config`.
    pub fn new(config: SharpnessConfig) -> Self {
        SharpnessTracker {
            config,
            records: Vec::new(),
            vectors: None,
            subset: None,
        }
    }

    /// Measure now at the model's parameters (also used outside a run, e.g. at a fork).
    pub fn measure(&mut self, view: &StepView) -> Result<&SharpnessRecord> {
        let objective = self.objective_for(view.objective)?;
        let op = HessianOp::new(view.model, &objective)?;
        self.measure_with(&op, view.record.step, view.record.t_eff, view.state)
    }

    /// The objective sharpness is measured on: the training objective or its fixed subset.
    pub fn objective_for(&mut self, train: &Objective) -> Result<Objective> {
        Ok(match &self.config.subset {
            None => train.clone(),
            Some(idx) => {
                if self.subset.is_none() {
                    self.subset = Some(train.subset(idx)?);
                }
                self.subset.clone().expect("just set")
            }
        })
    }

    /// Measure with an already-built Hessian operator (shared with other measurements).
    pub fn measure_with(
        &mut self,
        op: &HessianOp,
        step: usize,
        t_eff: f64,
        state: &GdState,
    ) -> Result<&SharpnessRecord> {
        let start = if self.config.warm_start {
            self.vectors.as_deref()
        } else {
            None
        };
        let mut cfg = self.config.lanczos.clone();
        cfg.k = self.next_k().min(op.dim());
        let mut eig = op.top_eigen(&cfg, start)?;
        if let (Some(_), Some(prev)) = (self.config.track_above, &self.vectors) {
            // Lanczos returns ±y at random: keep each pair's sign continuous in time.
            for (y, p) in eig.vectors.iter_mut().zip(prev) {
                let d = (&*y * p)?.sum_all()?.to_dtype(candle_core::DType::F64)?;
                if d.to_scalar::<f64>()? < 0.0 {
                    *y = y.neg()?;
                }
            }
        }
        self.records.push(SharpnessRecord {
            step,
            t_eff,
            lr: state.lr,
            threshold: state.threshold(),
            values: eig.values,
            residuals: eig.residuals,
            iterations: eig.iterations,
            converged: eig.converged,
            warm: start.is_some(),
        });
        self.vectors = Some(eig.vectors);
        Ok(self.records.last().expect("just pushed"))
    }

    /// Number of eigenpairs the next solve asks for: `lanczos.k`, or with [`TrackAbove`] one
    /// more than the last measurement had above `c/η` (kept in `lanczos.k..=max_k`). Derived
    /// from the records alone, so a resumed run continues the same way.
    pub fn next_k(&self) -> usize {
        let k = self.config.lanczos.k;
        match (self.config.track_above, self.records.last()) {
            (Some(t), Some(r)) => {
                let above = r.values.iter().filter(|v| **v >= t.c / r.lr).count();
                (above + 1).clamp(k, t.max_k.max(k))
            }
            _ => k,
        }
    }

    /// The first edge-of-stability entry t* (see [`eos_entry`]).
    pub fn eos_entry(&self, burn_in: usize) -> Option<EosEntry> {
        eos_entry(&self.records, burn_in)
    }
}

impl Observer for SharpnessTracker {
    fn observe(&mut self, view: &StepView) -> Result<()> {
        if self.config.every.hits(view.record.step) {
            self.measure(view)?;
        }
        Ok(())
    }
}

/// When λ_max first reached the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EosEntry {
    /// First measured step (after burn-in) with λ_max ≥ threshold.
    pub step: usize,
    /// Linearly interpolated crossing step between the previous measurement and `step`.
    pub t_star: f64,
    /// Linearly interpolated crossing in effective time.
    pub t_eff: f64,
}

/// t*: the first measured step after `burn_in` steps with λ_max ≥ 2(1+β)/η, refined by linear
/// interpolation between that measurement and the one before it.
pub fn eos_entry(records: &[SharpnessRecord], burn_in: usize) -> Option<EosEntry> {
    let i = records
        .iter()
        .position(|r| r.step >= burn_in && r.lambda_max() >= r.threshold)?;
    let r = &records[i];
    if i == 0 || records[i - 1].step < burn_in && records[i - 1].lambda_max() >= r.threshold {
        return Some(EosEntry {
            step: r.step,
            t_star: r.step as f64,
            t_eff: r.t_eff,
        });
    }
    let p = &records[i - 1];
    let frac = ((r.threshold - p.lambda_max()) / (r.lambda_max() - p.lambda_max())).clamp(0.0, 1.0);
    Some(EosEntry {
        step: r.step,
        t_star: p.step as f64 + frac * (r.step - p.step) as f64,
        t_eff: p.t_eff + frac * (r.t_eff - p.t_eff),
    })
}

/// Error helper for code that needs t* to exist.
pub fn require_eos_entry(records: &[SharpnessRecord], burn_in: usize) -> Result<EosEntry> {
    eos_entry(records, burn_in).ok_or_else(|| {
        let max = records.iter().map(|r| r.lambda_max()).fold(f64::NEG_INFINITY, f64::max);
        let thr = records.last().map(|r| r.threshold).unwrap_or(f64::NAN);
        Error::Numerics(format!(
            "λ_max never reached the threshold {thr:.3} after burn-in {burn_in} (largest measured {max:.3} \
             in {} measurements): train longer or raise the step size",
            records.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize, lam: f64) -> SharpnessRecord {
        SharpnessRecord {
            step,
            t_eff: step as f64 * 0.1,
            lr: 0.1,
            threshold: 20.0,
            values: vec![lam],
            residuals: vec![0.0],
            iterations: 1,
            converged: true,
            warm: false,
        }
    }

    #[test]
    fn tracked_count_follows_the_eigenvalues_above_the_threshold() {
        let mut t = SharpnessTracker::new(SharpnessConfig {
            track_above: Some(TrackAbove { c: 1.5, max_k: 3 }),
            ..SharpnessConfig::default()
        });
        assert_eq!(t.next_k(), 1);
        // lr 0.1: threshold c/η = 15.
        let mut r = rec(0, 14.0);
        t.records.push(r.clone());
        assert_eq!(t.next_k(), 1);
        r.values = vec![16.0];
        t.records.push(r.clone());
        assert_eq!(t.next_k(), 2, "the smallest tracked rose above: add one");
        r.values = vec![19.0, 17.0];
        t.records.push(r.clone());
        assert_eq!(t.next_k(), 3);
        r.values = vec![19.0, 17.0, 16.0];
        t.records.push(r.clone());
        assert_eq!(t.next_k(), 3, "capped at max_k");
        r.values = vec![19.0, 12.0, 11.0];
        t.records.push(r);
        assert_eq!(t.next_k(), 2, "fell below: dropped");
    }

    #[test]
    fn entry_is_interpolated() {
        let r = vec![
            rec(0, 25.0),
            rec(10, 5.0),
            rec(20, 15.0),
            rec(30, 25.0),
            rec(40, 19.0),
        ];
        // Burn-in 5 skips the early spike at step 0; crossing between 20 (15) and 30 (25) at 25.
        let e = eos_entry(&r, 5).unwrap();
        assert_eq!(e.step, 30);
        assert!((e.t_star - 25.0).abs() < 1e-12);
        assert!((e.t_eff - 2.5).abs() < 1e-12);
        assert!(eos_entry(&r[..3], 5).is_none());
        assert!(require_eos_entry(&r[..3], 5).is_err());
    }
}
