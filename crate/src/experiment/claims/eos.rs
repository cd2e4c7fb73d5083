//! Claim `eos`: progressive sharpening and the edge of stability — λ_max rises to 2/η and
//! hovers there, for several step sizes, while the loss keeps decreasing.
use crate::eos::EosResult;
use crate::stats::median;
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// The pre-registered criterion: at least `min_lrs` step sizes and `min_seeds` seeds; for each
/// step size every seed reaches 2/η, the median across seeds of the per-seed median post-t*
/// λ_max/(2/η) lies in `ratio_band`, and the median final loss is below the median loss at t*.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EosCriterion {
    /// Fewest step sizes.
    pub min_lrs: usize,
    /// Fewest seeds per step size.
    pub min_seeds: usize,
    /// Closed interval the median post-t* λ_max/(2/η) must lie in.
    pub ratio_band: (f64, f64),
}

impl Default for EosCriterion {
    fn default() -> Self {
        EosCriterion {
            min_lrs: 2,
            min_seeds: 5,
            ratio_band: (0.9, 1.1),
        }
    }
}

impl std::fmt::Display for EosCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "for each of >= {} step sizes over >= {} seeds: λ_max reaches 2/η in every seed; \
             the median across seeds of each seed's median post-t* λ_max/(2/η) is within \
             {:.2}..{:.2}; the median final loss is below the median loss at t*",
            self.min_lrs, self.min_seeds, self.ratio_band.0, self.ratio_band.1
        )
    }
}

/// One step size's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrMeasured {
    /// Step size η.
    pub lr: f64,
    /// Seeds run at it.
    pub seeds: usize,
    /// Seeds whose λ_max reached 2/η.
    pub seeds_reached: usize,
    /// Each seed's median post-t* λ_max/(2/η).
    pub post_ratios: Vec<f64>,
    /// t* of the seeds that reached it.
    pub t_stars: Vec<f64>,
    /// Median loss at t*.
    pub loss_at_t_star: f64,
    /// Median final loss.
    pub final_loss: f64,
}

/// What the criterion reads off the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EosMeasured {
    /// Training examples.
    pub n_train: usize,
    /// Step sizes configured.
    pub lrs: usize,
    /// Seeds configured.
    pub seeds: usize,
    /// Per step size, in the configuration's order.
    pub per_lr: Vec<LrMeasured>,
}

impl EosMeasured {
    /// Read the criterion's numbers off `r`.
    pub fn of(r: &EosResult) -> EosMeasured {
        let per_lr = r
            .config
            .lrs
            .iter()
            .map(|&lr| {
                let runs: Vec<_> = r.runs.iter().filter(|s| s.lr == lr).collect();
                let med = |f: &dyn Fn(&crate::eos::SeedRun) -> f64| {
                    median(&runs.iter().map(|s| f(s)).collect::<Vec<_>>())
                };
                LrMeasured {
                    lr,
                    seeds: runs.len(),
                    seeds_reached: runs.iter().filter(|s| s.entry.is_some()).count(),
                    post_ratios: runs.iter().map(|s| s.post_entry_ratio()).collect(),
                    t_stars: runs
                        .iter()
                        .filter_map(|s| s.entry.map(|e| e.t_star))
                        .collect(),
                    loss_at_t_star: med(&|s| s.loss_at_entry()),
                    final_loss: med(&|s| s.final_loss()),
                }
            })
            .collect();
        EosMeasured {
            n_train: r.n_train,
            lrs: r.config.lrs.len(),
            seeds: r.config.seeds.len(),
            per_lr,
        }
    }
}

impl EosCriterion {
    /// The verdict of claim `eos` on measured numbers.
    pub fn decide(&self, m: &EosMeasured) -> Verdict {
        let mut v = Verdict::new("eos");
        v.check(
            m.lrs >= self.min_lrs,
            format!("{} step sizes (need >= {})", m.lrs, self.min_lrs),
        );
        v.check(
            m.seeds >= self.min_seeds,
            format!("{} seeds (need >= {})", m.seeds, self.min_seeds),
        );
        let (lo, hi) = self.ratio_band;
        let mut numbers = Vec::new();
        for l in &m.per_lr {
            let (lr, ratio) = (l.lr, median(&l.post_ratios));
            let (l_entry, l_final) = (l.loss_at_t_star, l.final_loss);
            v.check(
                l.seeds_reached == l.seeds,
                format!(
                    "η = {lr}: λ_max reached 2/η = {:.2} in {}/{} seeds",
                    2.0 / lr,
                    l.seeds_reached,
                    l.seeds
                ),
            );
            v.check(
                (lo..=hi).contains(&ratio),
                format!(
                    "η = {lr}: median post-t* λ_max / (2/η) = {ratio:.3} (need {lo:.2}..{hi:.2})"
                ),
            );
            v.check(
                l_final < l_entry,
                format!(
                    "η = {lr}: median loss at t* {l_entry:.4e} -> final {l_final:.4e} (must \
                     decrease)"
                ),
            );
            numbers.push(serde_json::json!({
                "lr": lr, "threshold": 2.0 / lr, "seeds_reached": l.seeds_reached,
                "seeds": l.seeds, "median_t_star": median(&l.t_stars),
                "median_post_ratio": ratio, "per_seed_post_ratio": l.post_ratios,
                "median_loss_at_t_star": l_entry, "median_final_loss": l_final,
            }));
        }
        v.numbers = serde_json::json!({ "n_train": m.n_train, "per_lr": numbers });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(lr: f64, reached: usize, ratio: f64, losses: (f64, f64)) -> LrMeasured {
        LrMeasured {
            lr,
            seeds: 5,
            seeds_reached: reached,
            post_ratios: vec![ratio; 5],
            t_stars: vec![1.0; reached],
            loss_at_t_star: losses.0,
            final_loss: losses.1,
        }
    }

    fn measured(per_lr: Vec<LrMeasured>) -> EosMeasured {
        EosMeasured {
            n_train: 100,
            lrs: per_lr.len(),
            seeds: 5,
            per_lr,
        }
    }

    #[test]
    fn holds_and_fails_on_each_condition() {
        let c = EosCriterion::default();
        let failing = |m: &EosMeasured| -> Vec<usize> {
            let v = c.decide(m);
            (0..v.checks.len()).filter(|&i| !v.checks[i].pass).collect()
        };
        let good = lr(0.02, 5, 1.03, (0.5, 0.1));
        assert!(failing(&measured(vec![good.clone(), good.clone()])).is_empty());
        // Checks: 0 step sizes, 1 seeds, then (reached, ratio, loss) per step size.
        assert_eq!(failing(&measured(vec![good.clone()])), vec![0]);
        let missed = lr(0.01, 4, 1.03, (0.5, 0.1));
        assert_eq!(failing(&measured(vec![good.clone(), missed])), vec![5]);
        let above = lr(0.01, 5, 1.2, (0.5, 0.1));
        assert_eq!(failing(&measured(vec![good.clone(), above])), vec![6]);
        let stuck = lr(0.01, 5, 1.0, (0.5, 0.6));
        assert_eq!(failing(&measured(vec![good, stuck])), vec![7]);
    }
}
