//! Claim `tradeoff-consistent`: the exit and the enter design read each group alike: every
//! group decided in one design has the same sign of median Δℓ in the other.
use super::common::{band, band_note, paper_effects, seeds_line, show};
use crate::branch::{BandEffect, BranchResult, DECIDED_FRACTION, GroupEffect};
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// The pre-registered criterion: both designs have at least `min_seeds` seeds; every group
/// whose median Δℓ has one sign in at least `sign_fraction` of the seeds of one design has the
/// same sign in the other design's median; at least one group is decided in one of them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsistentCriterion {
    /// Fewest seeds of each design.
    pub min_seeds: usize,
    /// Fraction of seeds that decides a group's sign.
    pub sign_fraction: f64,
}

impl Default for ConsistentCriterion {
    fn default() -> Self {
        ConsistentCriterion {
            min_seeds: 5,
            sign_fraction: DECIDED_FRACTION,
        }
    }
}

impl std::fmt::Display for ConsistentCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "both designs over >= {} seeds; every group whose median Δℓ has one sign in >= \
             {:.0}% of seeds in one design has that sign in the other design's median; at \
             least one group decided",
            self.min_seeds,
            100.0 * self.sign_fraction
        )
    }
}

/// One design's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesignMeasured {
    /// Seeds run.
    pub seeds: usize,
    /// The paper groups' per-seed effects.
    pub effects: Vec<GroupEffect>,
    /// Each of `effects`' band statistic, in the same order.
    pub bands: Vec<f64>,
    /// Every group's band effect (for the JSON numbers).
    pub band_effects: Vec<BandEffect>,
    /// The `[info]` line of its band statistic.
    pub band_line: String,
}

impl DesignMeasured {
    /// Read one design's numbers off `r` (`label` prefixes its band line).
    pub fn of(label: &str, r: &BranchResult) -> DesignMeasured {
        let effects = paper_effects(r);
        DesignMeasured {
            seeds: r.seeds.len(),
            bands: effects.iter().map(|e| band(r, &e.group)).collect(),
            effects,
            band_effects: r.band_effects(),
            band_line: band_note(label, r),
        }
    }

    fn median(&self, group: &str) -> f64 {
        self.effects
            .iter()
            .find(|e| e.group == group)
            .map(|e| e.median)
            .unwrap_or(f64::NAN)
    }

    fn band(&self, group: &str) -> f64 {
        self.effects
            .iter()
            .position(|e| e.group == group)
            .map(|i| self.bands[i])
            .unwrap_or(f64::NAN)
    }
}

/// What the criterion reads off the two designs' results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsistentMeasured {
    /// The exit design.
    pub exit: DesignMeasured,
    /// The enter design.
    pub enter: DesignMeasured,
}

impl ConsistentMeasured {
    /// Read the numbers off the exit and the enter result.
    pub fn of(exit: &BranchResult, enter: &BranchResult) -> ConsistentMeasured {
        ConsistentMeasured {
            exit: DesignMeasured::of("exit design ", exit),
            enter: DesignMeasured::of("enter design ", enter),
        }
    }
}

fn has_sign(x: f64, sign: f64) -> bool {
    (sign < 0.0 && x < 0.0) || (sign > 0.0 && x > 0.0)
}

impl ConsistentCriterion {
    /// A group's decided sign in one design: −1 or +1, or `None` when mixed.
    fn decided_sign(&self, e: &GroupEffect) -> Option<f64> {
        match e.reading_at(self.sign_fraction) {
            "EoS helps" => Some(-1.0),
            "EoS hurts" => Some(1.0),
            _ => None,
        }
    }

    /// The verdict of claim `tradeoff-consistent` on measured numbers.
    pub fn decide(&self, m: &ConsistentMeasured) -> Verdict {
        let mut v = Verdict::new("tradeoff-consistent");
        for (label, d) in [("exit", &m.exit), ("enter", &m.enter)] {
            v.check(
                d.seeds >= self.min_seeds,
                seeds_line(&format!("{label} design: "), d.seeds, self.min_seeds),
            );
        }
        let (mut decided, mut band_agrees) = (0, true);
        let sides = [
            ("exit", "enter", &m.exit, &m.enter),
            ("enter", "exit", &m.enter, &m.exit),
        ];
        for (from, other, mine, theirs) in sides {
            for e in &mine.effects {
                let Some(sign) = self.decided_sign(e) else {
                    continue;
                };
                decided += 1;
                let med = theirs.median(&e.group);
                let frac = if sign < 0.0 {
                    e.frac_negative
                } else {
                    e.frac_positive
                };
                v.check(
                    has_sign(med, sign),
                    format!(
                        "{} in the {from} design: {} ({:.0}% of seeds); {other} design median \
                         {med:+.3e}",
                        e.group,
                        e.reading_at(self.sign_fraction),
                        100.0 * frac,
                    ),
                );
                band_agrees &=
                    has_sign(mine.band(&e.group), sign) && has_sign(theirs.band(&e.group), sign);
            }
        }
        v.check(
            decided > 0,
            format!(
                "{decided} decided group readings (one sign in >= {:.0}% of seeds) over both \
                 designs (need >= 1)",
                100.0 * self.sign_fraction
            ),
        );
        for (label, d) in [("exit", &m.exit), ("enter", &m.enter)] {
            for e in &d.effects {
                v.note(format!("{label} design: {}", show(e)));
            }
        }
        v.note(m.exit.band_line.clone());
        v.note(m.enter.band_line.clone());
        let holds = v.holds();
        v.note(super::common::agreement(
            "every decided sign shared by the other design",
            holds,
            decided > 0 && band_agrees,
        ));
        v.numbers = serde_json::json!({
            "exit": m.exit.effects, "enter": m.enter.effects, "decided": decided,
            "exit_band": m.exit.band_effects, "enter_band": m.enter.band_effects,
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(groups: &[(&str, &[f64])]) -> DesignMeasured {
        DesignMeasured {
            seeds: groups[0].1.len(),
            effects: groups
                .iter()
                .map(|(g, v)| GroupEffect::new(g, v.to_vec()))
                .collect(),
            bands: groups.iter().map(|(_, v)| v[0]).collect(),
            band_effects: Vec::new(),
            band_line: String::new(),
        }
    }

    #[test]
    fn holds_when_the_decided_signs_agree_and_fails_otherwise() {
        let c = ConsistentCriterion::default();
        let exit = design(&[("a", &[-1.0; 5]), ("b", &[1.0, -1.0, 1.0, -1.0, 1.0])]);
        let agree = design(&[("a", &[-2.0; 5]), ("b", &[0.5; 5])]);
        let m = ConsistentMeasured {
            exit: exit.clone(),
            enter: agree,
        };
        assert!(c.decide(&m).holds(), "{}", c.decide(&m));
        // b is decided (hurt) in the enter design but its exit median is > 0: still agrees;
        // flipping the enter design's a to > 0 breaks the claim.
        let disagree = design(&[("a", &[2.0; 5]), ("b", &[0.5; 5])]);
        let v = c.decide(&ConsistentMeasured {
            exit: exit.clone(),
            enter: disagree,
        });
        assert!(!v.holds(), "{v}");
        // Nothing decided anywhere: nothing to compare.
        let mixed = design(&[("a", &[1.0, -1.0, 1.0, -1.0, 1.0])]);
        let v = c.decide(&ConsistentMeasured {
            exit: mixed.clone(),
            enter: mixed,
        });
        assert!(!v.holds() && !v.checks.last().unwrap().pass, "{v}");
        // Too few seeds in one design.
        let few = design(&[("a", &[-1.0; 4]), ("b", &[0.5; 4])]);
        let v = c.decide(&ConsistentMeasured { exit, enter: few });
        assert!(!v.checks[1].pass, "{v}");
    }
}
