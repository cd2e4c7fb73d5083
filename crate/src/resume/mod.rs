//! Resumable runs: a long run (paper scale: hours per seed on a CPU, minutes on a GPU) survives
//! an interruption and continues from where it stopped, with the same results as a run that
//! was never interrupted.
//!
//! - **Periodic checkpoints** of every training process (the baseline and both branches): the
//!   process (parameters, momentum, step, t_eff, η; [`crate::checkpoint`]) together with its
//!   measurement state (sharpness records, the warm-start eigenvectors, the metric log), every
//!   `checkpoint_every` steps, taken at a step *before* that step's measurement, so a resumed
//!   process repeats exactly the computation the interrupted one would have done.
//! - **Completed seeds** are written to `seed-<s>/result.safetensors` (bit-exact: floats are
//!   stored as binary, NaN included) and skipped on a rerun.
//! - **The run directory's identity**: `config.json` and `resume.json` (the training set's
//!   fingerprint) are written on first use; a rerun whose configuration or data differ is an
//!   error naming every differing field, never an overwrite. Only the compute device may change
//!   between runs (the result is then not bit-identical to an uninterrupted run: a warning says so).
//! - **A step budget** stops a run cleanly after a number of steps ([`Error::Interrupted`]): the
//!   way tests and users interrupt a run on purpose.
//!
//! - **One driver loop** ([`drive`]): every training process (an eos run, a baseline, a
//!   branch) is a [`Plan`] (its [`Stateful`] measurement parts, what it measures at a step
//!   boundary, when it stops) run by the same loop, which restores, checkpoints when due and
//!   steps with the observers.
//!
//! Layout under a run directory (per seed): `seed-<s>/resume/<process>.json` points to the
//! latest complete checkpoint `seed-<s>/resume/<process>-<step>/{process,monitor}.safetensors`;
//! the pointer is written last, so a crash mid-write leaves the previous checkpoint in force.
use crate::atomic::{write_atomic, write_safetensors_atomic};
use crate::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::metrics::{MetricRow, RunLog};
use crate::sharpness::{SharpnessRecord, SharpnessTracker};
use crate::train::{GradientDescent, Observer, StepRecord, StepView};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod drive;
mod identity;
mod open;
mod persist;
mod state;
mod table;

use identity::read_json;
pub use identity::{check_identity, config_diff};

pub use drive::{Flow, Plan, drive};
pub use persist::{Persist, load, save};
pub use state::{
    MonitorState, Stateful, get_history, get_log, get_records, put_history, put_log, put_records,
};
pub use table::{TableReader, TableWriter};

/// Format tag of the files this module writes.
pub const FORMAT: &str = "eoslab-resume-v1";

/// How a run checkpoints and when it stops.
#[derive(Clone, Debug)]
pub struct ResumeOptions {
    /// Checkpoint each process every this many steps (rounded up to a multiple of the
    /// measurement period, where checkpoints are taken).
    pub checkpoint_every: usize,
    /// Stop with [`Error::Interrupted`] once this budget of gradient steps is spent (shared by
    /// every process, seed and experiment given clones of these options); `None` = no limit.
    pub step_budget: Option<StepBudget>,
    /// Print a progress line at most this often (seconds); `None` = no extra progress lines.
    pub progress_every: Option<f64>,
}

impl Default for ResumeOptions {
    fn default() -> Self {
        ResumeOptions {
            checkpoint_every: 512,
            step_budget: None,
            progress_every: Some(30.0),
        }
    }
}

/// A number of gradient steps this invocation may still take; clones share the count.
#[derive(Clone, Debug)]
pub struct StepBudget(Arc<AtomicUsize>);

impl StepBudget {
    /// A budget of `steps` steps.
    pub fn new(steps: usize) -> Self {
        StepBudget(Arc::new(AtomicUsize::new(steps)))
    }
    /// Steps left.
    pub fn remaining(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A run directory opened for resuming: identity checked, budget shared by all processes.
#[derive(Clone, Debug)]
pub struct Resume {
    dir: PathBuf,
    options: ResumeOptions,
    fingerprint: String,
    config: serde_json::Value,
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(v).expect("json").as_bytes(),
    )
}

impl Resume {
    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options this directory was opened with.
    pub fn options(&self) -> &ResumeOptions {
        &self.options
    }

    /// Checkpoints of one training process (`label`: `baseline`, `eos`, `stable`, …) of `seed`,
    /// measured every `measure_every` steps.
    pub fn process(&self, seed: u64, label: &str, measure_every: usize) -> ProcessCheckpoints {
        let m = measure_every.max(1);
        let every = self.options.checkpoint_every.max(1).div_ceil(m) * m;
        ProcessCheckpoints {
            dir: self.seed_dir(seed).join("resume"),
            label: label.to_string(),
            every,
            seed,
            fingerprint: self.fingerprint.clone(),
            config: self.config.clone(),
            restored_at: None,
        }
    }

    /// The observer that enforces the step budget and prints time-based progress.
    pub fn hooks(&self, label: impl Into<String>) -> RunHooks {
        RunHooks {
            remaining: self.options.step_budget.as_ref().map(|b| b.0.clone()),
            label: label.into(),
            progress_every: self.options.progress_every.map(Duration::from_secs_f64),
            last: Instant::now(),
            start: Instant::now(),
            steps: 0,
        }
    }

    fn seed_dir(&self, seed: u64) -> PathBuf {
        self.dir.join(format!("seed-{seed}"))
    }

    /// Path of a completed seed's result.
    pub fn seed_result_path(&self, seed: u64) -> PathBuf {
        self.seed_dir(seed).join("result.safetensors")
    }

    /// Path of a completed named unit of work (an `eos` run, say) under this directory.
    pub fn done_path(&self, name: &str) -> PathBuf {
        self.dir.join("done").join(format!("{name}.json"))
    }

    /// Remove a completed seed's intermediate checkpoints.
    pub fn clean_seed(&self, seed: u64) {
        let _ = std::fs::remove_dir_all(self.seed_dir(seed).join("resume"));
    }

    /// Remove the checkpoints of one completed process of `seed` (others of the seed, which
    /// may be running side by side, are kept).
    pub fn clean_process(&self, seed: u64, label: &str) {
        let dir = self.seed_dir(seed).join("resume");
        let _ = std::fs::remove_file(dir.join(format!("{label}.json")));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let prefix = format!("{label}-");
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.strip_prefix(&prefix)
                    .is_some_and(|s| s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// The observer of resumable runs: stops when the shared step budget is spent, and prints a
/// progress line (step, t_eff, loss, steps per second) at most every `progress_every`.
pub struct RunHooks {
    remaining: Option<Arc<AtomicUsize>>,
    label: String,
    progress_every: Option<Duration>,
    last: Instant,
    start: Instant,
    steps: usize,
}

impl Observer for RunHooks {
    fn observe(&mut self, v: &StepView) -> Result<()> {
        if let Some(r) = &self.remaining {
            // Take one step from the budget, or stop before this step's update.
            if r.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                return Err(Error::Interrupted(format!(
                    "{}: step budget spent at step {}; rerun the same command to resume from \
                     the last checkpoint",
                    self.label, v.record.step
                )));
            }
        }
        self.steps += 1;
        if let Some(p) = self.progress_every
            && self.last.elapsed() >= p
        {
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "[{}] step {:>7}  t_eff {:>9.3}  loss {:.6}  |g| {:.3e}  {:.2} steps/s",
                self.label,
                v.record.step,
                v.record.t_eff,
                v.record.loss,
                v.record.grad_norm,
                self.steps as f64 / secs.max(1e-9)
            );
            self.last = Instant::now();
        }
        Ok(())
    }
}

/// Periodic checkpoints of one process of one seed.
#[derive(Clone, Debug)]
pub struct ProcessCheckpoints {
    dir: PathBuf,
    label: String,
    every: usize,
    seed: u64,
    fingerprint: String,
    config: serde_json::Value,
    restored_at: Option<usize>,
}

impl ProcessCheckpoints {
    /// Checkpoint period in steps.
    pub fn every(&self) -> usize {
        self.every
    }

    fn pointer(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.label))
    }

    /// Restore the latest checkpoint, if any, into `gd` (on its device, in its dtype) and the
    /// measurement state `parts` (the same parts, in the same order, as were saved). Returns
    /// the step restored to.
    pub fn restore(
        &mut self,
        gd: &mut GradientDescent,
        parts: &mut [&mut dyn Stateful],
    ) -> Result<Option<usize>> {
        let ptr = self.pointer();
        if !ptr.exists() {
            return Ok(None);
        }
        let p = read_json(&ptr)?;
        let sub = p
            .get("dir")
            .and_then(|d| d.as_str())
            .ok_or_else(|| Error::data(&ptr, "no \"dir\" in checkpoint pointer"))?;
        let dir = self.dir.join(sub);
        let ck = Checkpoint::load(&dir.join("process.safetensors"))?;
        if ck.meta.dataset_fingerprint != self.fingerprint {
            return Err(Error::Checkpoint {
                path: ck.path.clone(),
                msg: format!(
                    "written for training set {}, this run's is {}",
                    ck.meta.dataset_fingerprint, self.fingerprint
                ),
            });
        }
        if ck.meta.dtype != checkpoint_dtype(gd.model.dtype()) {
            return Err(Error::Checkpoint {
                path: ck.path.clone(),
                msg: format!(
                    "saved in {}, the run is in {}",
                    ck.meta.dtype,
                    checkpoint_dtype(gd.model.dtype())
                ),
            });
        }
        ck.restore_into(gd)?;
        let table = TableReader::open(&dir.join("monitor.safetensors"))?;
        let step = state::get_step(&table)?;
        if step != gd.state.step {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                msg: format!(
                    "process at step {} but measurement state at step {step}",
                    gd.state.step
                ),
            });
        }
        let history = get_history(&table, "hist.")?;
        for p in parts.iter_mut() {
            p.get_state(&table, gd.model.device())?;
        }
        gd.history = history;
        self.restored_at = Some(gd.state.step);
        eprintln!(
            "[resume] seed {} {}: resumed at step {} (t_eff {:.4}) from {}",
            self.seed,
            self.label,
            gd.state.step,
            gd.state.t_eff,
            dir.display()
        );
        Ok(Some(gd.state.step))
    }

    /// Save a checkpoint of `gd` and `parts` if `counter` (steps since the process began) is a
    /// positive multiple of the period and this state was not just restored. Call before
    /// measuring at a step.
    pub fn save_if_due(
        &self,
        counter: usize,
        gd: &GradientDescent,
        parts: &[&mut dyn Stateful],
    ) -> Result<()> {
        if counter == 0 || !counter.is_multiple_of(self.every) {
            return Ok(());
        }
        if self.restored_at == Some(gd.state.step) {
            return Ok(());
        }
        self.save(gd, parts)
    }

    /// Save a checkpoint of `gd` and `parts` now.
    pub fn save(&self, gd: &GradientDescent, parts: &[&mut dyn Stateful]) -> Result<()> {
        let name = format!("{}-{:09}", self.label, gd.state.step);
        let dir = self.dir.join(&name);
        let meta = CheckpointMeta::for_process(
            gd,
            BTreeMap::from([("init".to_string(), self.seed)]),
            &self.fingerprint,
            self.config.clone(),
        );
        checkpoint::save(&dir.join("process.safetensors"), gd, &meta)?;
        state::save_parts(
            &dir.join("monitor.safetensors"),
            gd.state.step,
            &gd.history,
            parts,
        )?;
        write_json(
            &self.pointer(),
            &serde_json::json!({ "dir": name, "step": gd.state.step, "t_eff": gd.state.t_eff }),
        )?;
        // Older checkpoints of this process are superseded.
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let prefix = format!("{}-", self.label);
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n != name
                    && n.strip_prefix(&prefix)
                        .is_some_and(|s| s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}

fn checkpoint_dtype(d: DType) -> &'static str {
    match d {
        DType::F64 => "f64",
        DType::F32 => "f32",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
