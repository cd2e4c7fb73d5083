//! Claim `alignment`: a group gains from the edge of stability only if its aggregate gradient
//! aligns with the top Hessian eigenvector; a distance-preserving, direction-randomising
//! control of the same group removes the gain.
use super::common::{agreement, band, median_window_mean, seeds_line, window_note};
use crate::branch::{BranchResult, DECIDED_FRACTION, GroupEffect};
use crate::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// The coherent group and its random-direction control.
pub const GROUPS: (&str, &str) = ("input-outlier", "input-outlier-random");

/// The pre-registered criterion: with at least `min_seeds` seeds, the coherent input-outliers'
/// median window cos²(g, v_max) is at least `cos2_ratio` × the control's; their Δℓ < 0 in at
/// least `sign_fraction` of the seeds; and the control's |median Δℓ| is at most
/// `control_ratio` × the coherent group's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignmentCriterion {
    /// Fewest seeds the claim is decided on.
    pub min_seeds: usize,
    /// Least ratio of the coherent to the control's median window cos²(g, v_max).
    pub cos2_ratio: f64,
    /// Least fraction of seeds with coherent Δℓ < 0.
    pub sign_fraction: f64,
    /// Largest |median Δℓ| of the control relative to the coherent group's.
    pub control_ratio: f64,
}

impl Default for AlignmentCriterion {
    fn default() -> Self {
        AlignmentCriterion {
            min_seeds: 5,
            cos2_ratio: 5.0,
            sign_fraction: DECIDED_FRACTION,
            control_ratio: 0.25,
        }
    }
}

impl std::fmt::Display for AlignmentCriterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over >= {} seeds, coherent input-outliers' median window cos²(g, v_max) >= {}× the \
             random-direction control's; their Δℓ < 0 in >= {:.0}% of seeds; |median Δℓ| of \
             the control <= {:.0}% of theirs",
            self.min_seeds,
            self.cos2_ratio,
            100.0 * self.sign_fraction,
            100.0 * self.control_ratio
        )
    }
}

/// What the criterion reads off the coherent and the control result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignmentMeasured {
    /// Seeds of the coherent run.
    pub seeds: usize,
    /// Median window cos²(g, v_max): coherent, control.
    pub cos2: (f64, f64),
    /// The same with each group's own top eigenvector (not a criterion).
    pub cos2_own: (f64, f64),
    /// Per-seed effects: coherent, control.
    pub coherent: Option<GroupEffect>,
    /// See `coherent`.
    pub random: Option<GroupEffect>,
    /// Band statistics: coherent, control.
    pub band: (f64, f64),
    /// `[info]` lines on the two windows.
    pub context: Vec<String>,
}

impl AlignmentMeasured {
    /// Read the criterion's numbers off the two results.
    pub fn of(coherent: &BranchResult, random: &BranchResult) -> AlignmentMeasured {
        let (gc, gr) = GROUPS;
        AlignmentMeasured {
            seeds: coherent.seeds.len(),
            cos2: (
                median_window_mean(coherent, gc, "cos2_vmax"),
                median_window_mean(random, gr, "cos2_vmax"),
            ),
            // The second reading of alignment: with the group's own top eigenvector (what the
            // authors' measurement code logs as `grad_vmax_cos2`).
            cos2_own: (
                median_window_mean(coherent, gc, "cos2_own"),
                median_window_mean(random, gr, "cos2_own"),
            ),
            coherent: coherent.effect(gc),
            random: random.effect(gr),
            band: (band(coherent, gc), band(random, gr)),
            context: vec![
                window_note("coherent ", coherent),
                window_note("random ", random),
            ],
        }
    }
}

impl AlignmentCriterion {
    /// The verdict of claim `alignment` on measured numbers.
    pub fn decide(&self, m: &AlignmentMeasured) -> Verdict {
        let mut v = Verdict::new("alignment");
        v.check(
            m.seeds >= self.min_seeds,
            seeds_line("", m.seeds, self.min_seeds),
        );
        let (cos_c, cos_r) = m.cos2;
        let (dc, fneg) = m
            .coherent
            .as_ref()
            .map(|e| (e.median, e.frac_negative))
            .unwrap_or((f64::NAN, 0.0));
        let dr = m.random.as_ref().map(|e| e.median).unwrap_or(f64::NAN);
        v.check(
            cos_c >= self.cos2_ratio * cos_r,
            format!(
                "median window cos²(g, v_max): coherent {cos_c:.3e} vs random {cos_r:.3e} \
                 (ratio {:.1}, need >= {})",
                cos_c / cos_r,
                self.cos2_ratio
            ),
        );
        v.check(
            fneg >= self.sign_fraction,
            format!(
                "coherent input-outliers Δℓ < 0 in {:.0}% of seeds (need >= {:.0}%), median \
                 {dc:+.3e}",
                100.0 * fneg,
                100.0 * self.sign_fraction
            ),
        );
        let controlled = dr.abs() <= self.control_ratio * dc.abs();
        v.check(
            controlled,
            format!(
                "|median Δℓ| random {:.3e} vs coherent {:.3e} (ratio {:.2}, need <= {})",
                dr.abs(),
                dc.abs(),
                dr.abs() / dc.abs(),
                self.control_ratio
            ),
        );
        let (own_c, own_r) = m.cos2_own;
        v.note(format!(
            "own-eigenvector reading, median window cos²(g_k, v_max of the group's own loss): \
             coherent {own_c:.3e} vs random {own_r:.3e} (ratio {:.1})",
            own_c / own_r
        ));
        for line in &m.context {
            v.note(line.clone());
        }
        let (bc, br) = m.band;
        v.note(format!(
            "band statistic: coherent {bc:+.3e}, random {br:+.3e} (ratio of magnitudes {:.2})",
            br.abs() / bc.abs()
        ));
        v.note(agreement(
            &format!(
                "coherent input-outliers helped, control's effect ≤ {:.0}% of theirs",
                100.0 * self.control_ratio
            ),
            fneg >= self.sign_fraction && dc < 0.0 && controlled,
            bc < 0.0 && br.abs() <= self.control_ratio * bc.abs(),
        ));
        v.numbers = serde_json::json!({
            "cos2_coherent": cos_c, "cos2_random": cos_r, "coherent": m.coherent,
            "random": m.random, "cos2_own_coherent": own_c, "cos2_own_random": own_r,
            "band_coherent": bc, "band_random": br,
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(cos2: (f64, f64), coherent: &[f64], random: &[f64]) -> AlignmentMeasured {
        AlignmentMeasured {
            seeds: coherent.len(),
            cos2,
            cos2_own: cos2,
            coherent: Some(GroupEffect::new(GROUPS.0, coherent.to_vec())),
            random: Some(GroupEffect::new(GROUPS.1, random.to_vec())),
            band: (-1.0, 0.1),
            context: Vec::new(),
        }
    }

    #[test]
    fn holds_and_fails_on_each_condition() {
        let c = AlignmentCriterion::default();
        let helped = [-1.0, -1.2, -0.8, -1.1, -0.9];
        let small = [0.1, -0.1, 0.2, -0.2, 0.05];
        let good = measured((0.5, 0.05), &helped, &small);
        assert!(c.decide(&good).holds(), "{}", c.decide(&good));
        // Each condition in turn: check index 0 seeds, 1 cos² ratio, 2 sign, 3 control.
        let failing = |m: &AlignmentMeasured| -> Vec<usize> {
            let v = c.decide(m);
            (0..v.checks.len()).filter(|&i| !v.checks[i].pass).collect()
        };
        assert_eq!(failing(&measured((0.5, 0.2), &helped, &small)), vec![1]);
        let mixed = [-1.0, 1.0, -1.0, 1.0, -1.0];
        assert_eq!(failing(&measured((0.5, 0.05), &mixed, &[0.0; 5])), vec![2]);
        let gains_too = [-0.5, -0.5, -0.5, -0.5, -0.5];
        assert_eq!(
            failing(&measured((0.5, 0.05), &helped, &gains_too)),
            vec![3]
        );
        assert_eq!(
            failing(&measured((0.5, 0.05), &helped[..4], &small[..4])),
            vec![0]
        );
    }
}
