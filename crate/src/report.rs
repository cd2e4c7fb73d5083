//! Figures and tables for branching results (the paper's figure types), shared by notebooks,
//! the command line and run directories.
use crate::Result;
use crate::branch::{BranchResult, GroupEffect};
use crate::plot::{Figure, LinePlot};
use polars::prelude::*;

/// Per-group effects as a table (one row per group).
pub fn effects_frame(effects: &[GroupEffect]) -> Result<DataFrame> {
    let reading = |e: &GroupEffect| {
        if e.median < 0.0 && e.frac_negative >= 0.8 {
            "EoS helps"
        } else if e.median > 0.0 && e.frac_positive >= 0.8 {
            "EoS hurts"
        } else {
            "mixed"
        }
    };
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "group".into(),
            effects.iter().map(|e| e.group.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "median_delta_loss".into(),
            effects.iter().map(|e| e.median).collect::<Vec<_>>(),
        ),
        Column::new(
            "q25".into(),
            effects.iter().map(|e| e.q25).collect::<Vec<_>>(),
        ),
        Column::new(
            "q75".into(),
            effects.iter().map(|e| e.q75).collect::<Vec<_>>(),
        ),
        Column::new(
            "frac_seeds_negative".into(),
            effects.iter().map(|e| e.frac_negative).collect::<Vec<_>>(),
        ),
        Column::new(
            "frac_seeds_positive".into(),
            effects.iter().map(|e| e.frac_positive).collect::<Vec<_>>(),
        ),
        Column::new(
            "reading".into(),
            effects.iter().map(reading).collect::<Vec<_>>(),
        ),
    ])?)
}

/// Per group, the median over seeds of each metric's mean over the window on `branch`
/// (one row per group, one column per metric).
pub fn window_metrics_frame(r: &BranchResult, branch: &str, metrics: &[&str]) -> Result<DataFrame> {
    use crate::experiment::{claims::window_mean, verdict::median};
    let groups = r.paper_groups();
    let mut cols = vec![Column::new("group".into(), groups.clone())];
    for m in metrics {
        let values: Vec<f64> = groups
            .iter()
            .map(|g| {
                let per_seed: Vec<f64> = (0..r.seeds.len())
                    .map(|i| window_mean(r, i, branch, g, m))
                    .collect();
                median(&per_seed)
            })
            .collect();
        cols.push(Column::new((*m).into(), values));
    }
    Ok(DataFrame::new_infer_height(cols)?)
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
        2.0 * (1.0 + beta) / eta,
        format!("2/η = {:.1}", 2.0 * (1.0 + beta) / eta),
        0,
    );
    let thr_s = 2.0 * (1.0 + beta) / eta_s;
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

/// Per-group loss on both branches (EoS solid, stable dashed), log scale, seed index `i`.
pub fn group_loss_figure(r: &BranchResult, i: usize) -> Result<Figure> {
    let s = &r.seeds[i];
    let mut p = LinePlot::new(
        format!(
            "Group losses: EoS (solid) vs stable (dashed), seed {}",
            s.seed
        ),
        "effective time Σ η",
        "group loss",
    )
    .log_y()
    .window(s.window.0, s.window.1, "window");
    for (c, g) in r.paper_groups().iter().enumerate() {
        p = p.line(g.clone(), s.log.series("eos", s.seed, g, "loss"), c, false);
        p = p.line("", s.log.series("stable", s.seed, g, "loss"), c, true);
    }
    p.render()
}

/// Δℓ_k = ℓ_EoS − ℓ_stable: median across seeds with IQR bands, against t_eff − t*.
pub fn delta_figure(r: &BranchResult) -> Result<Figure> {
    let mut p = LinePlot::new(
        "Δℓ = ℓ_EoS − ℓ_stable (median, IQR over seeds): below 0 EoS helps, above 0 EoS hurts",
        "t_eff − t*",
        "Δ group loss",
    );
    for (c, g) in r.paper_groups().iter().enumerate() {
        let band = r.delta_band(g);
        p = p.band(band.iter().map(|&(t, _, lo, hi)| (t, lo, hi)).collect(), c);
        p = p.line(
            g.clone(),
            band.iter().map(|&(t, m, _, _)| (t, m)).collect(),
            c,
            false,
        );
    }
    p = p.hline(0.0, "no effect", 7);
    p.window(0.0, r.median_window(), "median window").render()
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
        p = p.line(
            g.clone(),
            s.log.series("eos", s.seed, g, "proj2_vmax"),
            c,
            false,
        );
        p = p.line("", s.log.series("stable", s.seed, g, "proj2_vmax"), c, true);
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
        p = p.line(g.clone(), s.log.series("eos", s.seed, g, metric), c, false);
        p = p.line("", s.log.series("stable", s.seed, g, metric), c, true);
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
        ("projection", projection_figure(r, i)?),
    ])
}
