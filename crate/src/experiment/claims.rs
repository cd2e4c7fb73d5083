//! The pre-registered criteria of the branching claims (DESIGN §1), evaluated on results.
use super::verdict::{Verdict, median};
use crate::branch::BranchResult;

/// Mean of a metric over one branch's measurements inside seed index `i`'s window.
pub fn window_mean(r: &BranchResult, i: usize, branch: &str, group: &str, metric: &str) -> f64 {
    let s = &r.seeds[i];
    let v: Vec<f64> = s
        .log
        .series(branch, s.seed, group, metric)
        .into_iter()
        .filter(|(t, v)| *t >= s.window.0 - 1e-9 && *t <= s.window.1 + 1e-9 && v.is_finite())
        .map(|p| p.1)
        .collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Value of a metric at the measurement nearest `t` on one branch.
fn value_near(r: &BranchResult, i: usize, branch: &str, group: &str, metric: &str, t: f64) -> f64 {
    let s = &r.seeds[i];
    s.log.value_near(branch, s.seed, group, metric, t)
}

fn seeds_check(v: &mut Verdict, r: &BranchResult) {
    let n = r.seeds.len();
    v.check(n >= 5, format!("{n} seeds (need >= 5)"));
}

/// Claim `tradeoff`: some group has median Δℓ < 0 and some group median Δℓ > 0, each with that
/// sign in ≥ 80% of seeds.
pub fn tradeoff(r: &BranchResult) -> Verdict {
    let mut v = Verdict::new("tradeoff");
    seeds_check(&mut v, r);
    let effects: Vec<_> = r
        .effects()
        .into_iter()
        .filter(|e| r.paper_groups().contains(&e.group))
        .collect();
    let helped: Vec<_> = effects
        .iter()
        .filter(|e| e.median < 0.0 && e.frac_negative >= 0.8)
        .collect();
    let hurt: Vec<_> = effects
        .iter()
        .filter(|e| e.median > 0.0 && e.frac_positive >= 0.8)
        .collect();
    let show = |e: &crate::branch::GroupEffect| {
        format!(
            "{} (median Δℓ {:+.3e}, {:.0}% seeds < 0, {:.0}% > 0)",
            e.group,
            e.median,
            100.0 * e.frac_negative,
            100.0 * e.frac_positive
        )
    };
    v.check(
        !helped.is_empty(),
        format!(
            "a group EoS helps: {}",
            if helped.is_empty() {
                "none".into()
            } else {
                helped
                    .iter()
                    .map(|e| show(e))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        ),
    );
    v.check(
        !hurt.is_empty(),
        format!(
            "a group EoS hurts: {}",
            if hurt.is_empty() {
                "none".into()
            } else {
                hurt.iter().map(|e| show(e)).collect::<Vec<_>>().join("; ")
            }
        ),
    );
    for e in &effects {
        v.note(format!("measured: {}", show(e)));
    }
    v.numbers = serde_json::json!({ "effects": effects, "median_window": r.median_window() });
    v
}

/// Claim `alignment`: coherent input-outliers' median cos²(g, v_max) ≥ 5× the random-direction
/// control's; coherent Δℓ < 0 in ≥ 80% of seeds; |median Δℓ| of the control ≤ 25% of coherent's.
pub fn alignment(coherent: &BranchResult, random: &BranchResult) -> Verdict {
    let mut v = Verdict::new("alignment");
    seeds_check(&mut v, coherent);
    let (gc, gr) = ("input-outlier", "input-outlier-random");
    let cos_c = median(
        &(0..coherent.seeds.len())
            .map(|i| window_mean(coherent, i, "eos", gc, "cos2_vmax"))
            .collect::<Vec<_>>(),
    );
    let cos_r = median(
        &(0..random.seeds.len())
            .map(|i| window_mean(random, i, "eos", gr, "cos2_vmax"))
            .collect::<Vec<_>>(),
    );
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
    v.numbers = serde_json::json!({
        "cos2_coherent": cos_c, "cos2_random": cos_r, "coherent": ec, "random": er,
    });
    v
}

/// Groups confidently classified at the fork (accuracy ≥ 0.95 on the EoS branch at t*),
/// excluding output-outliers, in seed index `i`.
fn confident_groups(r: &BranchResult, i: usize) -> Vec<String> {
    let t0 = r.seeds[i].t_star;
    r.paper_groups()
        .into_iter()
        .filter(|g| g != "output-outlier" && value_near(r, i, "eos", g, "accuracy", t0) >= 0.95)
        .collect()
}

/// Claim `saturation`: under CE, ‖g_k‖ of the confidently classified groups falls ≥ 10×
/// between t* and t** while the output-outliers' stays ≥ 0.3× its value at t*; output-outliers
/// have the most negative median Δℓ under CE, and not under MSE.
pub fn saturation(ce: &BranchResult, mse: &BranchResult) -> Verdict {
    let mut v = Verdict::new("saturation");
    seeds_check(&mut v, ce);
    let n = ce.seeds.len();
    let mut conf_ratios = Vec::new();
    let mut oo_ratios = Vec::new();
    let mut confident_names = std::collections::BTreeSet::new();
    for i in 0..n {
        let (a, b) = ce.seeds[i].window;
        for g in confident_groups(ce, i) {
            let r = value_near(ce, i, "eos", &g, "grad_norm", b)
                / value_near(ce, i, "eos", &g, "grad_norm", a);
            conf_ratios.push(r);
            confident_names.insert(g);
        }
        oo_ratios.push(
            value_near(ce, i, "eos", "output-outlier", "grad_norm", b)
                / value_near(ce, i, "eos", "output-outlier", "grad_norm", a),
        );
    }
    let conf = median(&conf_ratios);
    let oo = median(&oo_ratios);
    v.check(!conf_ratios.is_empty() && conf <= 0.1, format!(
        "CE: confidently classified groups {:?}: median ‖g‖(t**)/‖g‖(t*) = {conf:.3} (need <= 0.1)", confident_names));
    v.check(
        oo >= 0.3,
        format!("CE: output-outliers median ‖g‖(t**)/‖g‖(t*) = {oo:.3} (need >= 0.3)"),
    );
    let most_negative = |r: &BranchResult| {
        r.effects()
            .into_iter()
            .filter(|e| r.paper_groups().contains(&e.group))
            .min_by(|a, b| a.median.total_cmp(&b.median))
            .map(|e| (e.group, e.median))
    };
    let (ce_g, ce_d) = most_negative(ce).unwrap_or(("none".into(), f64::NAN));
    let (mse_g, mse_d) = most_negative(mse).unwrap_or(("none".into(), f64::NAN));
    v.check(
        ce_g == "output-outlier",
        format!("CE: most negative median Δℓ is {ce_g} ({ce_d:+.3e}); need output-outlier"),
    );
    v.check(
        mse_g != "output-outlier",
        format!("MSE: most negative median Δℓ is {mse_g} ({mse_d:+.3e}); need not output-outlier"),
    );
    v.numbers = serde_json::json!({
        "ce_confident_grad_ratio": conf, "ce_output_outlier_grad_ratio": oo,
        "ce_effects": ce.effects(), "mse_effects": mse.effects(),
        "ce_most_negative": ce_g, "mse_most_negative": mse_g,
    });
    v
}
