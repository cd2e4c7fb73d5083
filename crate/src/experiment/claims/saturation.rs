//! Claim `saturation`: a group gains only while its gradient does not vanish. Under
//! cross-entropy the confidently classified groups' gradients saturate and the gain moves to
//! the label-flipped output-outliers; under MSE it does not.
use super::common::window_note;
use super::common::{agreement, band, band_note, grad_ratio_seed, pair_value_near, seeds_line};
use crate::branch::{BranchResult, GroupEffect};
use crate::stats::median;
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// The label-flipped group.
pub const OUTLIER: &str = "output-outlier";

/// The pre-registered criterion: with at least `min_seeds` CE seeds, ‖g_k‖ of the groups
/// confidently classified at the fork (EoS-branch accuracy ≥ `confident_accuracy` at t*,
/// output-outliers excluded) falls to at most `confident_grad_ratio` × its value at t* by t**,
/// while the output-outliers' stays at least `outlier_grad_ratio` ×; output-outliers have the
/// most negative median Δℓ under CE, and not under MSE.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationCriterion {
    /// Fewest CE seeds the claim is decided on.
    pub min_seeds: usize,
    /// Accuracy at t* from which a group counts as confidently classified.
    pub confident_accuracy: f64,
    /// Largest median ‖g‖(t**)/‖g‖(t*) of the confident groups.
    pub confident_grad_ratio: f64,
    /// Least median ‖g‖(t**)/‖g‖(t*) of the output-outliers.
    pub outlier_grad_ratio: f64,
}

impl Default for SaturationCriterion {
    fn default() -> Self {
        SaturationCriterion {
            min_seeds: 5,
            confident_accuracy: 0.95,
            confident_grad_ratio: 0.1,
            outlier_grad_ratio: 0.3,
        }
    }
}

impl std::fmt::Display for SaturationCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over >= {} seeds, under CE ‖g_k‖ of the groups classified with accuracy >= {} at \
             t* falls to <= {}× its value at t* by t** while the output-outliers' stays >= \
             {}×; output-outliers have the most negative median Δℓ under CE, and not under MSE",
            self.min_seeds,
            self.confident_accuracy,
            self.confident_grad_ratio,
            self.outlier_grad_ratio
        )
    }
}

/// One group of one seed on the CE EoS branch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupGradient {
    /// Seed index.
    pub seed: usize,
    /// Group name.
    pub group: String,
    /// Accuracy at t* (mean of the measured pair nearest it).
    pub accuracy_at_fork: f64,
    /// ‖g‖(t**)/‖g‖(t*).
    pub grad_ratio: f64,
}

/// What the criterion reads off the CE and the MSE result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationMeasured {
    /// CE seeds.
    pub seeds: usize,
    /// Every paper group but the output-outliers, per CE seed (seeds in order).
    pub groups: Vec<GroupGradient>,
    /// Output-outliers' ‖g‖(t**)/‖g‖(t*) per CE seed.
    pub outlier_grad_ratios: Vec<f64>,
    /// Per-seed effects: CE, MSE.
    pub effects: (Vec<GroupEffect>, Vec<GroupEffect>),
    /// The paper group with the most negative median Δℓ and that median: CE, MSE.
    pub most_negative: ((String, f64), (String, f64)),
    /// The same under the band statistic: CE, MSE.
    pub most_negative_band: (String, String),
    /// Every group's band effect (for the JSON numbers): CE, MSE.
    pub band_effects: (serde_json::Value, serde_json::Value),
    /// `[info]` lines on the windows and the band statistics.
    pub context: Vec<String>,
}

/// The paper group with the most negative value of `stat` (per-seed or band).
fn most_negative(r: &BranchResult, stat: impl Fn(&str) -> f64) -> (String, f64) {
    r.paper_groups()
        .into_iter()
        .map(|g| {
            let d = stat(&g);
            (g, d)
        })
        .filter(|p| !p.1.is_nan())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(("none".into(), f64::NAN))
}

impl SaturationMeasured {
    /// Read the criterion's numbers off the two results.
    pub fn of(ce: &BranchResult, mse: &BranchResult) -> SaturationMeasured {
        let mut groups = Vec::new();
        for i in 0..ce.seeds.len() {
            let t0 = ce.seeds[i].t_star;
            for g in ce.paper_groups().into_iter().filter(|g| g != OUTLIER) {
                groups.push(GroupGradient {
                    seed: i,
                    accuracy_at_fork: pair_value_near(ce, i, "eos", &g, "accuracy", t0),
                    grad_ratio: grad_ratio_seed(ce, i, &g),
                    group: g,
                });
            }
        }
        let per_seed =
            |r: &BranchResult, g: &str| r.effect(g).map(|e| e.median).unwrap_or(f64::NAN);
        SaturationMeasured {
            seeds: ce.seeds.len(),
            groups,
            outlier_grad_ratios: (0..ce.seeds.len())
                .map(|i| grad_ratio_seed(ce, i, OUTLIER))
                .collect(),
            effects: (ce.effects(), mse.effects()),
            most_negative: (
                most_negative(ce, |g| per_seed(ce, g)),
                most_negative(mse, |g| per_seed(mse, g)),
            ),
            most_negative_band: (
                most_negative(ce, |g| band(ce, g)).0,
                most_negative(mse, |g| band(mse, g)).0,
            ),
            band_effects: (
                serde_json::json!(ce.band_effects()),
                serde_json::json!(mse.band_effects()),
            ),
            context: vec![
                window_note("CE ", ce),
                window_note("MSE ", mse),
                band_note("CE ", ce),
                band_note("MSE ", mse),
            ],
        }
    }
}

impl SaturationCriterion {
    /// The verdict of claim `saturation` on measured numbers.
    pub fn decide(&self, m: &SaturationMeasured) -> Verdict {
        let mut v = Verdict::new("saturation");
        v.check(
            m.seeds >= self.min_seeds,
            seeds_line("", m.seeds, self.min_seeds),
        );
        let confident: Vec<&GroupGradient> = m
            .groups
            .iter()
            .filter(|g| g.accuracy_at_fork >= self.confident_accuracy)
            .collect();
        let names: std::collections::BTreeSet<&str> =
            confident.iter().map(|g| g.group.as_str()).collect();
        let conf = median(&confident.iter().map(|g| g.grad_ratio).collect::<Vec<_>>());
        let oo = median(&m.outlier_grad_ratios);
        v.check(
            !confident.is_empty() && conf <= self.confident_grad_ratio,
            format!(
                "CE: confidently classified groups {names:?}: median ‖g‖(t**)/‖g‖(t*) = \
                 {conf:.3} (need <= {})",
                self.confident_grad_ratio
            ),
        );
        v.check(
            oo >= self.outlier_grad_ratio,
            format!(
                "CE: output-outliers median ‖g‖(t**)/‖g‖(t*) = {oo:.3} (need >= {})",
                self.outlier_grad_ratio
            ),
        );
        let ((ce_g, ce_d), (mse_g, mse_d)) = &m.most_negative;
        v.check(
            ce_g == OUTLIER,
            format!("CE: most negative median Δℓ is {ce_g} ({ce_d:+.3e}); need {OUTLIER}"),
        );
        v.check(
            mse_g != OUTLIER,
            format!("MSE: most negative median Δℓ is {mse_g} ({mse_d:+.3e}); need not {OUTLIER}"),
        );
        for line in &m.context {
            v.note(line.clone());
        }
        let (ce_b, mse_b) = &m.most_negative_band;
        v.note(agreement(
            "output-outliers gain most under CE and not under MSE",
            ce_g == OUTLIER && mse_g != OUTLIER,
            ce_b == OUTLIER && mse_b != OUTLIER,
        ));
        v.numbers = serde_json::json!({
            "ce_confident_grad_ratio": conf, "ce_output_outlier_grad_ratio": oo,
            "ce_effects": m.effects.0, "mse_effects": m.effects.1,
            "ce_band": m.band_effects.0, "mse_band": m.band_effects.1,
            "ce_most_negative": ce_g, "mse_most_negative": mse_g,
            "ce_most_negative_band": ce_b, "mse_most_negative_band": mse_b,
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five seeds; group `a` confident with gradient ratio `conf`, `b` never confident.
    fn measured(conf: f64, oo: f64, ce_most: &str, mse_most: &str) -> SaturationMeasured {
        let row = |seed, group: &str, accuracy_at_fork, grad_ratio| GroupGradient {
            seed,
            group: group.into(),
            accuracy_at_fork,
            grad_ratio,
        };
        SaturationMeasured {
            seeds: 5,
            groups: (0..5)
                .flat_map(|i| [row(i, "a", 0.99, conf), row(i, "b", 0.5, 1.0)])
                .collect(),
            outlier_grad_ratios: vec![oo; 5],
            effects: (Vec::new(), Vec::new()),
            most_negative: ((ce_most.into(), -1.0), (mse_most.into(), -1.0)),
            most_negative_band: (ce_most.into(), mse_most.into()),
            band_effects: (serde_json::Value::Null, serde_json::Value::Null),
            context: Vec::new(),
        }
    }

    #[test]
    fn holds_and_fails_on_each_condition() {
        let c = SaturationCriterion::default();
        let failing = |m: &SaturationMeasured| -> Vec<usize> {
            let v = c.decide(m);
            (0..v.checks.len()).filter(|&i| !v.checks[i].pass).collect()
        };
        // Only the confident group `a` enters the median (b's ratio 1.0 would fail it).
        assert!(failing(&measured(0.05, 0.8, OUTLIER, "a")).is_empty());
        assert_eq!(failing(&measured(0.2, 0.8, OUTLIER, "a")), vec![1]);
        assert_eq!(failing(&measured(0.05, 0.2, OUTLIER, "a")), vec![2]);
        assert_eq!(failing(&measured(0.05, 0.8, "a", "a")), vec![3]);
        assert_eq!(failing(&measured(0.05, 0.8, OUTLIER, OUTLIER)), vec![4]);
        // No confident group at all fails the gradient condition rather than passing it.
        let strict = SaturationCriterion {
            confident_accuracy: 1.0,
            ..c
        };
        assert!(!strict.decide(&measured(0.05, 0.8, OUTLIER, "a")).checks[1].pass);
    }
}
