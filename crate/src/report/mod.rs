//! Figures and tables for branching results (the paper's figure types), shared by notebooks,
//! the command line and run directories; the exit and enter designs side by side in
//! [`designs`].
pub mod designs;
mod write;

pub use designs::{designs_delta_figure, designs_frame, designs_sharpness_figure, settling_frame};
pub use write::{run, run_many, run_shared, write};

use crate::Result;
use crate::branch::{BranchResult, GroupEffect};
use crate::plot::{Figure, LinePlot};
use polars::prelude::*;

/// Where the notebooks keep their runs: `$EOSLAB_RUNS` (the notebook driver points it at a
/// fresh directory per invocation, so notebooks share runs of identical configuration within
/// one `make test` or `make reports` and never reuse results of older code), else `../runs`
/// relative to the notebooks.
pub fn runs_root() -> std::path::PathBuf {
    std::env::var_os("EOSLAB_RUNS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("../runs"))
}

/// Per-group effects as a table (one row per group): the per-seed window statistic (median,
/// quartiles, sign fractions, reading), the band statistic beside it and whether its sign
/// agrees, and the median of Δℓ_k − Δℓ_train (gain relative to the average example).
pub fn effects_frame(r: &BranchResult) -> Result<DataFrame> {
    let effects = r.effects();
    let band = r.band_effects();
    let rel = r.relative_effects();
    let rel_of = |g: &str| {
        rel.iter()
            .find(|e| e.group == g)
            .map(|e| e.median)
            .unwrap_or(0.0)
    };
    let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "group".into(),
            effects.iter().map(|e| e.group.as_str()).collect::<Vec<_>>(),
        ),
        col(
            "median_delta_loss",
            effects.iter().map(|e| e.median).collect(),
        ),
        col("q25", effects.iter().map(|e| e.q25).collect()),
        col("q75", effects.iter().map(|e| e.q75).collect()),
        col(
            "frac_seeds_negative",
            effects.iter().map(|e| e.frac_negative).collect(),
        ),
        col(
            "frac_seeds_positive",
            effects.iter().map(|e| e.frac_positive).collect(),
        ),
        Column::new(
            "reading".into(),
            effects.iter().map(|e| e.reading()).collect::<Vec<_>>(),
        ),
        col("band_mean", band.iter().map(|b| b.mean_of_median).collect()),
        Column::new(
            "band_sign_agrees".into(),
            effects
                .iter()
                .zip(&band)
                .map(|(e, b)| e.median.signum() == b.mean_of_median.signum())
                .collect::<Vec<_>>(),
        ),
        col(
            "median_delta_minus_train",
            effects.iter().map(|e| rel_of(&e.group)).collect(),
        ),
    ])?)
}

/// How much each group's Δℓ moves between two measurements of the same runs (every-step
/// averages `a` and sparse sampling `b`, say): their medians across seeds and the difference.
pub fn measurement_frame(a: &BranchResult, b: &BranchResult) -> Result<DataFrame> {
    let (ea, eb) = (a.effects(), b.effects());
    let groups: Vec<&str> = ea.iter().map(|e| e.group.as_str()).collect();
    let of = |es: &[GroupEffect], g: &str, f: fn(&GroupEffect) -> f64| {
        es.iter().find(|e| e.group == g).map(f).unwrap_or(f64::NAN)
    };
    let name = |r: &BranchResult| format!("{:?}", r.config.measurement).to_lowercase();
    let (na, nb) = (name(a), name(b));
    let col = |name: String, f: &dyn Fn(&str) -> f64| {
        Column::new(name.into(), groups.iter().map(|g| f(g)).collect::<Vec<_>>())
    };
    Ok(DataFrame::new_infer_height(vec![
        Column::new("group".into(), groups.clone()),
        col(format!("median_{na}"), &|g| of(&ea, g, |e| e.median)),
        col(format!("median_{nb}"), &|g| of(&eb, g, |e| e.median)),
        col("difference".into(), &|g| {
            of(&eb, g, |e| e.median) - of(&ea, g, |e| e.median)
        }),
        col(format!("frac_negative_{na}"), &|g| {
            of(&ea, g, |e| e.frac_negative)
        }),
        col(format!("frac_negative_{nb}"), &|g| {
            of(&eb, g, |e| e.frac_negative)
        }),
    ])?)
}

/// Per group, the median over seeds of each metric's mean over the window on `branch`
/// (one row per group, one column per metric).
pub fn window_metrics_frame(r: &BranchResult, branch: &str, metrics: &[&str]) -> Result<DataFrame> {
    use crate::stats::median;
    let groups = r.paper_groups();
    let mut cols = vec![Column::new("group".into(), groups.clone())];
    for m in metrics {
        let values: Vec<f64> = groups
            .iter()
            .map(|g| {
                let per_seed: Vec<f64> = (0..r.seeds.len())
                    .map(|i| r.window_mean(i, branch, g, m))
                    .collect();
                median(&per_seed)
            })
            .collect();
        cols.push(Column::new((*m).into(), values));
    }
    Ok(DataFrame::new_infer_height(cols)?)
}

/// A cadence metric of one seed's branch as the means of its measured pairs of steps.
fn paired(
    s: &crate::branch::SeedBranches,
    branch: &str,
    group: &str,
    metric: &str,
) -> Vec<(f64, f64)> {
    crate::branch::compare::pair_means(&s.log.series_steps(branch, s.seed, group, metric))
}

/// λ_max of the baseline, the EoS branch (solid) and the stable branch (dashed), with both
/// thresholds, for seed index `i`.
pub fn sharpness_figure(r: &BranchResult, i: usize) -> Result<Figure> {
    let s = &r.seeds[i];
    let (eta, eta_s, _) = r.config.rates();
    let beta = r.config.run.momentum;
    let mut p = LinePlot::new(
        format!("Sharpness around the fork (seed {})", s.seed),
        "effective time Σ η",
        "λ_max",
    );
    for (branch, c, dashed) in [
        ("baseline", 7, false),
        ("eos", 0, false),
        ("stable", 1, true),
    ] {
        p = p.line(
            branch,
            s.log.series(branch, s.seed, "all", "lambda_1"),
            c,
            dashed,
        );
    }
    p = p.hline(
        crate::train::stability_threshold(eta, beta),
        format!("2/η = {:.1}", crate::train::stability_threshold(eta, beta)),
        0,
    );
    let thr_s = crate::train::stability_threshold(eta_s, beta);
    let top = s
        .log
        .series("stable", s.seed, "all", "lambda_1")
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max);
    if thr_s <= 1.5 * top {
        p = p.hline(thr_s, format!("2/η_stable = {thr_s:.1}"), 1);
    }
    p.window(s.window.0, s.window.1, "window [t*, t**]")
        .render()
}

/// Per-group loss at every step on both branches (EoS solid, stable dashed), log scale, seed
/// index `i`: the catapult spikes and period-2 oscillations of the EoS branch are visible.
pub fn group_loss_figure(r: &BranchResult, i: usize) -> Result<Figure> {
    let s = &r.seeds[i];
    let mut p = LinePlot::new(
        format!(
            "Group losses at every step: EoS (solid) vs stable (dashed), seed {}",
            s.seed
        ),
        "effective time Σ η",
        "group loss",
    )
    .log_y()
    .window(s.window.0, s.window.1, "window");
    let mut groups = r.paper_groups();
    groups.push("train".into());
    for (c, g) in groups.iter().enumerate() {
        p = p.line(
            g.clone(),
            s.log.series("eos", s.seed, g, "step_loss"),
            c,
            false,
        );
        p = p.line("", s.log.series("stable", s.seed, g, "step_loss"), c, true);
    }
    p.render()
}

/// Δℓ_k = ℓ_EoS − ℓ_stable: median across seeds with IQR bands, against t_eff − t*.
pub fn delta_figure(r: &BranchResult) -> Result<Figure> {
    band_figure(
        r,
        "Δℓ = ℓ_EoS − ℓ_stable (median, IQR over seeds): below 0 EoS helps, above 0 EoS hurts",
        "Δ group loss",
        |r, g| r.delta_band(g),
    )
}

/// Δℓ_k − Δℓ_train: who gains relative to the average training example (median, IQR).
pub fn relative_figure(r: &BranchResult) -> Result<Figure> {
    band_figure(
        r,
        "Δℓ_k − Δℓ_train (median, IQR over seeds): below 0 the group gains more than average",
        "Δ group loss − Δ training loss",
        |r, g| r.relative_band(g),
    )
}

type Band = Vec<(f64, f64, f64, f64)>;

fn band_figure(
    r: &BranchResult,
    title: &str,
    y: &str,
    band_of: impl Fn(&BranchResult, &str) -> Band,
) -> Result<Figure> {
    band_plot(r, title, y, band_of).render()
}

/// Each paper group's median curve with its IQR band, a zero line and the median window.
fn band_plot(
    r: &BranchResult,
    title: &str,
    y: &str,
    band_of: impl Fn(&BranchResult, &str) -> Band,
) -> LinePlot {
    let mut p = LinePlot::new(title, "t_eff − t*", y);
    for (c, g) in r.paper_groups().iter().enumerate() {
        let band = band_of(r, g);
        p = p.band(band.iter().map(|&(t, _, lo, hi)| (t, lo, hi)).collect(), c);
        p = p.line(
            g.clone(),
            band.iter().map(|&(t, m, _, _)| (t, m)).collect(),
            c,
            false,
        );
    }
    p = p.hline(0.0, "no effect", 7);
    p.window(0.0, r.median_window(), "median window")
}

/// ‖g_k‖²cos²(g_k, v_max) per group (EoS solid, stable dashed), log scale, seed index `i`.
pub fn projection_figure(r: &BranchResult, i: usize) -> Result<Figure> {
    let s = &r.seeds[i];
    let mut p = LinePlot::new(
        format!(
            "Squared projection of each group's gradient on v_max, seed {}",
            s.seed
        ),
        "effective time Σ η",
        "‖g_k‖² cos²(g_k, v_max)",
    )
    .log_y();
    for (c, g) in r.paper_groups().iter().enumerate() {
        p = p.line(g.clone(), paired(s, "eos", g, "proj2_vmax"), c, false);
        p = p.line("", paired(s, "stable", g, "proj2_vmax"), c, true);
    }
    p.render()
}

/// A per-group metric over t_eff on one branch for seed index `i` (EoS solid, stable dashed).
pub fn metric_figure(
    r: &BranchResult,
    i: usize,
    metric: &str,
    title: &str,
    log_y: bool,
) -> Result<Figure> {
    let s = &r.seeds[i];
    let mut p = LinePlot::new(title, "effective time Σ η", metric);
    if log_y {
        p = p.log_y();
    }
    for (c, g) in r.paper_groups().iter().enumerate() {
        p = p.line(g.clone(), paired(s, "eos", g, metric), c, false);
        p = p.line("", paired(s, "stable", g, metric), c, true);
    }
    p.window(s.window.0, s.window.1, "window").render()
}

/// Each group's per-example margin distribution (true output − best other output) on the EoS
/// branch, as its decile curve: dashed at t*, solid at the window's end (t**), seed index `i`.
pub fn margin_figure(r: &BranchResult, i: usize) -> Result<Figure> {
    let s = &r.seeds[i];
    let at = |g: &str, t: f64| -> Vec<(f64, f64)> {
        crate::monitor::margin_metrics()
            .into_iter()
            .map(|(q, m)| (q, s.log.value_near("eos", s.seed, g, &m, t)))
            .collect()
    };
    let mut p = LinePlot::new(
        format!(
            "Margin distribution per group (EoS branch, seed {}): dashed at t*, solid at t**",
            s.seed
        ),
        "quantile level within the group",
        "margin: true − best other output",
    );
    for (c, g) in r.paper_groups().iter().enumerate() {
        p = p.line(g.clone(), at(g, s.window.1), c, false);
        p = p.line("", at(g, s.window.0), c, true);
    }
    p.hline(0.0, "decision boundary", 7).render()
}

/// The standard set of branching figures, named for files.
pub fn branch_figures(r: &BranchResult, i: usize) -> Result<Vec<(&'static str, Figure)>> {
    Ok(vec![
        ("sharpness", sharpness_figure(r, i)?),
        ("group_loss", group_loss_figure(r, i)?),
        ("delta_loss", delta_figure(r)?),
        ("delta_vs_train", relative_figure(r)?),
        ("projection", projection_figure(r, i)?),
    ])
}
