//! The pre-registered criteria of the branching claims (DESIGN §1), evaluated on results.
//!
//! Every criterion is decided on the per-seed window statistic (each seed's Δℓ averaged over
//! its own window [t*, t**], then across seeds). Beside it each verdict prints the band
//! statistic the authors plot (the median across seeds at each grid point, averaged up to the
//! median t** − t*) with the same reading applied, and says whether the two agree; and it says
//! in how many seeds t** was reached within the horizon. Gradient metrics measured at two
//! consecutive steps are read as the mean of the pair.
use crate::branch::{BranchResult, GroupEffect, compare};
use crate::stats::median;
use crate::verdict::Verdict;

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

fn seeds_check(v: &mut Verdict, r: &BranchResult) {
    let n = r.seeds.len();
    v.check(n >= 5, format!("{n} seeds (need >= 5)"));
}

/// `[info]` lines on the window: t** reached in how many seeds, the median window length.
fn window_note(v: &mut Verdict, label: &str, r: &BranchResult) {
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
    v.note(line);
}

/// The band statistic of `group` (NaN if absent).
fn band(r: &BranchResult, group: &str) -> f64 {
    r.band_effect(group)
        .map(|b| b.mean_of_median)
        .unwrap_or(f64::NAN)
}

/// `[info]` line with every paper group's band statistic.
fn band_note(v: &mut Verdict, label: &str, r: &BranchResult) {
    let parts: Vec<String> = r
        .paper_groups()
        .iter()
        .map(|g| format!("{g} {:+.3e}", band(r, g)))
        .collect();
    v.note(format!(
        "{label}band statistic (median over seeds at each grid point, mean up to t_eff − t* = \
         {:.2}): {}",
        r.median_window(),
        parts.join(", ")
    ));
}

fn agreement(v: &mut Verdict, what: &str, per_seed: bool, band: bool) {
    v.note(format!(
        "{what}: per-seed statistic {}, band statistic {} — {}",
        if per_seed { "yes" } else { "no" },
        if band { "yes" } else { "no" },
        if per_seed == band {
            "they agree"
        } else {
            "they DISAGREE"
        }
    ));
}

fn show(e: &GroupEffect) -> String {
    format!(
        "{} (median Δℓ {:+.3e}, {:.0}% seeds < 0, {:.0}% > 0)",
        e.group,
        e.median,
        100.0 * e.frac_negative,
        100.0 * e.frac_positive
    )
}

fn list(es: &[&GroupEffect]) -> String {
    if es.is_empty() {
        "none".into()
    } else {
        es.iter().map(|e| show(e)).collect::<Vec<_>>().join("; ")
    }
}

/// The paper groups' per-seed effects.
fn paper_effects(r: &BranchResult) -> Vec<GroupEffect> {
    r.effects()
        .into_iter()
        .filter(|e| r.paper_groups().contains(&e.group))
        .collect()
}

/// Claim `tradeoff`: some group has median Δℓ < 0 and some group median Δℓ > 0, each with that
/// sign in ≥ 80% of seeds (exit design).
pub fn tradeoff(r: &BranchResult) -> Verdict {
    tradeoff_named("tradeoff", r)
}

/// Claim `tradeoff-enter`: the criterion of [`tradeoff`] on the enter design's branches (Δℓ =
/// ℓ of the branch that enters the EoS − ℓ of the branch that stays stable).
pub fn tradeoff_enter(r: &BranchResult) -> Verdict {
    tradeoff_named("tradeoff-enter", r)
}

/// The trade-off criterion under the claim name `name`.
fn tradeoff_named(name: &str, r: &BranchResult) -> Verdict {
    let mut v = Verdict::new(name);
    seeds_check(&mut v, r);
    v.note(format!("design: {}", r.config.design.name()));
    let effects = paper_effects(r);
    let helped: Vec<_> = effects
        .iter()
        .filter(|e| e.reading() == "EoS helps")
        .collect();
    let hurt: Vec<_> = effects
        .iter()
        .filter(|e| e.reading() == "EoS hurts")
        .collect();
    v.check(
        !helped.is_empty(),
        format!("a group EoS helps: {}", list(&helped)),
    );
    v.check(
        !hurt.is_empty(),
        format!("a group EoS hurts: {}", list(&hurt)),
    );
    for e in &effects {
        v.note(format!("measured: {}", show(e)));
    }
    window_note(&mut v, "", r);
    band_note(&mut v, "", r);
    let bands: Vec<f64> = effects.iter().map(|e| band(r, &e.group)).collect();
    let band_holds = bands.iter().any(|b| *b < 0.0) && bands.iter().any(|b| *b > 0.0);
    agreement(
        &mut v,
        "a group helped and a group hurt",
        !helped.is_empty() && !hurt.is_empty(),
        band_holds,
    );
    v.numbers = serde_json::json!({
        "effects": effects, "band": r.band_effects(), "median_window": r.median_window(),
        "seeds_reaching_t2": r.seeds_reaching_t2(), "relative_to_train": r.relative_effects(),
    });
    v
}

/// A group's decided sign in one design: −1 or +1 when its median Δℓ has that sign in ≥ 80%
/// of seeds (its reading is "EoS helps" or "EoS hurts"), else `None`.
fn decided_sign(e: &GroupEffect) -> Option<f64> {
    match e.reading() {
        "EoS helps" => Some(-1.0),
        "EoS hurts" => Some(1.0),
        _ => None,
    }
}

fn has_sign(x: f64, sign: f64) -> bool {
    (sign < 0.0 && x < 0.0) || (sign > 0.0 && x > 0.0)
}

/// Claim `tradeoff-consistent`: every group whose median Δℓ has a sign in ≥ 80% of seeds in
/// one design (exit or enter) has the same sign in the other design's median; at least one
/// group must be decided in one of the designs, or there is nothing to compare.
pub fn tradeoff_consistent(exit: &BranchResult, enter: &BranchResult) -> Verdict {
    let mut v = Verdict::new("tradeoff-consistent");
    for (label, r) in [("exit", exit), ("enter", enter)] {
        let n = r.seeds.len();
        v.check(n >= 5, format!("{label} design: {n} seeds (need >= 5)"));
    }
    let (ex, en) = (paper_effects(exit), paper_effects(enter));
    let median_of = |es: &[GroupEffect], g: &str| {
        es.iter()
            .find(|e| e.group == g)
            .map(|e| e.median)
            .unwrap_or(f64::NAN)
    };
    let (mut decided, mut band_agrees) = (0, true);
    let sides = [
        ("exit", "enter", &ex, &en, exit, enter),
        ("enter", "exit", &en, &ex, enter, exit),
    ];
    for (from, other, mine, theirs, r_mine, r_theirs) in sides {
        for e in mine.iter() {
            let Some(sign) = decided_sign(e) else {
                continue;
            };
            decided += 1;
            let m = median_of(theirs, &e.group);
            v.check(
                has_sign(m, sign),
                format!(
                    "{} in the {from} design: {} ({:.0}% of seeds); {other} design median \
                     {m:+.3e}",
                    e.group,
                    e.reading(),
                    100.0
                        * if sign < 0.0 {
                            e.frac_negative
                        } else {
                            e.frac_positive
                        },
                ),
            );
            band_agrees &=
                has_sign(band(r_mine, &e.group), sign) && has_sign(band(r_theirs, &e.group), sign);
        }
    }
    v.check(
        decided > 0,
        format!(
            "{decided} decided group readings (one sign in >= 80% of seeds) over both designs \
             (need >= 1)"
        ),
    );
    for (label, es) in [("exit", &ex), ("enter", &en)] {
        for e in es.iter() {
            v.note(format!("{label} design: {}", show(e)));
        }
    }
    band_note(&mut v, "exit design ", exit);
    band_note(&mut v, "enter design ", enter);
    let holds = v.holds();
    agreement(
        &mut v,
        "every decided sign shared by the other design",
        holds,
        decided > 0 && band_agrees,
    );
    v.numbers = serde_json::json!({
        "exit": ex, "enter": en, "decided": decided,
        "exit_band": exit.band_effects(), "enter_band": enter.band_effects(),
    });
    v
}

/// Median over seeds of a metric's window mean on the EoS branch.
fn median_window_mean(r: &BranchResult, group: &str, metric: &str) -> f64 {
    median(
        &(0..r.seeds.len())
            .map(|i| window_mean(r, i, "eos", group, metric))
            .collect::<Vec<_>>(),
    )
}

/// Claim `alignment`: coherent input-outliers' median cos²(g, v_max) ≥ 5× the random-direction
/// control's; coherent Δℓ < 0 in ≥ 80% of seeds; |median Δℓ| of the control ≤ 25% of coherent's.
pub fn alignment(coherent: &BranchResult, random: &BranchResult) -> Verdict {
    let mut v = Verdict::new("alignment");
    seeds_check(&mut v, coherent);
    let (gc, gr) = ("input-outlier", "input-outlier-random");
    let cos_c = median_window_mean(coherent, gc, "cos2_vmax");
    let cos_r = median_window_mean(random, gr, "cos2_vmax");
    let ec = coherent.effect(gc);
    let er = random.effect(gr);
    let (dc, fneg) = ec
        .as_ref()
        .map(|e| (e.median, e.frac_negative))
        .unwrap_or((f64::NAN, 0.0));
    let dr = er.as_ref().map(|e| e.median).unwrap_or(f64::NAN);
    v.check(cos_c >= 5.0 * cos_r, format!("median window cos²(g, v_max): coherent {cos_c:.3e} vs random {cos_r:.3e} (ratio {:.1}, need >= 5)", cos_c / cos_r));
    v.check(
        fneg >= 0.8,
        format!(
            "coherent input-outliers Δℓ < 0 in {:.0}% of seeds (need >= 80%), median {dc:+.3e}",
            100.0 * fneg
        ),
    );
    v.check(
        dr.abs() <= 0.25 * dc.abs(),
        format!(
            "|median Δℓ| random {:.3e} vs coherent {:.3e} (ratio {:.2}, need <= 0.25)",
            dr.abs(),
            dc.abs(),
            dr.abs() / dc.abs()
        ),
    );
    // The second reading of alignment: with the group's own top eigenvector (what the authors'
    // measurement code logs as `grad_vmax_cos2`). Not a criterion.
    let own_c = median_window_mean(coherent, gc, "cos2_own");
    let own_r = median_window_mean(random, gr, "cos2_own");
    v.note(format!(
        "own-eigenvector reading, median window cos²(g_k, v_max of the group's own loss): \
         coherent {own_c:.3e} vs random {own_r:.3e} (ratio {:.1})",
        own_c / own_r
    ));
    window_note(&mut v, "coherent ", coherent);
    window_note(&mut v, "random ", random);
    let (bc, br) = (band(coherent, gc), band(random, gr));
    v.note(format!(
        "band statistic: coherent {bc:+.3e}, random {br:+.3e} (ratio of magnitudes {:.2})",
        br.abs() / bc.abs()
    ));
    agreement(
        &mut v,
        "coherent input-outliers helped, control's effect ≤ 25% of theirs",
        fneg >= 0.8 && dc < 0.0 && dr.abs() <= 0.25 * dc.abs(),
        bc < 0.0 && br.abs() <= 0.25 * bc.abs(),
    );
    v.numbers = serde_json::json!({
        "cos2_coherent": cos_c, "cos2_random": cos_r, "coherent": ec, "random": er,
        "cos2_own_coherent": own_c, "cos2_own_random": own_r,
        "band_coherent": bc, "band_random": br,
    });
    v
}

/// Groups confidently classified at the fork (accuracy ≥ 0.95 on the EoS branch at t*),
/// excluding output-outliers, in seed index `i`.
fn confident_groups(r: &BranchResult, i: usize) -> Vec<String> {
    let t0 = r.seeds[i].t_star;
    r.paper_groups()
        .into_iter()
        .filter(|g| {
            g != "output-outlier" && pair_value_near(r, i, "eos", g, "accuracy", t0) >= 0.95
        })
        .collect()
}

/// The paper group with the most negative median Δℓ under `stat` (per-seed or band).
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

/// Claim `saturation`: under CE, ‖g_k‖ of the confidently classified groups falls ≥ 10×
/// between t* and t** while the output-outliers' stays ≥ 0.3× its value at t*; output-outliers
/// have the most negative median Δℓ under CE, and not under MSE.
pub fn saturation(ce: &BranchResult, mse: &BranchResult) -> Verdict {
    let mut v = Verdict::new("saturation");
    seeds_check(&mut v, ce);
    let mut conf_ratios = Vec::new();
    let mut oo_ratios = Vec::new();
    let mut confident_names = std::collections::BTreeSet::new();
    for i in 0..ce.seeds.len() {
        for g in confident_groups(ce, i) {
            conf_ratios.push(grad_ratio_seed(ce, i, &g));
            confident_names.insert(g);
        }
        oo_ratios.push(grad_ratio_seed(ce, i, "output-outlier"));
    }
    let conf = median(&conf_ratios);
    let oo = median(&oo_ratios);
    v.check(!conf_ratios.is_empty() && conf <= 0.1, format!(
        "CE: confidently classified groups {:?}: median ‖g‖(t**)/‖g‖(t*) = {conf:.3} (need <= 0.1)", confident_names));
    v.check(
        oo >= 0.3,
        format!("CE: output-outliers median ‖g‖(t**)/‖g‖(t*) = {oo:.3} (need >= 0.3)"),
    );
    let per_seed = |r: &BranchResult, g: &str| r.effect(g).map(|e| e.median).unwrap_or(f64::NAN);
    let (ce_g, ce_d) = most_negative(ce, |g| per_seed(ce, g));
    let (mse_g, mse_d) = most_negative(mse, |g| per_seed(mse, g));
    v.check(
        ce_g == "output-outlier",
        format!("CE: most negative median Δℓ is {ce_g} ({ce_d:+.3e}); need output-outlier"),
    );
    v.check(
        mse_g != "output-outlier",
        format!("MSE: most negative median Δℓ is {mse_g} ({mse_d:+.3e}); need not output-outlier"),
    );
    window_note(&mut v, "CE ", ce);
    window_note(&mut v, "MSE ", mse);
    band_note(&mut v, "CE ", ce);
    band_note(&mut v, "MSE ", mse);
    let (ce_b, _) = most_negative(ce, |g| band(ce, g));
    let (mse_b, _) = most_negative(mse, |g| band(mse, g));
    agreement(
        &mut v,
        "output-outliers gain most under CE and not under MSE",
        ce_g == "output-outlier" && mse_g != "output-outlier",
        ce_b == "output-outlier" && mse_b != "output-outlier",
    );
    v.numbers = serde_json::json!({
        "ce_confident_grad_ratio": conf, "ce_output_outlier_grad_ratio": oo,
        "ce_effects": ce.effects(), "mse_effects": mse.effects(),
        "ce_band": ce.band_effects(), "mse_band": mse.band_effects(),
        "ce_most_negative": ce_g, "mse_most_negative": mse_g,
        "ce_most_negative_band": ce_b, "mse_most_negative_band": mse_b,
    });
    v
}
