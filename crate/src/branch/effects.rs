//! Per-group effects across seeds, in the two statistics the comparison is read with:
//! - the **per-seed window mean** (DESIGN §1, what the criteria use): each seed's Δℓ averaged
//!   over its own window [t*, t**], then the median, quartiles and sign counts across seeds;
//! - the **band** the authors plot: at each point of the common grid (t_eff − t*) the median
//!   and IQR of Δℓ across seeds, read up to the median window length t** − t*; its summary is
//!   the mean of the median curve over that range.
use super::compare::{self, Grid, Measurement};
use super::{BranchResult, SeedBranches};
use crate::metrics::RunLog;
use crate::stats::{median, quantile};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The fraction of seeds that must share the sign of a group's median Δℓ for its reading to
/// be decided ("EoS helps" / "EoS hurts"): the criteria's default and the summary tables' one
/// definition (DESIGN §1).
pub const DECIDED_FRACTION: f64 = 0.8;

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

impl GroupEffect {
    fn from_values(group: &str, v: Vec<f64>) -> GroupEffect {
        let n = v.len().max(1) as f64;
        GroupEffect {
            group: group.to_string(),
            median: median(&v),
            q25: quantile(&v, 0.25),
            q75: quantile(&v, 0.75),
            frac_negative: v.iter().filter(|x| **x < 0.0).count() as f64 / n,
            frac_positive: v.iter().filter(|x| **x > 0.0).count() as f64 / n,
            per_seed: v,
        }
    }

    /// The effect of `group` from its per-seed window Δℓ values (for building results by hand,
    /// as the criteria's tests do).
    pub fn new(group: &str, per_seed: Vec<f64>) -> GroupEffect {
        GroupEffect::from_values(group, per_seed)
    }

    /// [`GroupEffect::reading_at`] the default fraction [`DECIDED_FRACTION`] (what the summary
    /// tables print).
    pub fn reading(&self) -> &'static str {
        self.reading_at(DECIDED_FRACTION)
    }

    /// "EoS helps", "EoS hurts" or "mixed": the sign of the median when at least `fraction` of
    /// the seeds share it.
    pub fn reading_at(&self, fraction: f64) -> &'static str {
        if self.median < 0.0 && self.frac_negative >= fraction {
            "EoS helps"
        } else if self.median > 0.0 && self.frac_positive >= fraction {
            "EoS hurts"
        } else {
            "mixed"
        }
    }
}

/// A group's effect in the band statistic: the across-seed median curve of Δℓ on the common
/// grid, averaged up to the median window length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandEffect {
    /// Group name.
    pub group: String,
    /// Mean over grid points t_eff − t* ≤ median(t** − t*) of the median-across-seeds Δℓ.
    pub mean_of_median: f64,
    /// The same mean of the 25th and 75th percentile curves.
    pub mean_q25: f64,
    /// See `mean_q25`.
    pub mean_q75: f64,
    /// Grid points averaged.
    pub points: usize,
}

impl BranchResult {
    /// Per-group effect over seeds (per-seed window means).
    pub fn effects(&self) -> Vec<GroupEffect> {
        self.groups
            .iter()
            .map(|g| {
                let v = self
                    .seeds
                    .iter()
                    .map(|s| s.window_delta.get(g).copied().unwrap_or(f64::NAN))
                    .collect();
                GroupEffect::from_values(g, v)
            })
            .collect()
    }

    /// The effect of one group.
    pub fn effect(&self, group: &str) -> Option<GroupEffect> {
        self.effects().into_iter().find(|e| e.group == group)
    }

    /// Per-group effect of Δℓ_k − Δℓ_train (per seed): who gains relative to the average
    /// training example. Not a criterion; the criteria stay on raw Δℓ.
    pub fn relative_effects(&self) -> Vec<GroupEffect> {
        self.groups
            .iter()
            .filter(|g| g.as_str() != "train")
            .map(|g| {
                let v = self
                    .seeds
                    .iter()
                    .map(|s| {
                        let own = s.window_delta.get(g).copied().unwrap_or(f64::NAN);
                        own - s.window_delta.get("train").copied().unwrap_or(f64::NAN)
                    })
                    .collect();
                GroupEffect::from_values(g, v)
            })
            .collect()
    }

    /// Δℓ(t_eff − t*) across seeds for `group`: `(t, median, q25, q75)` on the shared grid
    /// (the points every seed has).
    pub fn delta_band(&self, group: &str) -> Vec<(f64, f64, f64, f64)> {
        self.band_of(|s| s.delta.get(group).cloned().unwrap_or_default())
    }

    /// Like [`BranchResult::delta_band`], for Δℓ_k − Δℓ_train.
    pub fn relative_band(&self, group: &str) -> Vec<(f64, f64, f64, f64)> {
        self.band_of(|s| {
            let own = s.delta.get(group).cloned().unwrap_or_default();
            let train = s.delta.get("train").cloned().unwrap_or_default();
            own.iter()
                .zip(&train)
                .map(|(a, b)| (a.0, a.1 - b.1))
                .collect()
        })
    }

    /// Median and quartiles across seeds at each grid point, over the seeds whose curve
    /// reaches it (runs may end at their own t** + `after_t2`), for as long as at least half
    /// of the seeds do.
    fn band_of(
        &self,
        curve: impl Fn(&SeedBranches) -> Vec<(f64, f64)>,
    ) -> Vec<(f64, f64, f64, f64)> {
        let curves: Vec<Vec<(f64, f64)>> = self
            .seeds
            .iter()
            .map(|s| curve(s).iter().map(|&(t, v)| (t - s.t_star, v)).collect())
            .collect();
        let need = curves.len().div_ceil(2).max(1);
        let longest = curves.iter().map(|c| c.len()).max().unwrap_or(0);
        (0..longest)
            .map_while(|i| {
                let here: Vec<&(f64, f64)> = curves.iter().filter_map(|c| c.get(i)).collect();
                (here.len() >= need).then(|| {
                    let v: Vec<f64> = here.iter().map(|p| p.1).collect();
                    (
                        here[0].0,
                        median(&v),
                        quantile(&v, 0.25),
                        quantile(&v, 0.75),
                    )
                })
            })
            .collect()
    }

    /// Per-group effect in the band statistic (see the module documentation): the median,
    /// 25th and 75th percentile curves averaged over [0, median window] like the per-seed
    /// window means (cells weighted by their overlap with it; sparse points inside it).
    pub fn band_effects(&self) -> Vec<BandEffect> {
        let window = (0.0, self.median_window());
        let dt = self.seeds.first().map(|s| s.dt).unwrap_or(f64::NAN);
        let mean = |curve: Vec<(f64, f64)>| match self.config.measurement {
            Measurement::EveryStep => compare::cell_window_mean(&curve, dt, window),
            Measurement::Sparse => compare::window_mean(&curve, window),
        };
        self.groups
            .iter()
            .map(|g| {
                let band = self.delta_band(g);
                let pick = |f: fn(&(f64, f64, f64, f64)) -> f64| {
                    mean(band.iter().map(|p| (p.0, f(p))).collect())
                };
                BandEffect {
                    group: g.clone(),
                    mean_of_median: pick(|p| p.1),
                    mean_q25: pick(|p| p.2),
                    mean_q75: pick(|p| p.3),
                    points: band.iter().filter(|p| p.0 - 0.5 * dt < window.1).count(),
                }
            })
            .collect()
    }

    /// The band effect of one group.
    pub fn band_effect(&self, group: &str) -> Option<BandEffect> {
        self.band_effects().into_iter().find(|e| e.group == group)
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

    /// Seeds whose stable branch reached its own threshold (t**) within the horizon.
    pub fn seeds_reaching_t2(&self) -> usize {
        self.seeds.iter().filter(|s| s.t_star2.is_some()).count()
    }

    /// The same runs with Δℓ recomputed from the logs under another measurement (every-step
    /// averages or sparse sampling), for comparing the two.
    pub fn remeasured(&self, how: Measurement) -> BranchResult {
        let mut out = self.clone();
        out.config.measurement = how;
        for s in &mut out.seeds {
            let names: Vec<String> = s.window_delta.keys().cloned().collect();
            let grid = Grid {
                t_star: s.t_star,
                dt: s.dt,
                window: s.window,
            };
            let c = compare::compare(&s.log, s.seed, &names, grid, how);
            s.delta = c.delta;
            s.window_delta = c.window_delta;
        }
        out
    }

    /// Mean of a metric over one branch's measurements inside seed index `i`'s window (both
    /// steps of every measured pair count, so this is also the mean of the pair means).
    pub fn window_mean(&self, i: usize, branch: &str, group: &str, metric: &str) -> f64 {
        let s = &self.seeds[i];
        let v: Vec<(f64, f64)> = s.log.series(branch, s.seed, group, metric);
        compare::window_mean(&v, s.window)
    }

    /// All seeds' logs in one.
    pub fn log(&self) -> RunLog {
        let mut log = RunLog::new("branch");
        for s in &self.seeds {
            log.rows.extend(s.log.rows.iter().cloned());
        }
        log
    }

    /// Write every seed's metrics (Parquet + CSV) into `dir`; the summary table and the
    /// figures are the report's ([`crate::report::write`]).
    pub fn write_metrics(&self, dir: &Path) -> Result<()> {
        self.log().write(dir, "metrics")
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

    /// Check that the result has the group `g` (an error naming the groups it has otherwise).
    pub fn require_group(&self, g: &str) -> Result<()> {
        if self.groups.iter().any(|x| x == g) {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "no group {g:?} in this result (groups: {})",
                self.groups.join(", ")
            )))
        }
    }
}
