//! The exit and the enter design side by side: λ_max of all four branches with their
//! thresholds, Δℓ per group in each design, the per-group table of both, and how each
//! branch's λ_max settles.
//!
//! The designs fork at different effective times (the exit design at its EoS entry t*, the
//! enter design earlier, on a slower baseline), so everything is drawn against t_eff − t*.
use super::band_plot;
use crate::Result;
use crate::branch::{BranchResult, Design, GroupEffect, Settling};
use crate::plot::{LinePlot, Row};
use crate::stats::median;
use polars::prelude::*;

/// The legend names of a design's branches: `(EoS branch, stable branch)`.
fn branch_names(r: &BranchResult) -> (&'static str, &'static str) {
    match r.config.design {
        Design::Exit { .. } => ("exit: EoS", "exit: stable"),
        Design::Enter { .. } => ("enter: enter", "enter: stay"),
    }
}

/// A series shifted to t_eff − t* of seed index `i`.
fn from_fork(r: &BranchResult, i: usize, branch: &str) -> Vec<(f64, f64)> {
    let s = &r.seeds[i];
    s.log
        .series(branch, s.seed, "all", "lambda_1")
        .into_iter()
        .map(|(t, v)| (t - s.t_star, v))
        .collect()
}

/// How much of each baseline the sharpness figure shows before the fork (units of t_eff).
const BEFORE: f64 = 3.0;

/// λ_max of both designs' baselines (the last [`BEFORE`] units of t_eff) and branches against
/// t_eff − t*, seed index `i`: exit design blue, enter design orange; EoS / enter branches
/// solid, stable / stay branches dashed, baselines grey; every distinct threshold 2/η dotted.
pub fn designs_sharpness_figure(
    exit: &BranchResult,
    enter: &BranchResult,
    i: usize,
) -> Result<crate::plot::Figure> {
    let mut p = LinePlot::new(
        format!(
            "λ_max of both designs around their forks (seed {})",
            exit.seeds[i].seed
        ),
        "t_eff − t* (each design's own fork)",
        "λ_max",
    );
    let mut thresholds: Vec<(f64, String)> = Vec::new();
    for (c, r) in [(0, exit), (1, enter)] {
        let (eos, stable) = branch_names(r);
        let (eta, eta_s, eta_b) = r.config.rates();
        let beta = r.config.run.momentum;
        let mut base = from_fork(r, i, "baseline");
        base.retain(|p| p.0 >= -BEFORE);
        p = p.line(
            format!("{} baseline (η = {eta_b})", r.config.design.name()),
            base,
            7,
            c == 1,
        );
        p = p.line(
            format!("{eos} (η = {eta})"),
            from_fork(r, i, "eos"),
            c,
            false,
        );
        p = p.line(
            format!("{stable} (η = {eta_s})"),
            from_fork(r, i, "stable"),
            c,
            true,
        );
        for e in [eta, eta_s] {
            let t = crate::train::stability_threshold(e, beta);
            if !thresholds.iter().any(|(x, _)| (x - t).abs() < 1e-9 * t) {
                thresholds.push((t, format!("2/η = {t:.1} (η = {e})")));
            }
        }
    }
    // Room above the highest threshold for the legend.
    let top = thresholds.iter().map(|t| t.0).fold(0.0, f64::max);
    p.y_range = Some((0.0, 2.0 * top));
    for (k, (t, label)) in thresholds.into_iter().enumerate() {
        p = p.hline(t, label, 2 + k);
    }
    p.render()
}

/// Δℓ per group (median, IQR over seeds) in each design, side by side on one y range.
pub fn designs_delta_figure(exit: &BranchResult, enter: &BranchResult) -> Result<Row> {
    let plot = |r: &BranchResult| {
        band_plot(
            r,
            match r.config.design {
                Design::Exit { .. } => "exit design: Δℓ = ℓ_EoS − ℓ_stable (median, IQR)",
                Design::Enter { .. } => "enter design: Δℓ = ℓ_enter − ℓ_stay (median, IQR)",
            },
            "Δ group loss",
            |r, g| r.delta_band(g),
        )
    };
    let mut plots = [plot(exit), plot(enter)];
    let (lo, hi) = plots
        .iter()
        .flat_map(|p| p.bands.iter().flat_map(|b| b.points.iter()))
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .fold((0.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.2)));
    let pad = 0.05 * (hi - lo).max(1e-12);
    for p in &mut plots {
        p.y_range = Some((lo - pad, hi + pad));
        p.size = Some((560, 400));
    }
    Ok(Row(vec![plots[0].render()?, plots[1].render()?]))
}

fn effect_of<'a>(es: &'a [GroupEffect], g: &str) -> Option<&'a GroupEffect> {
    es.iter().find(|e| e.group == g)
}

/// One row per group: each design's per-seed window statistic (median, quartiles, sign
/// fractions, reading) and band statistic, and whether the two designs' medians share a sign.
pub fn designs_frame(exit: &BranchResult, enter: &BranchResult) -> Result<DataFrame> {
    let groups: Vec<String> = exit.groups.clone();
    let mut cols = vec![Column::new("group".into(), groups.clone())];
    let mut medians = Vec::new();
    for r in [exit, enter] {
        let (es, band) = (r.effects(), r.band_effects());
        let name = r.config.design.name();
        let get = |g: &str, f: fn(&GroupEffect) -> f64| effect_of(&es, g).map_or(f64::NAN, f);
        let num = |m: &str, f: fn(&GroupEffect) -> f64| {
            Column::new(
                format!("{name}_{m}").into(),
                groups.iter().map(|g| get(g, f)).collect::<Vec<_>>(),
            )
        };
        cols.push(num("median", |e| e.median));
        cols.push(num("q25", |e| e.q25));
        cols.push(num("q75", |e| e.q75));
        cols.push(num("frac_neg", |e| e.frac_negative));
        cols.push(num("frac_pos", |e| e.frac_positive));
        cols.push(Column::new(
            format!("{name}_reading").into(),
            groups
                .iter()
                .map(|g| effect_of(&es, g).map_or("-", |e| e.reading()))
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            format!("{name}_band").into(),
            groups
                .iter()
                .map(|g| {
                    band.iter()
                        .find(|b| &b.group == g)
                        .map_or(f64::NAN, |b| b.mean_of_median)
                })
                .collect::<Vec<_>>(),
        ));
        medians.push(
            groups
                .iter()
                .map(|g| get(g, |e| e.median))
                .collect::<Vec<_>>(),
        );
    }
    cols.push(Column::new(
        "same_sign".into(),
        medians[0]
            .iter()
            .zip(&medians[1])
            .map(|(a, b)| a * b > 0.0)
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new_infer_height(cols)?)
}

/// One row per branch of both designs: rate, threshold, and over seeds the medians of λ_max at
/// the fork, of the settled λ_max (median over the branch's second half, see
/// [`crate::branch::settling`]), of its ratio to the threshold, and of last λ_max / λ_max at
/// the fork; with the seeds' range of the ratio.
pub fn settling_frame(exit: &BranchResult, enter: &BranchResult) -> Result<DataFrame> {
    let mut rows: Vec<(String, f64, Vec<Settling>)> = Vec::new();
    for r in [exit, enter] {
        let (eos, stable) = branch_names(r);
        let (eta, eta_s, _) = r.config.rates();
        rows.push((eos.to_string(), eta, r.settling_all("eos")));
        rows.push((stable.to_string(), eta_s, r.settling_all("stable")));
    }
    let stat = |f: fn(&Settling) -> f64| -> Vec<f64> {
        rows.iter()
            .map(|(_, _, s)| median(&s.iter().map(f).collect::<Vec<_>>()))
            .collect()
    };
    let range = |pick: fn(f64, f64) -> f64, init: f64| -> Vec<f64> {
        rows.iter()
            .map(|(_, _, s)| s.iter().map(Settling::ratio).fold(init, pick))
            .collect()
    };
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "branch".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new("eta".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("threshold".into(), stat(|s| s.threshold)),
        Column::new("lambda_at_fork".into(), stat(|s| s.at_fork)),
        Column::new("lambda_settled".into(), stat(|s| s.settled)),
        Column::new("settled_over_threshold".into(), stat(Settling::ratio)),
        Column::new("ratio_min".into(), range(f64::min, f64::INFINITY)),
        Column::new("ratio_max".into(), range(f64::max, f64::NEG_INFINITY)),
        Column::new("last_over_fork".into(), stat(Settling::growth)),
    ])?)
}
