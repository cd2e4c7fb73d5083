//! Curvature spectra along a fork (notebook 05, `eoslab spectra`): one seed of a branching
//! setup is trained to its fork t*, forked into the EoS and the stable branch, and at chosen
//! points — before t*, at t*, and at equal effective times after the fork on both branches —
//! the Hessian's spectral density, trace and top eigenvalues are computed, with the same for
//! its Gauss-Newton part G and residual R = H − G ([`crate::hessian::spectrum`]).
use crate::branch::{self, BranchConfig, baseline};
use crate::hessian::{Curvature, HessianOp, PartSpectrum, SpectrumConfig};
use crate::monitor::MonitorConfig;
use crate::plot::{Figure, LinePlot, Row};
use crate::train::{GradientDescent, stability_threshold};
use crate::verdict::Verdict;
use crate::{Error, Result};
use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where and what to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectraConfig {
    /// The branching setup: data, groups, model, rates and design. Its `seeds`, `horizon`,
    /// measurement and monitor are not used (λ_max is tracked on `run.sharpness` to find t*).
    pub branch: BranchConfig,
    /// The seed.
    pub seed: u64,
    /// The point before the edge of stability, as a fraction of the fork step (0 < before < 1).
    pub before: f64,
    /// Effective times after the fork (t_eff − t*) at which both branches are measured.
    pub after: Vec<f64>,
    /// What to compute at each point.
    pub spectrum: SpectrumConfig,
}

impl SpectraConfig {
    /// Check the settings before any training.
    pub fn validate(&self) -> Result<()> {
        self.branch.validate()?;
        if !(self.before > 0.0 && self.before < 1.0) {
            return Err(Error::Config(format!(
                "spectra: before = {} must lie strictly between 0 and 1 (a fraction of the fork \
                 step)",
                self.before
            )));
        }
        if self.after.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(Error::Config(format!(
                "spectra: every `after` must be a positive effective time, got {:?}",
                self.after
            )));
        }
        if self.spectrum.curvatures.is_empty() {
            return Err(Error::Config(
                "spectra: no curvature matrix requested".into(),
            ));
        }
        Ok(())
    }
    /// Pretty JSON (what the notebook prints and `write` saves).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }
}

/// The curvature at one point of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Short name: `before`, `t*`, `eos +5`, `stable +5`, …
    pub label: String,
    /// `baseline`, `eos` or `stable`.
    pub branch: String,
    /// Step count from initialisation.
    pub step: usize,
    /// Effective time Σ η from initialisation.
    pub t_eff: f64,
    /// Step size in force.
    pub lr: f64,
    /// Its stability threshold 2(1 + β)/η.
    pub threshold: f64,
    /// Training loss.
    pub loss: f64,
    /// One entry per requested matrix.
    pub parts: Vec<PartSpectrum>,
    /// Seconds spent on the curvature (not on training).
    pub seconds: f64,
}

impl Snapshot {
    /// The entry for `which`, if it was requested.
    pub fn part(&self, which: Curvature) -> Option<&PartSpectrum> {
        self.parts.iter().find(|p| p.curvature == which)
    }
}

/// The snapshots of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpectraResult {
    /// The configuration.
    pub config: SpectraConfig,
    /// Step of the fork (t*).
    pub fork_step: usize,
    /// Effective time of the fork.
    pub t_star: f64,
    /// The snapshots in order: before, t*, then for each `after` the EoS and the stable branch.
    pub snapshots: Vec<Snapshot>,
}

/// Measure `cfg.spectrum` at the state of `gd`.
fn snapshot(
    label: &str,
    branch: &str,
    gd: &GradientDescent,
    cfg: &SpectrumConfig,
) -> Result<Snapshot> {
    let clock = std::time::Instant::now();
    let op = HessianOp::new(&gd.model, &gd.objective)?;
    let parts = crate::hessian::spectrum(&op, cfg)?;
    let s = Snapshot {
        label: label.into(),
        branch: branch.into(),
        step: gd.state.step,
        t_eff: gd.state.t_eff,
        lr: gd.state.lr,
        threshold: gd.state.threshold(),
        loss: op.value(),
        parts,
        seconds: clock.elapsed().as_secs_f64(),
    };
    let tops: Vec<String> = s
        .parts
        .iter()
        .map(|p| format!("{} λ1 {:.4}", p.curvature.name(), p.top.eigenvalues[0]))
        .collect();
    eprintln!(
        "spectra {label:>10}: step {}, 2/η {:.1}, {}; {} products in {:.1} s",
        s.step,
        s.threshold,
        tops.join(", "),
        op.products(),
        s.seconds
    );
    Ok(s)
}

/// Train, fork and measure (see the module doc). Progress goes to stderr.
pub fn run(cfg: &SpectraConfig) -> Result<SpectraResult> {
    cfg.validate()?;
    // The baseline only needs λ_max to find t*: no group metrics on the way.
    let b = &BranchConfig {
        baseline_metrics: false,
        monitor: MonitorConfig::default(),
        ..cfg.branch.clone()
    };
    let (train, test) = branch::prepare(b)?;
    let (parent, monitor) = baseline::run_baseline(b, &train, &test, cfg.seed, None)?;
    let (fork_step, t_star) = (parent.state.step, parent.state.t_eff);
    let mut snapshots = Vec::new();
    // Before t*: the same seed's process replayed from its initialisation (gradient descent is
    // deterministic: these are the baseline's own parameters at that step).
    let mut early = baseline::start(b, &train, cfg.seed)?;
    let before = ((fork_step as f64 * cfg.before).round() as usize).clamp(1, fork_step.max(1));
    early.run(before, &mut [])?;
    snapshots.push(snapshot("before", "baseline", &early, &cfg.spectrum)?);
    drop(early);
    snapshots.push(snapshot("t*", "baseline", &parent, &cfg.spectrum)?);
    let (mut eos, mut stable) = branch::fork_seed(b, &parent, &monitor, cfg.seed)?;
    drop(parent);
    let mut after = cfg.after.clone();
    after.sort_by(f64::total_cmp);
    for &a in &after {
        for (name, gd) in [("eos", &mut eos), ("stable", &mut stable)] {
            // Equal effective time on both branches: a/η steps from the fork on each.
            gd.run_until(fork_step + (a / gd.state.lr).round() as usize, &mut [])?;
            snapshots.push(snapshot(&format!("{name} +{a}"), name, gd, &cfg.spectrum)?);
        }
    }
    Ok(SpectraResult {
        config: cfg.clone(),
        fork_step,
        t_star,
        snapshots,
    })
}

/// Colour of the `i`-th snapshot: before grey, t* blue, then per time the EoS branch in a warm
/// and the stable branch in a cool colour.
fn colour(i: usize) -> usize {
    const COLOURS: [usize; 8] = [7, 0, 1, 2, 3, 4, 6, 9];
    COLOURS[i.min(COLOURS.len() - 1)]
}

impl SpectraResult {
    /// Checks that follow from the mathematics, whatever the dynamics: at t* the top eigenvalue
    /// of H has reached 2/η (the baseline's stopping rule, solved afresh); at every point G's
    /// top eigenvalues and resolved density outliers are non-negative (to their residual
    /// bounds), tr H = tr G + tr R within four standard errors, λ_1(H) ≤ λ_1(G) + λ_1(R)
    /// (Weyl) to the solvers' tolerance, and every eigen-solve converged. Checks of matrices
    /// that were not requested are left out.
    pub fn checks(&self) -> Verdict {
        let mut v = Verdict::new("spectra-checks");
        let tol = self.config.spectrum.tol;
        let out_tol = self.config.spectrum.density.outlier_tol;
        let top = |s: &Snapshot, c| s.part(c).map(|p| p.top.eigenvalues[0]);
        for s in &self.snapshots {
            let at = format!("{} (step {})", s.label, s.step);
            if s.label == "t*"
                && let Some(h) = top(s, Curvature::Hessian)
            {
                v.check(
                    h >= s.threshold * (1.0 - 10.0 * tol),
                    format!("{at}: λ_1(H) = {h:.4} has reached 2/η = {:.4}", s.threshold),
                );
            }
            if let Some(g) = s.part(Curvature::GaussNewton) {
                let scale = g.top.eigenvalues[0].abs();
                let min_top = g
                    .top
                    .eigenvalues
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                let min_out = g
                    .density
                    .outliers
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                let floor = -2.0 * out_tol * scale;
                v.check(
                    min_top > 0.0 && min_out >= floor,
                    format!(
                        "{at}: G ⪰ 0: smallest of its top {} eigenvalues {min_top:.4}, smallest \
                         resolved density outlier {min_out:.3e} (≥ {floor:.1e})",
                        g.top.eigenvalues.len()
                    ),
                );
            }
            if let (Some(h), Some(g), Some(r)) = (
                s.part(Curvature::Hessian),
                s.part(Curvature::GaussNewton),
                s.part(Curvature::Residual),
            ) {
                let (th, tg, tr) = (&h.trace, &g.trace, &r.trace);
                let se =
                    (th.std_error.powi(2) + tg.std_error.powi(2) + tr.std_error.powi(2)).sqrt();
                let gap = th.estimate - tg.estimate - tr.estimate;
                v.check(
                    gap.abs() <= 4.0 * se,
                    format!(
                        "{at}: tr H − tr G − tr R = {gap:.3} (tr H {:.2}, tr G {:.2}, tr R {:.2}; \
                         4 standard errors {:.3})",
                        th.estimate,
                        tg.estimate,
                        tr.estimate,
                        4.0 * se
                    ),
                );
                let (lh, lg, lr) = (
                    h.top.eigenvalues[0],
                    g.top.eigenvalues[0],
                    r.top.eigenvalues[0],
                );
                v.check(
                    lh <= lg + lr + 10.0 * tol * lh.abs(),
                    format!(
                        "{at}: Weyl: λ_1(H) = {lh:.4} ≤ λ_1(G) + λ_1(R) = {:.4}",
                        lg + lr
                    ),
                );
            }
            let unconverged: Vec<&str> = s
                .parts
                .iter()
                .filter(|p| !p.top.converged)
                .map(|p| p.curvature.name())
                .collect();
            v.check(
                unconverged.is_empty(),
                format!("{at}: every eigen-solve converged (not: {unconverged:?})"),
            );
        }
        v
    }

    /// One row per snapshot, the numbers a reader compares: loss, 2/η, λ_1 and λ_2 of H, λ_1 of
    /// G and of R, and the traces of the three (columns of matrices not requested are NaN).
    pub fn summary(&self) -> Result<DataFrame> {
        let f = |g: &dyn Fn(&Snapshot) -> Option<f64>| -> Vec<f64> {
            self.snapshots
                .iter()
                .map(|s| g(s).unwrap_or(f64::NAN))
                .collect()
        };
        let eig = |c: Curvature, i: usize| {
            move |s: &Snapshot| s.part(c).and_then(|p| p.top.eigenvalues.get(i).copied())
        };
        let trace = |c: Curvature| move |s: &Snapshot| s.part(c).map(|p| p.trace.estimate);
        use Curvature::{GaussNewton as G, Hessian as H, Residual as R};
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "snapshot".into(),
                self.snapshots
                    .iter()
                    .map(|s| s.label.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new("t_eff".into(), f(&|s| Some(s.t_eff))),
            Column::new("two_over_eta".into(), f(&|s| Some(s.threshold))),
            Column::new("loss".into(), f(&|s| Some(s.loss))),
            Column::new("H_lambda_1".into(), f(&eig(H, 0))),
            Column::new("H_lambda_2".into(), f(&eig(H, 1))),
            Column::new("G_lambda_1".into(), f(&eig(G, 0))),
            Column::new("R_lambda_1".into(), f(&eig(R, 0))),
            Column::new("H_trace".into(), f(&trace(H))),
            Column::new("G_trace".into(), f(&trace(G))),
            Column::new("R_trace".into(), f(&trace(R))),
        ])?)
    }

    /// One row per snapshot and matrix: where, the threshold, loss, the top eigenvalues
    /// (`lambda_1` …), λ_1 / (2/η), the trace with its standard error, the resolved outliers of
    /// the density and the products spent.
    pub fn table(&self) -> Result<DataFrame> {
        let rows: Vec<(&Snapshot, &PartSpectrum)> = self
            .snapshots
            .iter()
            .flat_map(|s| s.parts.iter().map(move |p| (s, p)))
            .collect();
        let f = |g: &dyn Fn(&Snapshot, &PartSpectrum) -> f64| -> Vec<f64> {
            rows.iter().map(|(s, p)| g(s, p)).collect()
        };
        let k = self.config.spectrum.k;
        let mut cols = vec![
            Column::new(
                "snapshot".into(),
                rows.iter()
                    .map(|(s, _)| s.label.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "matrix".into(),
                rows.iter()
                    .map(|(_, p)| p.curvature.name().to_string())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "step".into(),
                rows.iter().map(|(s, _)| s.step as u64).collect::<Vec<_>>(),
            ),
            Column::new("t_eff".into(), f(&|s, _| s.t_eff)),
            Column::new("two_over_eta".into(), f(&|s, _| s.threshold)),
            Column::new("loss".into(), f(&|s, _| s.loss)),
        ];
        for i in 0..k {
            cols.push(Column::new(
                format!("lambda_{}", i + 1).into(),
                f(&|_, p| p.top.eigenvalues.get(i).copied().unwrap_or(f64::NAN)),
            ));
        }
        cols.extend([
            Column::new(
                "lambda_1_over_2_eta".into(),
                f(&|s, p| p.top.eigenvalues[0] / s.threshold),
            ),
            Column::new("trace".into(), f(&|_, p| p.trace.estimate)),
            Column::new("trace_se".into(), f(&|_, p| p.trace.std_error)),
            Column::new(
                "outliers".into(),
                rows.iter()
                    .map(|(_, p)| p.density.outliers.len() as u64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "products".into(),
                rows.iter()
                    .map(|(_, p)| (p.top.products + p.trace.products + p.density.products) as u64)
                    .collect::<Vec<_>>(),
            ),
        ]);
        Ok(DataFrame::new_infer_height(cols)?)
    }

    /// The spectral density of `which` at every snapshot (log scale, floored at 1e-7; the stable
    /// branch dashed), with both branches' thresholds 2/η dotted (not for R).
    pub fn density_figure(&self, which: Curvature) -> Result<Figure> {
        let mut plot = LinePlot::new(
            format!("Spectral density of {} (SLQ)", matrix_symbol(which)),
            "eigenvalue",
            "density",
        )
        .log_y();
        plot.size = Some((760, 420));
        // Far tails of the Gaussians sit on a floor instead of stretching the log axis.
        let floor = 1e-7;
        for (i, s) in self.snapshots.iter().enumerate() {
            let Some(p) = s.part(which) else { continue };
            let pts = p
                .density
                .grid
                .iter()
                .zip(&p.density.density)
                .map(|(&x, &y)| (x, y.max(floor)))
                .collect();
            plot = plot.line(&s.label, pts, colour(i), s.branch == "stable");
        }
        // The thresholds bound the top of H (and of G, which carries it); R's spectrum lies far
        // below them.
        if which != Curvature::Residual {
            let (eos, stable, _) = self.config.branch.rates();
            let beta = self.config.branch.run.momentum;
            plot = plot
                .vline(stability_threshold(eos, beta), "2/η (EoS branch)", 5)
                .vline(stability_threshold(stable, beta), "2/η (stable branch)", 8);
        }
        plot.render()
    }

    /// One small chart per snapshot: the top eigenvalues of each matrix against their index,
    /// with that branch's threshold 2/η dotted.
    pub fn top_figure(&self) -> Result<Row> {
        let mut figs = Vec::new();
        for s in &self.snapshots {
            let mut plot = LinePlot::new(&s.label, "index", "eigenvalue").markers();
            plot.size = Some((300, 260));
            for (j, p) in s.parts.iter().enumerate() {
                let pts = p
                    .top
                    .eigenvalues
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| ((i + 1) as f64, v))
                    .collect();
                plot = plot.line(matrix_symbol(p.curvature), pts, j, j > 0);
            }
            plot = plot.hline(s.threshold, "2/η", 3);
            figs.push(plot.render()?);
        }
        Ok(Row(figs))
    }

    /// Write under `dir`: `config.json` (what `eoslab spectra --config` reruns),
    /// `spectra.json` (everything, densities and quadratures included), the tables as
    /// `spectra.{parquet,csv}` and `summary.{parquet,csv}`, and the density figures as SVG;
    /// returns the full table.
    pub fn write(&self, dir: &Path) -> Result<DataFrame> {
        let mut table = self.table()?;
        crate::metrics::write_frame(&mut table, dir, "spectra")?;
        crate::metrics::write_frame(&mut self.summary()?, dir, "summary")?;
        crate::atomic::write_atomic(&dir.join("config.json"), self.config.to_json().as_bytes())?;
        let json =
            serde_json::to_string_pretty(self).map_err(|e| Error::Numerics(e.to_string()))?;
        crate::atomic::write_atomic(&dir.join("spectra.json"), json.as_bytes())?;
        for which in &self.config.spectrum.curvatures {
            self.density_figure(*which)?
                .save(&dir.join(format!("density_{}.svg", which.name())))?;
        }
        Ok(table)
    }
}

/// `H`, `G` or `R = H − G`.
fn matrix_symbol(which: Curvature) -> &'static str {
    match which {
        Curvature::Hessian => "H",
        Curvature::GaussNewton => "G",
        Curvature::Residual => "R = H − G",
    }
}
