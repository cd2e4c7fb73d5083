//! The regime map: how each claim's decisive numbers move with the share of the data in the
//! groups, with the ratio of examples to inputs n/d, and with the output-outlier construction,
//! one factor at a time around the `cifar10-subset` preset.
//!
//! Per cell three branching runs from matched setups: MSE with coherent input-outliers, MSE
//! with the random-direction control, and cross-entropy. Their decisive numbers: the coherent
//! input-outliers' Δℓ, the control's, and their cos²(g, v_max) ratio (claim `alignment`); the
//! output-outliers' Δℓ and ‖g‖(t**)/‖g‖(t*) under cross-entropy (claim `saturation`). The
//! preset's own cell and its `removed` twin are exactly the notebooks' runs (shared through
//! [`crate::branch::run_shared`]); the other cells measure only what the map reads.
use super::cifar_subset;
use super::claims;
use crate::Result;
use crate::branch::{BranchConfig, BranchResult};
use crate::data::Reduce;
use crate::groups::{InputOutlierMode, OutputOutlierMode};
use crate::monitor::MonitorConfig;
use crate::stats::median;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One cell of the map: the preset with one factor changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Which factor this cell varies (`preset`, `group fraction`, `n/d`, `output-outliers`).
    pub axis: String,
    /// Examples per class in each group.
    pub per_class: usize,
    /// Image reduction (sets d).
    pub reduce: Reduce,
    /// Output-outlier construction.
    pub mode: OutputOutlierMode,
    /// Seeds.
    pub seeds: usize,
}

impl Cell {
    /// Whether this cell's runs are the notebooks' own (full measurements, five seeds).
    pub fn shared(&self) -> bool {
        self.axis == "preset" || self.axis == "output-outliers"
    }

    /// The three runs: MSE coherent, MSE random-direction control, cross-entropy.
    pub fn configs(&self) -> [BranchConfig; 3] {
        let mut coherent = cifar_subset::tradeoff();
        coherent.groups.per_class = self.per_class;
        coherent.groups.output_outlier_mode = self.mode;
        coherent.run.data.reduce = self.reduce;
        coherent.seeds = (0..self.seeds as u64).collect();
        if !self.shared() {
            // The map reads loss, cos²(g, v_max) and ‖g‖: no per-group eigen-solves or gᵀHg.
            coherent.monitor = MonitorConfig {
                group_eigen: false,
                group_curvature: false,
                ..MonitorConfig::default()
            };
        }
        let mut random = coherent.clone();
        random.groups.input_outlier_mode = InputOutlierMode::RandomDirection { seed: 1 };
        let mut ce = cifar_subset::cross_entropy(&coherent);
        if !self.shared() {
            ce.monitor = coherent.monitor.clone();
        }
        [coherent, random, ce]
    }
}

/// The default map: the preset (2.3 % of n in groups, d = 256, duplicated), group fractions
/// ≈ 5, 10 and 20 %, n/d = 1.3 (16 × 16 colour) and 16 (8 × 8 grey), and the `removed`
/// construction; three seeds per cell, five in the two cells the notebooks share.
pub fn default_cells() -> Vec<Cell> {
    let base = Cell {
        axis: "preset".into(),
        per_class: cifar_subset::GROUP_PER_CLASS,
        reduce: cifar_subset::data().reduce,
        mode: OutputOutlierMode::Duplicated,
        seeds: 5,
    };
    let vary = |axis: &str, f: &dyn Fn(&mut Cell)| {
        let mut c = Cell {
            axis: axis.into(),
            seeds: 3,
            ..base.clone()
        };
        f(&mut c);
        c
    };
    let mut cells = vec![base.clone()];
    for g in [6, 13, 26] {
        cells.push(vary("group fraction", &|c| c.per_class = g));
    }
    cells.push(vary("n/d", &|c| {
        c.reduce = Reduce {
            pool: 2,
            grayscale: false,
        }
    }));
    cells.push(vary("n/d", &|c| {
        c.reduce = Reduce {
            pool: 4,
            grayscale: true,
        }
    }));
    cells.push(vary("output-outliers", &|c| {
        c.mode = OutputOutlierMode::Removed;
        c.seeds = 5;
    }));
    cells
}

/// One cell's runs.
#[derive(Clone, Debug)]
pub struct CellResult {
    /// The cell.
    pub cell: Cell,
    /// MSE, coherent input-outliers.
    pub coherent: BranchResult,
    /// MSE, random-direction control.
    pub random: BranchResult,
    /// Cross-entropy.
    pub ce: BranchResult,
}

/// The decisive numbers of one cell (medians over seeds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellNumbers {
    /// Training examples.
    pub n: usize,
    /// Inputs per example.
    pub d: usize,
    /// Share of the training set in the four groups.
    pub group_fraction: f64,
    /// Coherent input-outliers' median Δℓ (MSE) and its quartiles.
    pub coherent_delta: (f64, f64, f64),
    /// Fraction of seeds where the coherent input-outliers gain (Δℓ < 0).
    pub coherent_frac_negative: f64,
    /// The control's median Δℓ (MSE) and its quartiles.
    pub random_delta: (f64, f64, f64),
    /// |median Δℓ| control / coherent.
    pub random_over_coherent: f64,
    /// Median window cos²(g, v_max): coherent / control.
    pub cos2_ratio: f64,
    /// Output-outliers' median Δℓ under cross-entropy and its quartiles.
    pub oo_ce_delta: (f64, f64, f64),
    /// Fraction of seeds where they gain under cross-entropy.
    pub oo_ce_frac_negative: f64,
    /// Output-outliers' median ‖g‖(t**)/‖g‖(t*) under cross-entropy.
    pub oo_ce_grad_ratio: f64,
    /// Seeds whose stable branch reached t**: (coherent MSE, CE) out of `seeds`.
    pub t2_reached: (usize, usize),
    /// Seeds.
    pub seeds: usize,
}

impl CellResult {
    /// The decisive numbers.
    pub fn numbers(&self) -> CellNumbers {
        let eff = |r: &BranchResult, g: &str| {
            r.effect(g)
                .map(|e| ((e.median, e.q25, e.q75), e.frac_negative))
                .unwrap_or(((f64::NAN, f64::NAN, f64::NAN), f64::NAN))
        };
        let (coherent_delta, coherent_frac_negative) = eff(&self.coherent, "input-outlier");
        let (random_delta, _) = eff(&self.random, "input-outlier-random");
        let (oo_ce_delta, oo_ce_frac_negative) = eff(&self.ce, "output-outlier");
        let cos = |r: &BranchResult, g: &str| {
            median(
                &(0..r.seeds.len())
                    .map(|i| claims::window_mean(r, i, "eos", g, "cos2_vmax"))
                    .collect::<Vec<_>>(),
            )
        };
        let train = &self.coherent.train;
        CellNumbers {
            n: train.n(),
            d: train.d,
            group_fraction: train.group.iter().filter(|&&g| g != 0).count() as f64
                / train.n() as f64,
            coherent_delta,
            coherent_frac_negative,
            random_delta,
            random_over_coherent: random_delta.0.abs() / coherent_delta.0.abs(),
            cos2_ratio: cos(&self.coherent, "input-outlier")
                / cos(&self.random, "input-outlier-random"),
            oo_ce_delta,
            oo_ce_frac_negative,
            oo_ce_grad_ratio: claims::grad_ratio(&self.ce, "output-outlier"),
            t2_reached: (
                self.coherent.seeds_reaching_t2(),
                self.ce.seeds_reaching_t2(),
            ),
            seeds: self.cell.seeds,
        }
    }
}

/// Run every cell's three configurations under `root` (shared, resumable directories), all
/// seeds of all cells [`crate::parallel::default_jobs`] at a time.
pub fn run(cells: &[Cell], root: &Path) -> Result<Vec<CellResult>> {
    let configs: Vec<[BranchConfig; 3]> = cells.iter().map(Cell::configs).collect();
    let flat: Vec<&BranchConfig> = configs.iter().flatten().collect();
    let mut results = crate::report::run_shared(root, &flat)?.into_iter();
    Ok(cells
        .iter()
        .map(|cell| CellResult {
            cell: cell.clone(),
            coherent: results.next().expect("three results per cell"),
            random: results.next().expect("three results per cell"),
            ce: results.next().expect("three results per cell"),
        })
        .collect())
}

/// One row per cell with its factor settings and decisive numbers.
pub fn frame(results: &[CellResult]) -> Result<DataFrame> {
    let nums: Vec<CellNumbers> = results.iter().map(CellResult::numbers).collect();
    let f = |g: fn(&CellNumbers) -> f64| nums.iter().map(g).collect::<Vec<f64>>();
    let u = |g: fn(&CellNumbers) -> usize| nums.iter().map(|x| g(x) as u64).collect::<Vec<_>>();
    let mode = |r: &CellResult| format!("{:?}", r.cell.mode).to_lowercase();
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "axis".into(),
            results
                .iter()
                .map(|r| r.cell.axis.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new("n".into(), u(|x| x.n)),
        Column::new("d".into(), u(|x| x.d)),
        Column::new("n_over_d".into(), f(|x| x.n as f64 / x.d as f64)),
        Column::new("group_pct".into(), f(|x| 100.0 * x.group_fraction)),
        Column::new(
            "output_outliers".into(),
            results.iter().map(mode).collect::<Vec<_>>(),
        ),
        Column::new("seeds".into(), u(|x| x.seeds)),
        Column::new("io_coherent_dl".into(), f(|x| x.coherent_delta.0)),
        Column::new("io_coherent_neg".into(), f(|x| x.coherent_frac_negative)),
        Column::new("io_random_dl".into(), f(|x| x.random_delta.0)),
        Column::new("random_over_coh".into(), f(|x| x.random_over_coherent)),
        Column::new("cos2_ratio".into(), f(|x| x.cos2_ratio)),
        Column::new("oo_ce_dl".into(), f(|x| x.oo_ce_delta.0)),
        Column::new("oo_ce_neg".into(), f(|x| x.oo_ce_frac_negative)),
        Column::new("oo_ce_grad_ratio".into(), f(|x| x.oo_ce_grad_ratio)),
        Column::new("t2_mse".into(), u(|x| x.t2_reached.0)),
        Column::new("t2_ce".into(), u(|x| x.t2_reached.1)),
    ])?)
}

/// Write the table (`regime.parquet`, `regime.csv`) and the four figures (`delta_*.svg`,
/// `ratio_*.svg`) into `dir`; returns the table.
pub fn write(results: &[CellResult], dir: &Path) -> Result<DataFrame> {
    let mut table = frame(results)?;
    crate::metrics::write_frame(&mut table, dir, "regime")?;
    for axis in ["group fraction", "n/d"] {
        let stem = axis.replace([' ', '/'], "_");
        delta_figure(results, axis)?.save(&dir.join(format!("delta_{stem}.svg")))?;
        ratio_figure(results, axis)?.save(&dir.join(format!("ratio_{stem}.svg")))?;
    }
    Ok(table)
}

/// The cells along `axis` together with the preset's own cell, sorted by `x`.
fn along<'a>(
    results: &'a [CellResult],
    axis: &str,
    x: fn(&CellNumbers) -> f64,
) -> Vec<(f64, CellNumbers, &'a CellResult)> {
    let mut v: Vec<_> = results
        .iter()
        .filter(|r| r.cell.axis == axis || r.cell.axis == "preset")
        .map(|r| {
            let n = r.numbers();
            (x(&n), n, r)
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// x of a cell on each axis: the group share in percent, or n/d.
fn axis_x(axis: &str) -> (fn(&CellNumbers) -> f64, &'static str) {
    if axis == "n/d" {
        (|n| n.n as f64 / n.d as f64, "n / d (examples per input)")
    } else {
        (
            |n| 100.0 * n.group_fraction,
            "share of the training set in the groups (%)",
        )
    }
}

/// The decisive Δℓ along `axis` (`group fraction` or `n/d`): coherent input-outliers and the
/// control under MSE, output-outliers under CE (median, IQR over seeds).
pub fn delta_figure(results: &[CellResult], axis: &str) -> Result<crate::plot::Figure> {
    let (x, label) = axis_x(axis);
    let cells = along(results, axis, x);
    let mut p = crate::plot::LinePlot::new(
        format!("Decisive Δℓ against {axis} (median, IQR over seeds; below 0 EoS helps)"),
        label,
        "Δℓ = ℓ_EoS − ℓ_stable",
    )
    .markers();
    type Quartiles = fn(&CellNumbers) -> (f64, f64, f64);
    let series: [(&str, Quartiles); 3] = [
        ("input-outliers, coherent (MSE)", |n| n.coherent_delta),
        ("input-outliers, random control (MSE)", |n| n.random_delta),
        ("output-outliers (CE)", |n| n.oo_ce_delta),
    ];
    for (c, (name, get)) in series.iter().enumerate() {
        let pts: Vec<(f64, (f64, f64, f64))> = cells.iter().map(|(x, n, _)| (*x, get(n))).collect();
        p = p
            .band(pts.iter().map(|(x, d)| (*x, d.1, d.2)).collect(), c)
            .line(
                *name,
                pts.iter().map(|(x, d)| (*x, d.0)).collect(),
                c,
                false,
            );
    }
    p.hline(0.0, "no effect", 7).render()
}

/// The decisive ratios along `axis`: cos²(g, v_max) coherent / control and the
/// output-outliers' ‖g‖(t**)/‖g‖(t*) under CE, with the criteria's thresholds (log scale).
pub fn ratio_figure(results: &[CellResult], axis: &str) -> Result<crate::plot::Figure> {
    let (x, label) = axis_x(axis);
    let cells = along(results, axis, x);
    crate::plot::LinePlot::new(
        format!("Decisive ratios against {axis} (medians over seeds)"),
        label,
        "ratio",
    )
    .log_y()
    .markers()
    .line(
        "cos²(g, v_max) coherent / control (alignment: ≥ 5)",
        cells.iter().map(|(x, n, _)| (*x, n.cos2_ratio)).collect(),
        0,
        false,
    )
    .line(
        "output-outliers ‖g‖(t**)/‖g‖(t*), CE (saturation: ≥ 0.3)",
        cells
            .iter()
            .map(|(x, n, _)| (*x, n.oo_ce_grad_ratio))
            .collect(),
        2,
        false,
    )
    .hline(5.0, "5", 0)
    .hline(0.3, "0.3", 2)
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map's shared cells are exactly the notebooks' runs, so they are computed once.
    #[test]
    fn shared_cells_are_the_notebooks_runs() {
        let cells = default_cells();
        let key = |c: &BranchConfig| crate::branch::run_key(c);
        let preset = cells[0].configs();
        let (_, random) = cifar_subset::alignment();
        let (ce, _) = cifar_subset::saturation();
        assert_eq!(key(&preset[0]), key(&cifar_subset::tradeoff()));
        assert_eq!(key(&preset[1]), key(&random));
        assert_eq!(key(&preset[2]), key(&ce));
        let removed = cells.iter().find(|c| c.axis == "output-outliers").unwrap();
        let (ce_rm, mse_rm) = cifar_subset::saturation_removed();
        let rm = removed.configs();
        assert_eq!((key(&rm[0]), key(&rm[2])), (key(&mse_rm), key(&ce_rm)));
        // The other cells change one factor and measure less.
        for c in cells.iter().filter(|c| !c.shared()) {
            let [coh, rnd, ce] = c.configs();
            assert!(!coh.monitor.group_eigen && !rnd.monitor.group_curvature);
            assert_eq!(ce.run.loss, crate::loss::LossKind::CrossEntropy);
            assert!(c.seeds >= 3);
        }
        assert_eq!(cells.len(), 7);
    }
}
