//! Comparing the two branches of one seed: each group's Δℓ(t_eff) = ℓ_EoS − ℓ_stable on a
//! common effective-time grid, and its average over the window [t*, t**].
//!
//! Two measurements of ℓ:
//! - [`Measurement::EveryStep`] (default): every step's group loss (`step_loss`, logged from
//!   the step's own per-example losses), averaged over each cell of the grid on each branch.
//!   At the edge of stability the loss moves in catapult spikes and period-2 oscillations;
//!   the cell average weighs every step equally, so neither is sampled at one phase.
//! - [`Measurement::Sparse`]: the loss at the measurement cadence only (the first step of each
//!   measured pair), the stable branch interpolated at the EoS branch's points — the earlier
//!   protocol, kept to show how much the sampling moves Δℓ.
use crate::metrics::RunLog;
pub use crate::stats::{cell_window_mean, interpolate, pair_means, window_mean};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How each branch's group loss is measured for Δℓ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measurement {
    /// Every step's loss, time-averaged over each cell of the common t_eff grid.
    #[default]
    EveryStep,
    /// The loss at the measurement cadence, the stable branch interpolated.
    Sparse,
}

/// One seed's Δℓ per group: the curve on the grid and its window mean.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Per group, `(t_eff, Δℓ)` in increasing t_eff (cell centres for every-step averages).
    pub delta: BTreeMap<String, Vec<(f64, f64)>>,
    /// Per group, the mean of Δℓ over the points inside the window (NaN if none).
    pub window_delta: BTreeMap<String, f64>,
}

/// Where and how to compare one seed's branches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    /// Effective time of the fork (t*).
    pub t_star: f64,
    /// Cell width in effective time (the EoS branch's measurement period · η).
    pub dt: f64,
    /// The window [t*, t**] (or [t*, t* + horizon] when t** was not reached).
    pub window: (f64, f64),
}

/// Δℓ of every group in `groups` between the `eos` and `stable` branches of `seed` in `log`.
pub fn compare(
    log: &RunLog,
    seed: u64,
    groups: &[String],
    grid: Grid,
    how: Measurement,
) -> Comparison {
    let mut delta = BTreeMap::new();
    let mut window_delta = BTreeMap::new();
    for g in groups {
        let d = match how {
            Measurement::EveryStep => {
                let e = cell_means(&log.series("eos", seed, g, "step_loss"), grid);
                let s = cell_means(&log.series("stable", seed, g, "step_loss"), grid);
                e.iter()
                    .filter_map(|(j, v)| s.get(j).map(|w| (grid.centre(*j), v - w)))
                    .collect::<Vec<_>>()
            }
            Measurement::Sparse => {
                let e = first_of_pairs(&log.series_steps("eos", seed, g, "loss"));
                let s = first_of_pairs(&log.series_steps("stable", seed, g, "loss"));
                e.iter()
                    .map(|&(t, v)| (t, v - interpolate(&s, t)))
                    .filter(|p| p.1.is_finite())
                    .collect()
            }
        };
        let w = match how {
            Measurement::EveryStep => cell_window_mean(&d, grid.dt, grid.window),
            Measurement::Sparse => window_mean(&d, grid.window),
        };
        window_delta.insert(g.clone(), w);
        delta.insert(g.clone(), d);
    }
    Comparison {
        delta,
        window_delta,
    }
}

impl Grid {
    /// Index of the cell holding effective time `t` (cells start at t*).
    fn cell(&self, t: f64) -> Option<usize> {
        let x = (t - self.t_star) / self.dt;
        // A small tolerance: t_eff is a running sum of η, so a cell's first step can land an
        // ulp below its edge.
        (x > -1e-6).then(|| (x + 1e-6).floor().max(0.0) as usize)
    }
    /// Effective time at the centre of cell `j`.
    pub fn centre(&self, j: usize) -> f64 {
        self.t_star + (j as f64 + 0.5) * self.dt
    }
}

/// Mean of the values of `series` in each cell of the grid (cells with no point are absent).
pub fn cell_means(series: &[(f64, f64)], grid: Grid) -> BTreeMap<usize, f64> {
    let mut acc: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for &(t, v) in series {
        if let Some(j) = grid.cell(t)
            && v.is_finite()
        {
            let a = acc.entry(j).or_insert((0.0, 0));
            a.0 += v;
            a.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(j, (s, n))| (j, s / n as f64))
        .collect()
}

/// `(t, value)` of the first measurement of each pair of consecutive steps (a lone
/// measurement counts as the first of its pair).
pub fn first_of_pairs(rows: &[(usize, f64, f64)]) -> Vec<(f64, f64)> {
    rows.iter()
        .enumerate()
        .filter(|(i, r)| *i == 0 || rows[i - 1].0 + 1 != r.0)
        .map(|(_, r)| (r.1, r.2))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricRow;

    fn grid() -> Grid {
        Grid {
            t_star: 1.0,
            dt: 0.4,
            window: (1.0, 2.2),
        }
    }

    #[test]
    fn cells_average_every_step_and_cancel_a_period_two_oscillation() {
        // η = 0.1 from t* = 1: four steps per cell; the loss alternates 1 ± 0.5.
        let s: Vec<(f64, f64)> = (0..12)
            .map(|i| {
                let t = 1.0 + 0.1 * i as f64;
                (t, if i % 2 == 0 { 1.5 } else { 0.5 })
            })
            .collect();
        let m = cell_means(&s, grid());
        assert_eq!(m.len(), 3);
        for v in m.values() {
            assert!((v - 1.0).abs() < 1e-12, "{m:?}");
        }
        // Sampled at the cadence (every 4 steps) the same series reads 1.5 everywhere.
        assert_eq!(s.iter().step_by(4).map(|p| p.1).sum::<f64>(), 4.5);
    }

    #[test]
    fn compare_every_step_and_sparse() {
        let mut log = RunLog::new("t");
        let mut push = |branch: &str, step: usize, t: f64, metric: &str, v: f64| {
            log.rows.push(MetricRow {
                branch: branch.into(),
                seed: 0,
                step,
                t_eff: t,
                group: "g".into(),
                metric: metric.into(),
                value: v,
            })
        };
        // EoS branch η = 0.1 alternating 1 ± 0.5; stable η = 0.05 constant 0.8.
        for i in 0..12 {
            push(
                "eos",
                10 + i,
                1.0 + 0.1 * i as f64,
                "step_loss",
                1.0 + 0.5 * (-1f64).powi(i as i32),
            );
        }
        for i in 0..24 {
            push("stable", 10 + i, 1.0 + 0.05 * i as f64, "step_loss", 0.8);
        }
        // Sparse: pairs at steps 10/11 and 14/15 on the EoS branch (first of each: 1.5).
        for (st, t) in [(10, 1.0), (11, 1.1), (14, 1.4), (15, 1.5)] {
            push("eos", st, t, "loss", if st % 2 == 0 { 1.5 } else { 0.5 });
        }
        for (st, t) in [(10, 1.0), (11, 1.05), (18, 1.4), (19, 1.45)] {
            push("stable", st, t, "loss", 0.8);
        }
        let groups = vec!["g".to_string()];
        let every = compare(&log, 0, &groups, grid(), Measurement::EveryStep);
        let d = &every.delta["g"];
        assert_eq!(d.len(), 3);
        assert!(
            (d[0].0 - 1.2).abs() < 1e-12 && (d[0].1 - 0.2).abs() < 1e-12,
            "{d:?}"
        );
        assert!((every.window_delta["g"] - 0.2).abs() < 1e-12);
        let sparse = compare(&log, 0, &groups, grid(), Measurement::Sparse);
        assert_eq!(sparse.delta["g"].len(), 2);
        assert!((sparse.window_delta["g"] - 0.7).abs() < 1e-12);
    }

    #[test]
    fn pairs_and_interpolation() {
        let rows = vec![
            (0, 0.0, 1.0),
            (1, 0.1, 3.0),
            (5, 0.5, 2.0),
            (9, 0.9, 4.0),
            (10, 1.0, 6.0),
        ];
        assert_eq!(pair_means(&rows), vec![(0.0, 2.0), (0.5, 2.0), (0.9, 5.0)]);
        assert_eq!(
            first_of_pairs(&rows),
            vec![(0.0, 1.0), (0.5, 2.0), (0.9, 4.0)]
        );
        let s = vec![(0.0, 0.0), (1.0, 10.0)];
        assert_eq!(interpolate(&s, 0.25), 2.5);
        assert!(interpolate(&s, 1.5).is_nan());
        assert!(window_mean(&[], (0.0, 1.0)).is_nan());
        // Cells [0, 1), [1, 2), [2, 3) valued 1, 2, 6; the window [0.5, 2.25] overlaps them by
        // 0.5, 1 and 0.25: (0.5 + 2 + 1.5) / 1.75.
        let cells = vec![(0.5, 1.0), (1.5, 2.0), (2.5, 6.0)];
        assert!((cell_window_mean(&cells, 1.0, (0.5, 2.25)) - 4.0 / 1.75).abs() < 1e-12);
        assert!(cell_window_mean(&cells, 1.0, (5.0, 6.0)).is_nan());
    }
}
