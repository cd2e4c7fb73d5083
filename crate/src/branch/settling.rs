//! Where a branch's sharpness goes after the fork: whether λ_max settles at the branch's own
//! threshold 2(1 + β)/η (a branch at the edge of stability self-stabilises there) or keeps
//! rising (a stable branch keeps sharpening).
//!
//! λ_max at the edge of stability cycles (catapults, period-2 oscillation), so the settled
//! value is a median over the last part of the branch, not its last measurement.
use super::BranchResult;
use crate::stats::median;
use serde::{Deserialize, Serialize};

/// The share of a branch's effective time, counted back from its end, over which the settled
/// λ_max is taken (its second half).
pub const TAIL: f64 = 0.5;

/// One branch's λ_max after the fork.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settling {
    /// Branch name (`eos`, `stable`).
    pub branch: String,
    /// Seed.
    pub seed: u64,
    /// The branch's threshold 2(1 + β)/η.
    pub threshold: f64,
    /// λ_max at the fork (the branch's first measurement).
    pub at_fork: f64,
    /// Median λ_max over the last [`TAIL`] of the branch's effective time.
    pub settled: f64,
    /// λ_max at the branch's last measurement.
    pub last: f64,
}

impl Settling {
    /// Settled λ_max relative to the threshold (1: at the edge of stability).
    pub fn ratio(&self) -> f64 {
        self.settled / self.threshold
    }
    /// Whether the settled λ_max is within `tol` (relative) of the threshold.
    pub fn settles_within(&self, tol: f64) -> bool {
        (self.ratio() - 1.0).abs() <= tol
    }
    /// Last λ_max relative to λ_max at the fork (> 1: still sharpening).
    pub fn growth(&self) -> f64 {
        self.last / self.at_fork
    }
}

/// [`Settling`] of a λ_max series `(t_eff, λ)` that starts at the fork, for a branch with
/// threshold `threshold`; `None` for an empty series.
pub fn of_series(series: &[(f64, f64)], threshold: f64) -> Option<(f64, f64, f64, f64)> {
    let (first, last) = (series.first()?, series.last()?);
    let from = last.0 - TAIL * (last.0 - first.0);
    let tail: Vec<f64> = series
        .iter()
        .filter(|p| p.0 >= from - 1e-12)
        .map(|p| p.1)
        .collect();
    Some((threshold, first.1, median(&tail), last.1))
}

impl BranchResult {
    /// How `branch`'s λ_max behaves after the fork in seed index `i` (NaN where it was not
    /// measured).
    pub fn settling(&self, i: usize, branch: &str) -> Settling {
        let s = &self.seeds[i];
        let (eta_eos, eta_stable, _) = self.config.rates();
        let eta = if branch == "stable" {
            eta_stable
        } else {
            eta_eos
        };
        let threshold = crate::train::stability_threshold(eta, self.config.run.momentum);
        let series = s.log.series(branch, s.seed, "all", "lambda_1");
        let (threshold, at_fork, settled, last) =
            of_series(&series, threshold).unwrap_or((threshold, f64::NAN, f64::NAN, f64::NAN));
        Settling {
            branch: branch.to_string(),
            seed: s.seed,
            threshold,
            at_fork,
            settled,
            last,
        }
    }

    /// [`BranchResult::settling`] for every seed.
    pub fn settling_all(&self, branch: &str) -> Vec<Settling> {
        (0..self.seeds.len())
            .map(|i| self.settling(i, branch))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settled_value_is_the_median_of_the_second_half() {
        // λ overshoots at the fork, then oscillates around 40 in the second half.
        let s: Vec<(f64, f64)> = [45.0, 30.0, 50.0, 38.0, 41.0, 39.0, 42.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (10.0 + i as f64, *v))
            .collect();
        let (thr, first, settled, last) = of_series(&s, 40.0).unwrap();
        assert_eq!((thr, first, last), (40.0, 45.0, 42.0));
        // Second half: t ≥ 13 → 38, 41, 39, 42 → median 40.
        assert_eq!(settled, 40.0);
        let st = Settling {
            branch: "eos".into(),
            seed: 0,
            threshold: thr,
            at_fork: first,
            settled,
            last,
        };
        assert!(st.settles_within(0.1) && st.ratio() == 1.0);
        assert!(st.growth() < 1.0);
        assert!(of_series(&[], 40.0).is_none());
    }
}
