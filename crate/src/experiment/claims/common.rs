//! What the branching criteria share: reading window and band statistics off a result, and the
//! `[info]` lines every verdict prints beside its checks.
//!
//! Every criterion is decided on the per-seed window statistic (each seed's Δℓ averaged over
//! its own window [t*, t**], then across seeds). Beside it each verdict prints the band
//! statistic the authors plot (the median across seeds at each grid point, averaged up to the
//! median t** − t*) with the same reading applied, and says whether the two agree; and it says
//! in how many seeds t** was reached within the horizon. Gradient metrics measured at two
//! consecutive steps are read as the mean of the pair.
use crate::branch::{BranchResult, GroupEffect, compare};
use crate::stats::median;

/// Mean of a metric over one branch's measurements inside seed index `i`'s window (both
/// steps of every measured pair count, so this is also the mean of the pair means).
pub fn window_mean(r: &BranchResult, i: usize, branch: &str, group: &str, metric: &str) -> f64 {
    r.window_mean(i, branch, group, metric)
}

/// Mean of the measured pair nearest effective time `t` of a metric on one branch.
pub fn pair_value_near(
    r: &BranchResult,
    i: usize,
    branch: &str,
    group: &str,
    metric: &str,
    t: f64,
) -> f64 {
    let s = &r.seeds[i];
    compare::pair_means(&s.log.series_steps(branch, s.seed, group, metric))
        .into_iter()
        .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
        .map(|p| p.1)
        .unwrap_or(f64::NAN)
}

/// Median over seeds of a metric's window mean on the EoS branch.
pub fn median_window_mean(r: &BranchResult, group: &str, metric: &str) -> f64 {
    median(
        &(0..r.seeds.len())
            .map(|i| window_mean(r, i, "eos", group, metric))
            .collect::<Vec<_>>(),
    )
}

/// ‖g‖(t**)/‖g‖(t*) of `group` on the EoS branch of seed index `i` (pair means at the window's
/// ends).
pub fn grad_ratio_seed(r: &BranchResult, i: usize, group: &str) -> f64 {
    let (a, b) = r.seeds[i].window;
    pair_value_near(r, i, "eos", group, "grad_norm", b)
        / pair_value_near(r, i, "eos", group, "grad_norm", a)
}

/// Median over seeds of [`grad_ratio_seed`].
pub fn grad_ratio(r: &BranchResult, group: &str) -> f64 {
    median(
        &(0..r.seeds.len())
            .map(|i| grad_ratio_seed(r, i, group))
            .collect::<Vec<_>>(),
    )
}

/// The `[info]` line on the window: t** reached in how many seeds, the median window length.
pub fn window_note(label: &str, r: &BranchResult) -> String {
    let (k, n) = (r.seeds_reaching_t2(), r.seeds.len());
    let mut line = format!(
        "{label}window: t** reached in {k}/{n} seeds, median t** − t* = {:.2} (t_eff)",
        r.median_window()
    );
    if k < n {
        line.push_str(&format!(
            "; in {} seeds the stable branch did not reach its threshold within the horizon \
             of {} and the window ends there",
            n - k,
            r.config.horizon
        ));
    }
    line
}

/// The band statistic of `group` (NaN if absent).
pub fn band(r: &BranchResult, group: &str) -> f64 {
    r.band_effect(group)
        .map(|b| b.mean_of_median)
        .unwrap_or(f64::NAN)
}

/// The `[info]` line with every paper group's band statistic.
pub fn band_note(label: &str, r: &BranchResult) -> String {
    let parts: Vec<String> = r
        .paper_groups()
        .iter()
        .map(|g| format!("{g} {:+.3e}", band(r, g)))
        .collect();
    format!(
        "{label}band statistic (median over seeds at each grid point, mean up to t_eff − t* = \
         {:.2}): {}",
        r.median_window(),
        parts.join(", ")
    )
}

/// The `[info]` line saying whether the per-seed and the band statistic read `what` alike.
pub fn agreement(what: &str, per_seed: bool, band: bool) -> String {
    format!(
        "{what}: per-seed statistic {}, band statistic {} — {}",
        if per_seed { "yes" } else { "no" },
        if band { "yes" } else { "no" },
        if per_seed == band {
            "they agree"
        } else {
            "they DISAGREE"
        }
    )
}

/// A group's effect in one line: median Δℓ and the sign fractions.
pub fn show(e: &GroupEffect) -> String {
    format!(
        "{} (median Δℓ {:+.3e}, {:.0}% seeds < 0, {:.0}% > 0)",
        e.group,
        e.median,
        100.0 * e.frac_negative,
        100.0 * e.frac_positive
    )
}

/// Several groups' effects in one line (`none` when empty).
pub fn list(es: &[&GroupEffect]) -> String {
    if es.is_empty() {
        "none".into()
    } else {
        es.iter().map(|e| show(e)).collect::<Vec<_>>().join("; ")
    }
}

/// The paper groups' per-seed effects.
pub fn paper_effects(r: &BranchResult) -> Vec<GroupEffect> {
    r.effects()
        .into_iter()
        .filter(|e| r.paper_groups().contains(&e.group))
        .collect()
}

/// The check line of a seed count.
pub fn seeds_line(label: &str, n: usize, need: usize) -> String {
    format!("{label}{n} seeds (need >= {need})")
}
