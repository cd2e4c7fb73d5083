//! Claims `tradeoff` and `tradeoff-enter`: the edge of stability helps some groups and hurts
//! others (DESIGN §1), measured on one branching result, decided by [`TradeoffCriterion`].
use super::common::{
    agreement, band, band_note, list, paper_effects, seeds_line, show, window_note,
};
use crate::branch::{BandEffect, BranchResult, DECIDED_FRACTION, GroupEffect};
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// The pre-registered criterion: with at least `min_seeds` seeds, some paper group has median
/// Δℓ < 0 and some has median Δℓ > 0, each with that sign in at least `sign_fraction` of the
/// seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeoffCriterion {
    /// Fewest seeds the claim is decided on.
    pub min_seeds: usize,
    /// Fraction of seeds that must share the sign of a group's median Δℓ.
    pub sign_fraction: f64,
}

impl Default for TradeoffCriterion {
    fn default() -> Self {
        TradeoffCriterion {
            min_seeds: 5,
            sign_fraction: DECIDED_FRACTION,
        }
    }
}

impl std::fmt::Display for TradeoffCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over >= {} seeds, some group has median Δℓ < 0 and some group median Δℓ > 0, each \
             with that sign in >= {:.0}% of seeds",
            self.min_seeds,
            100.0 * self.sign_fraction
        )
    }
}

/// What the criterion reads off a branching result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeoffMeasured {
    /// Seeds run.
    pub seeds: usize,
    /// `exit` or `enter`.
    pub design: String,
    /// The paper groups' per-seed effects.
    pub effects: Vec<GroupEffect>,
    /// Each of `effects`' band statistic, in the same order.
    pub bands: Vec<f64>,
    /// Every group's band effect (for the JSON numbers).
    pub band_effects: Vec<BandEffect>,
    /// Δℓ_k − Δℓ_train per group (for the JSON numbers).
    pub relative: Vec<GroupEffect>,
    /// Median window length t** − t*.
    pub median_window: f64,
    /// Seeds whose stable branch reached t**.
    pub seeds_reaching_t2: usize,
    /// `[info]` lines on the window and the band statistic.
    pub context: Vec<String>,
}

impl TradeoffMeasured {
    /// Read the criterion's numbers off `r`.
    pub fn of(r: &BranchResult) -> TradeoffMeasured {
        let effects = paper_effects(r);
        TradeoffMeasured {
            seeds: r.seeds.len(),
            design: r.config.design.name().into(),
            bands: effects.iter().map(|e| band(r, &e.group)).collect(),
            effects,
            band_effects: r.band_effects(),
            relative: r.relative_effects(),
            median_window: r.median_window(),
            seeds_reaching_t2: r.seeds_reaching_t2(),
            context: vec![window_note("", r), band_note("", r)],
        }
    }
}

impl TradeoffCriterion {
    /// The verdict of claim `name` (`tradeoff` or `tradeoff-enter`) on measured numbers.
    pub fn decide(&self, name: &str, m: &TradeoffMeasured) -> Verdict {
        let mut v = Verdict::new(name);
        v.check(
            m.seeds >= self.min_seeds,
            seeds_line("", m.seeds, self.min_seeds),
        );
        v.note(format!("design: {}", m.design));
        let with = |reading: &str| -> Vec<&GroupEffect> {
            m.effects
                .iter()
                .filter(|e| e.reading_at(self.sign_fraction) == reading)
                .collect()
        };
        let (helped, hurt) = (with("EoS helps"), with("EoS hurts"));
        v.check(
            !helped.is_empty(),
            format!("a group EoS helps: {}", list(&helped)),
        );
        v.check(
            !hurt.is_empty(),
            format!("a group EoS hurts: {}", list(&hurt)),
        );
        for e in &m.effects {
            v.note(format!("measured: {}", show(e)));
        }
        for line in &m.context {
            v.note(line.clone());
        }
        let band_holds = m.bands.iter().any(|b| *b < 0.0) && m.bands.iter().any(|b| *b > 0.0);
        v.note(agreement(
            "a group helped and a group hurt",
            !helped.is_empty() && !hurt.is_empty(),
            band_holds,
        ));
        v.numbers = serde_json::json!({
            "effects": m.effects, "band": m.band_effects, "median_window": m.median_window,
            "seeds_reaching_t2": m.seeds_reaching_t2, "relative_to_train": m.relative,
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(groups: &[(&str, &[f64])]) -> TradeoffMeasured {
        TradeoffMeasured {
            seeds: groups[0].1.len(),
            design: "exit".into(),
            effects: groups
                .iter()
                .map(|(g, v)| GroupEffect::new(g, v.to_vec()))
                .collect(),
            bands: vec![-1.0, 1.0],
            band_effects: Vec::new(),
            relative: Vec::new(),
            median_window: 1.0,
            seeds_reaching_t2: groups[0].1.len(),
            context: Vec::new(),
        }
    }

    #[test]
    fn holds_with_a_group_helped_and_a_group_hurt() {
        let m = measured(&[
            ("a", &[-1.0, -2.0, -1.0, -3.0, 0.5]),
            ("b", &[1.0, 2.0, 1.0, 3.0, 1.0]),
        ]);
        let v = TradeoffCriterion::default().decide("tradeoff", &m);
        assert!(v.holds(), "{v}");
    }

    #[test]
    fn fails_on_each_condition() {
        let c = TradeoffCriterion::default();
        // Only 4 of 5 seeds are needed to share a sign; 3 of 5 is mixed.
        let mixed = measured(&[
            ("a", &[-1.0, -2.0, 1.0, -3.0, 0.5]),
            ("b", &[1.0, 2.0, 1.0, 3.0, 1.0]),
        ]);
        let v = c.decide("tradeoff", &mixed);
        assert!(!v.holds() && !v.checks[1].pass && v.checks[2].pass, "{v}");
        let no_hurt = measured(&[("a", &[-1.0; 5]), ("b", &[-1.0; 5])]);
        assert!(!c.decide("tradeoff", &no_hurt).checks[2].pass);
        let few = measured(&[("a", &[-1.0; 4]), ("b", &[1.0; 4])]);
        let v = c.decide("tradeoff", &few);
        assert!(
            !v.checks[0].pass && v.checks[1].pass && v.checks[2].pass,
            "{v}"
        );
        // A looser sign fraction decides the mixed group.
        let loose = TradeoffCriterion {
            sign_fraction: 0.6,
            ..c
        };
        assert!(loose.decide("tradeoff", &mixed).holds());
    }
}
