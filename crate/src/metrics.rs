//! Run logs in long format — one row per (run, branch, seed, step, t_eff, group, metric, value) —
//! as polars DataFrames, written as Parquet and CSV.
use crate::{Error, Result};
use polars::prelude::*;
use std::path::Path;

/// One measured value.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    /// Branch (`baseline`, `eos`, `stable`, …).
    pub branch: String,
    /// Seed of the run.
    pub seed: u64,
    /// Step within the branch's process.
    pub step: usize,
    /// Effective time Σ η.
    pub t_eff: f64,
    /// Group name (`inlier`, …, `train`, `test`, or `all` for whole-model quantities).
    pub group: String,
    /// Metric name (`loss`, `accuracy`, `grad_norm`, `cos2_vmax`, `proj2_vmax`, `gHg`, `lambda_1`, …).
    pub metric: String,
    /// Value.
    pub value: f64,
}

/// A growing long-format log.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Run name (one experiment).
    pub run: String,
    /// Rows in measurement order.
    pub rows: Vec<MetricRow>,
}

impl RunLog {
    /// An empty log for run `run`.
    pub fn new(run: impl Into<String>) -> Self {
        RunLog {
            run: run.into(),
            rows: Vec::new(),
        }
    }

    /// Append all rows of `other`.
    pub fn extend(&mut self, other: RunLog) {
        self.rows.extend(other.rows);
    }

    /// The rows with `branch`, `seed`, `group`, `metric`, as `(t_eff, value)` in order.
    pub fn series(&self, branch: &str, seed: u64, group: &str, metric: &str) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter(|r| {
                r.seed == seed && r.branch == branch && r.group == group && r.metric == metric
            })
            .map(|r| (r.t_eff, r.value))
            .collect()
    }

    /// Like [`RunLog::series`], as `(step, t_eff, value)`.
    pub fn series_steps(
        &self,
        branch: &str,
        seed: u64,
        group: &str,
        metric: &str,
    ) -> Vec<(usize, f64, f64)> {
        self.rows
            .iter()
            .filter(|r| {
                r.seed == seed && r.branch == branch && r.group == group && r.metric == metric
            })
            .map(|r| (r.step, r.t_eff, r.value))
            .collect()
    }

    /// The value of a series at the measurement nearest effective time `t` (NaN if none).
    pub fn value_near(&self, branch: &str, seed: u64, group: &str, metric: &str, t: f64) -> f64 {
        self.series(branch, seed, group, metric)
            .into_iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .map(|p| p.1)
            .unwrap_or(f64::NAN)
    }

    /// The log as a DataFrame with columns run, branch, seed, step, t_eff, group, metric, value.
    pub fn to_frame(&self) -> Result<DataFrame> {
        let r = &self.rows;
        Ok(DataFrame::new_infer_height(vec![
            Column::new("run".into(), vec![self.run.as_str(); r.len()]),
            Column::new(
                "branch".into(),
                r.iter().map(|x| x.branch.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("seed".into(), r.iter().map(|x| x.seed).collect::<Vec<_>>()),
            Column::new(
                "step".into(),
                r.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "t_eff".into(),
                r.iter().map(|x| x.t_eff).collect::<Vec<_>>(),
            ),
            Column::new(
                "group".into(),
                r.iter().map(|x| x.group.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "metric".into(),
                r.iter().map(|x| x.metric.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "value".into(),
                r.iter().map(|x| x.value).collect::<Vec<_>>(),
            ),
        ])?)
    }

    /// Write `<stem>.parquet` and `<stem>.csv` into `dir` (each atomically).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<()> {
        write_frame(&mut self.to_frame()?, dir, stem)
    }
}

/// Write a DataFrame as `<stem>.parquet` and `<stem>.csv` in `dir` (each atomically).
pub fn write_frame(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut pq = Vec::new();
    ParquetWriter::new(&mut pq).finish(df)?;
    crate::atomic::write_atomic(&dir.join(format!("{stem}.parquet")), &pq)?;
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(df)?;
    crate::atomic::write_atomic(&dir.join(format!("{stem}.csv")), &csv)
}

/// Read a Parquet file written by [`write_frame`].
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_format_roundtrip() {
        let mut log = RunLog::new("t");
        for (i, g) in ["inlier", "boundary"].iter().enumerate() {
            log.rows.push(MetricRow {
                branch: "eos".into(),
                seed: 3,
                step: 10 * i,
                t_eff: 0.5 * i as f64,
                group: g.to_string(),
                metric: "loss".into(),
                value: 1.0 + i as f64,
            });
        }
        assert_eq!(log.series("eos", 3, "boundary", "loss"), vec![(0.5, 2.0)]);
        let dir = std::env::temp_dir().join(format!("eoslab-metrics-{}", std::process::id()));
        log.write(&dir, "metrics").unwrap();
        let back = read_parquet(&dir.join("metrics.parquet")).unwrap();
        assert_eq!(back.shape(), (2, 8));
        assert_eq!(back, log.to_frame().unwrap());
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert!(
            csv.starts_with("run,branch,seed,step,t_eff,group,metric,value"),
            "{csv}"
        );
    }
}
