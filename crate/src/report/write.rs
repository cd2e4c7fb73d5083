//! Run directories of the branching claims: the experiment layer writes each run's
//! configuration, training set and metrics; the report adds the per-group summary (Parquet +
//! CSV) and the figures (SVG), so every run directory can be read without eoslab.
use crate::Result;
use crate::branch::{self, BranchConfig, BranchResult, Job};
use std::path::Path;

/// Write `r`'s metrics, per-group summary and figures into `dir`.
pub fn write(r: &BranchResult, dir: &Path) -> Result<()> {
    r.write_metrics(dir)?;
    crate::metrics::write_frame(&mut super::effects_frame(r)?, dir, "summary")?;
    for (name, fig) in super::branch_figures(r, 0)? {
        fig.save(&dir.join(format!("{name}.svg")))?;
    }
    Ok(())
}

/// [`branch::run_shared`], each run directory completed with its summary and figures.
pub fn run_shared(root: &Path, cfgs: &[&BranchConfig]) -> Result<Vec<BranchResult>> {
    let results = branch::run_shared(root, cfgs)?;
    for (r, c) in results.iter().zip(cfgs) {
        write(r, &root.join(branch::run_key(c)))?;
    }
    Ok(results)
}

/// [`branch::run_many`], each job's run directory (if any) completed with its summary and
/// figures.
pub fn run_many(jobs: &[Job], parallel: usize) -> Result<Vec<BranchResult>> {
    let results = branch::run_many(jobs, parallel)?;
    for (r, j) in results.iter().zip(jobs) {
        if let Some(d) = j.dir {
            write(r, d)?;
        }
    }
    Ok(results)
}

/// [`branch::run`] with its run directory (if any) completed with its summary and figures.
pub fn run(cfg: &BranchConfig, dir: Option<&Path>) -> Result<BranchResult> {
    let r = branch::run(cfg, dir)?;
    if let Some(d) = dir {
        write(&r, d)?;
    }
    Ok(r)
}
