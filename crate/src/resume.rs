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
//! Layout under a run directory (per seed): `seed-<s>/resume/<process>.json` points to the
//! latest complete checkpoint `seed-<s>/resume/<process>-<step>/{process,monitor}.safetensors`;
//! the pointer is written last, so a crash mid-write leaves the previous checkpoint in force.
use crate::branch::SeedBranches;
use crate::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::data::atomic::write_atomic;
use crate::experiment::eos::SeedRun;
use crate::metrics::{MetricRow, RunLog};
use crate::sharpness::{EosEntry, SharpnessRecord, SharpnessTracker};
use crate::train::{GradientDescent, Observer, StepRecord, StepView};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The JSON paths (dotted) at which two configurations differ, with both values.
pub fn config_diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value as V;
        match (a, b) {
            (V::Object(x), V::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => walk(&p, u, v, out),
                        (u, v) => out.push(format!(
                            "{p}: {} (directory) vs {} (now)",
                            u.map(|u| u.to_string()).unwrap_or_else(|| "absent".into()),
                            v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into())
                        )),
                    }
                }
            }
            (V::Array(x), V::Array(y)) if x.len() == y.len() => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    walk(&format!("{path}[{i}]"), u, v, out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} (directory) vs {b} (now)")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

/// Remove every `"device"` key (the one setting that may change between a run and its resume).
fn without_device(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "device")
                .map(|(k, v)| (k.clone(), without_device(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(without_device).collect())
        }
        other => other.clone(),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::data(path, format!("not valid JSON: {e}")))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(v).expect("json").as_bytes(),
    )
}

impl Resume {
    /// Open `dir` for the run described by `config` on a training set with `fingerprint`.
    ///
    /// A new (or empty) directory is claimed: `config.json` and `resume.json` are written. An
    /// existing one must hold the same configuration (the device aside) and the same training
    /// set, or this is an error listing the differences; nothing is overwritten.
    pub fn open(
        dir: &Path,
        config: serde_json::Value,
        fingerprint: &str,
        options: ResumeOptions,
    ) -> Result<Resume> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg_path = dir.join("config.json");
        let state_path = dir.join("resume.json");
        if cfg_path.exists() {
            let old = read_json(&cfg_path)?;
            let diff = config_diff(&without_device(&old), &without_device(&config));
            if !diff.is_empty() {
                return Err(Error::Config(format!(
                    "{} holds a run with another configuration; choose another output directory \
                     (or remove that one) rather than mixing runs. Differences: {}",
                    dir.display(),
                    diff.join("; ")
                )));
            }
            let (od, nd) = (find_device(&old), find_device(&config));
            if od != nd {
                eprintln!(
                    "[resume] {}: continuing a run started on {} on {}; results are not \
                     bit-identical to an uninterrupted run on one device",
                    dir.display(),
                    od.as_deref().unwrap_or("?"),
                    nd.as_deref().unwrap_or("?")
                );
            }
            if state_path.exists() {
                let st = read_json(&state_path)?;
                let old_fp = st.get("train_fingerprint").and_then(|v| v.as_str());
                if old_fp != Some(fingerprint) {
                    return Err(Error::Config(format!(
                        "{}: the training set differs from the one this run directory was \
                         started with (fingerprint {} there, {fingerprint} now): the data \
                         directory or its files changed; use another output directory",
                        dir.display(),
                        old_fp.unwrap_or("absent")
                    )));
                }
            } else {
                return Err(Error::Config(format!(
                    "{} holds a run that was not started as resumable (no resume.json); use \
                     another output directory",
                    dir.display()
                )));
            }
        } else {
            let occupied = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .next()
                .is_some();
            if occupied {
                return Err(Error::Config(format!(
                    "{} is not empty and holds no eoslab run (no config.json); use an empty or \
                     new output directory",
                    dir.display()
                )));
            }
            write_json(
                &state_path,
                &serde_json::json!({
                    "format": FORMAT,
                    "train_fingerprint": fingerprint,
                    "eoslab_version": env!("CARGO_PKG_VERSION"),
                }),
            )?;
            write_json(&cfg_path, &config)?;
        }
        Ok(Resume {
            dir: dir.to_path_buf(),
            options,
            fingerprint: fingerprint.to_string(),
            config,
        })
    }

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
}

fn find_device(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => m
            .get("device")
            .and_then(|d| d.as_str().map(String::from))
            .or_else(|| m.values().find_map(find_device)),
        _ => None,
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
    /// measurement state. Returns the step restored to.
    pub fn restore(
        &mut self,
        gd: &mut GradientDescent,
        tracker: &mut SharpnessTracker,
        log: &mut RunLog,
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
        let state = MonitorState::load(&dir.join("monitor.safetensors"), gd.model.device())?;
        if state.step != gd.state.step {
            return Err(Error::Checkpoint {
                path: dir.clone(),
                msg: format!(
                    "process at step {} but measurement state at step {}",
                    gd.state.step, state.step
                ),
            });
        }
        gd.history = state.history;
        tracker.records = state.records;
        tracker.vectors = state.vectors;
        *log = state.log;
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

    /// Save a checkpoint if `counter` (steps since the process began) is a positive multiple
    /// of the period and this state was not just restored. Call before measuring at a step.
    pub fn save_if_due(
        &self,
        counter: usize,
        gd: &GradientDescent,
        tracker: &SharpnessTracker,
        log: &RunLog,
    ) -> Result<()> {
        if counter == 0 || !counter.is_multiple_of(self.every) {
            return Ok(());
        }
        if self.restored_at == Some(gd.state.step) {
            return Ok(());
        }
        self.save(gd, tracker, log)
    }

    /// Save a checkpoint now.
    pub fn save(
        &self,
        gd: &GradientDescent,
        tracker: &SharpnessTracker,
        log: &RunLog,
    ) -> Result<()> {
        let name = format!("{}-{:09}", self.label, gd.state.step);
        let dir = self.dir.join(&name);
        let meta = CheckpointMeta::for_process(
            gd,
            BTreeMap::from([("init".to_string(), self.seed)]),
            &self.fingerprint,
            self.config.clone(),
        );
        checkpoint::save(&dir.join("process.safetensors"), gd, &meta)?;
        MonitorState::save(
            &dir.join("monitor.safetensors"),
            gd.state.step,
            &gd.history,
            tracker,
            log,
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

// ---------------------------------------------------------------------------------------------
// Binary tables in safetensors: exact floats (NaN included), strings by dictionary.

/// Columns to write into one safetensors file.
#[derive(Default)]
pub struct TableWriter {
    cols: Vec<(String, StDtype, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

impl TableWriter {
    /// A `f64` column (any shape whose product is `v.len()`).
    pub fn f64(&mut self, name: &str, v: &[f64], shape: Vec<usize>) {
        let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.cols.push((name.into(), StDtype::F64, shape, b));
    }
    /// A `u64` column.
    pub fn u64(&mut self, name: &str, v: &[u64]) {
        let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.cols
            .push((name.into(), StDtype::U64, vec![v.len()], b));
    }
    /// A string column, stored as indices into a dictionary kept in the metadata.
    pub fn strings<'a>(&mut self, name: &str, v: impl IntoIterator<Item = &'a str>) {
        let mut dict: Vec<String> = Vec::new();
        let mut index: HashMap<String, u64> = HashMap::new();
        let idx: Vec<u64> = v
            .into_iter()
            .map(|s| {
                *index.entry(s.to_string()).or_insert_with(|| {
                    dict.push(s.to_string());
                    dict.len() as u64 - 1
                })
            })
            .collect();
        self.u64(name, &idx);
        self.meta.insert(
            format!("dict.{name}"),
            serde_json::to_string(&dict).expect("json"),
        );
    }
    /// A tensor, in its own dtype (f32 or f64), from any device.
    pub fn tensor(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let t = t.flatten_all()?.to_device(&Device::Cpu)?;
        let (dt, b): (StDtype, Vec<u8>) = match t.dtype() {
            DType::F64 => (
                StDtype::F64,
                t.to_vec1::<f64>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            DType::F32 => (
                StDtype::F32,
                t.to_vec1::<f32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            d => return Err(Error::Config(format!("cannot store a {d:?} tensor"))),
        };
        self.cols.push((name.into(), dt, vec![t.elem_count()], b));
        Ok(())
    }
    /// A metadata entry.
    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.meta.insert(key.into(), value.into());
    }
    /// Write atomically.
    pub fn write(mut self, path: &Path) -> Result<()> {
        self.meta.insert("format".into(), FORMAT.into());
        let views = self
            .cols
            .iter()
            .map(|(n, dt, s, b)| TensorView::new(*dt, s.clone(), b).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::data(path, e.to_string()))?;
        let bytes = safetensors::serialize(views, Some(self.meta))
            .map_err(|e| Error::data(path, e.to_string()))?;
        write_atomic(path, &bytes)
    }
}

/// Columns read back from a [`TableWriter`] file.
pub struct TableReader {
    path: PathBuf,
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
}

impl TableReader {
    /// Read and check the format tag.
    pub fn open(path: &Path) -> Result<TableReader> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::data(path, format!("not a safetensors file ({e})")))?;
        let meta = md.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::data(path, format!("not an {FORMAT} file")));
        }
        Ok(TableReader {
            path: path.into(),
            bytes,
            meta,
        })
    }
    fn raw(&self, name: &str) -> Result<(StDtype, Vec<usize>, Vec<u8>)> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::data(&self.path, format!("corrupt ({e})")))?;
        let v = st
            .tensor(name)
            .map_err(|_| Error::data(&self.path, format!("column {name} missing")))?;
        Ok((v.dtype(), v.shape().to_vec(), v.data().to_vec()))
    }
    /// Whether a column exists.
    pub fn has(&self, name: &str) -> bool {
        self.raw(name).is_ok()
    }
    /// A `f64` column.
    pub fn f64(&self, name: &str) -> Result<Vec<f64>> {
        let (dt, _, b) = self.raw(name)?;
        if dt != StDtype::F64 {
            return Err(Error::data(
                &self.path,
                format!("column {name} is {dt:?}, not F64"),
            ));
        }
        Ok(b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect())
    }
    /// A `u64` column.
    pub fn u64(&self, name: &str) -> Result<Vec<u64>> {
        let (dt, _, b) = self.raw(name)?;
        if dt != StDtype::U64 {
            return Err(Error::data(
                &self.path,
                format!("column {name} is {dt:?}, not U64"),
            ));
        }
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect())
    }
    /// A string column.
    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let dict: Vec<String> = serde_json::from_str(
            self.meta
                .get(&format!("dict.{name}"))
                .ok_or_else(|| Error::data(&self.path, format!("dictionary of {name} missing")))?,
        )
        .map_err(|e| Error::data(&self.path, e.to_string()))?;
        self.u64(name)?
            .into_iter()
            .map(|i| {
                dict.get(i as usize).cloned().ok_or_else(|| {
                    Error::data(&self.path, format!("{name}: index {i} out of range"))
                })
            })
            .collect()
    }
    /// A tensor column on `device`, in the dtype it was saved in.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let (dt, shape, b) = self.raw(name)?;
        let t = match dt {
            StDtype::F64 => Tensor::from_vec(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            )?,
            StDtype::F32 => Tensor::from_vec(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                    .collect::<Vec<_>>(),
                shape,
                &Device::Cpu,
            )?,
            d => {
                return Err(Error::data(
                    &self.path,
                    format!("tensor {name} has dtype {d:?}"),
                ));
            }
        };
        Ok(t.to_device(device)?)
    }
    /// A metadata entry.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::data(&self.path, format!("metadata {key} missing")))
    }
}

/// Write a metric log's rows as columns with prefix `p`.
pub fn put_log(w: &mut TableWriter, p: &str, log: &RunLog) {
    let r = &log.rows;
    w.meta(&format!("{p}run"), log.run.clone());
    w.strings(&format!("{p}branch"), r.iter().map(|x| x.branch.as_str()));
    w.strings(&format!("{p}group"), r.iter().map(|x| x.group.as_str()));
    w.strings(&format!("{p}metric"), r.iter().map(|x| x.metric.as_str()));
    w.u64(
        &format!("{p}seed"),
        &r.iter().map(|x| x.seed).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}step"),
        &r.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    let n = r.len();
    w.f64(
        &format!("{p}t_eff"),
        &r.iter().map(|x| x.t_eff).collect::<Vec<_>>(),
        vec![n],
    );
    w.f64(
        &format!("{p}value"),
        &r.iter().map(|x| x.value).collect::<Vec<_>>(),
        vec![n],
    );
}

/// Read a metric log written by [`put_log`].
pub fn get_log(t: &TableReader, p: &str) -> Result<RunLog> {
    let (branch, group, metric) = (
        t.strings(&format!("{p}branch"))?,
        t.strings(&format!("{p}group"))?,
        t.strings(&format!("{p}metric"))?,
    );
    let (seed, step) = (t.u64(&format!("{p}seed"))?, t.u64(&format!("{p}step"))?);
    let (t_eff, value) = (t.f64(&format!("{p}t_eff"))?, t.f64(&format!("{p}value"))?);
    let n = branch.len();
    if [
        group.len(),
        metric.len(),
        seed.len(),
        step.len(),
        t_eff.len(),
        value.len(),
    ]
    .iter()
    .any(|&k| k != n)
    {
        return Err(Error::data(&t.path, "log columns have different lengths"));
    }
    let mut log = RunLog::new(t.meta(&format!("{p}run"))?);
    for i in 0..n {
        log.rows.push(MetricRow {
            branch: branch[i].clone(),
            seed: seed[i],
            step: step[i] as usize,
            t_eff: t_eff[i],
            group: group[i].clone(),
            metric: metric[i].clone(),
            value: value[i],
        });
    }
    Ok(log)
}

/// The measurement state of a process at a step: sharpness records, warm-start vectors, log,
/// and the process's loss history.
pub struct MonitorState {
    /// Step of the process when saved.
    pub step: usize,
    /// The process's per-step records so far.
    pub history: Vec<StepRecord>,
    /// Sharpness records so far.
    pub records: Vec<SharpnessRecord>,
    /// Latest eigenvectors (warm start).
    pub vectors: Option<Vec<Tensor>>,
    /// Metric log so far.
    pub log: RunLog,
}

impl MonitorState {
    /// Save (atomically).
    pub fn save(
        path: &Path,
        step: usize,
        history: &[StepRecord],
        tracker: &SharpnessTracker,
        log: &RunLog,
    ) -> Result<()> {
        let mut w = TableWriter::default();
        w.meta("step", step.to_string());
        put_history(&mut w, "hist.", history);
        put_records(&mut w, "rec.", &tracker.records);
        if let Some(vs) = &tracker.vectors {
            w.meta("vectors", vs.len().to_string());
            for (i, v) in vs.iter().enumerate() {
                w.tensor(&format!("vector.{i}"), v)?;
            }
        }
        put_log(&mut w, "log.", log);
        w.write(path)
    }

    /// Load, with the eigenvectors on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<MonitorState> {
        let t = TableReader::open(path)?;
        let step: usize = t
            .meta("step")?
            .parse()
            .map_err(|_| Error::data(path, "bad step"))?;
        let records = get_records(&t, "rec.")?;
        let vectors = match t.meta("vectors") {
            Ok(n) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| Error::data(path, "bad vector count"))?;
                Some(
                    (0..n)
                        .map(|i| t.tensor(&format!("vector.{i}"), device))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            Err(_) => None,
        };
        Ok(MonitorState {
            step,
            history: get_history(&t, "hist.")?,
            records,
            vectors,
            log: get_log(&t, "log.")?,
        })
    }
}

/// Write sharpness records as columns with prefix `p`.
pub fn put_records(w: &mut TableWriter, p: &str, r: &[SharpnessRecord]) {
    let n = r.len();
    let col = |f: fn(&SharpnessRecord) -> f64| r.iter().map(f).collect::<Vec<_>>();
    w.u64(
        &format!("{p}k"),
        &r.iter().map(|x| x.values.len() as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}step"),
        &r.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}iterations"),
        &r.iter().map(|x| x.iterations as u64).collect::<Vec<_>>(),
    );
    w.u64(
        &format!("{p}flags"),
        &r.iter()
            .map(|x| x.converged as u64 | (x.warm as u64) << 1)
            .collect::<Vec<_>>(),
    );
    w.f64(&format!("{p}t_eff"), &col(|x| x.t_eff), vec![n]);
    w.f64(&format!("{p}lr"), &col(|x| x.lr), vec![n]);
    w.f64(&format!("{p}threshold"), &col(|x| x.threshold), vec![n]);
    let vals: Vec<f64> = r.iter().flat_map(|x| x.values.iter().copied()).collect();
    let res: Vec<f64> = r.iter().flat_map(|x| x.residuals.iter().copied()).collect();
    w.f64(&format!("{p}values"), &vals, vec![vals.len()]);
    w.f64(&format!("{p}residuals"), &res, vec![res.len()]);
}

/// Read sharpness records written by [`put_records`].
pub fn get_records(t: &TableReader, p: &str) -> Result<Vec<SharpnessRecord>> {
    let c = |n: &str| format!("{p}{n}");
    let (k, st, it, fl) = (
        t.u64(&c("k"))?,
        t.u64(&c("step"))?,
        t.u64(&c("iterations"))?,
        t.u64(&c("flags"))?,
    );
    let (te, lr, th) = (
        t.f64(&c("t_eff"))?,
        t.f64(&c("lr"))?,
        t.f64(&c("threshold"))?,
    );
    let (vals, res) = (t.f64(&c("values"))?, t.f64(&c("residuals"))?);
    let n = k.len();
    if [st.len(), it.len(), fl.len(), te.len(), lr.len(), th.len()]
        .iter()
        .any(|&m| m != n)
    {
        return Err(Error::data(
            &t.path,
            "sharpness columns have different lengths",
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut off = 0;
    for i in 0..n {
        let ki = k[i] as usize;
        if off + ki > vals.len() || off + ki > res.len() {
            return Err(Error::data(&t.path, "sharpness records truncated"));
        }
        out.push(SharpnessRecord {
            step: st[i] as usize,
            t_eff: te[i],
            lr: lr[i],
            threshold: th[i],
            values: vals[off..off + ki].to_vec(),
            residuals: res[off..off + ki].to_vec(),
            iterations: it[i] as usize,
            converged: fl[i] & 1 == 1,
            warm: fl[i] & 2 == 2,
        });
        off += ki;
    }
    Ok(out)
}

/// Write per-step records as columns with prefix `p`.
pub fn put_history(w: &mut TableWriter, p: &str, h: &[StepRecord]) {
    let n = h.len();
    let col = |f: fn(&StepRecord) -> f64| h.iter().map(f).collect::<Vec<_>>();
    w.u64(
        &format!("{p}step"),
        &h.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
    );
    w.f64(&format!("{p}t_eff"), &col(|x| x.t_eff), vec![n]);
    w.f64(&format!("{p}lr"), &col(|x| x.lr), vec![n]);
    w.f64(&format!("{p}loss"), &col(|x| x.loss), vec![n]);
    w.f64(&format!("{p}grad_norm"), &col(|x| x.grad_norm), vec![n]);
}

/// Read per-step records written by [`put_history`].
pub fn get_history(t: &TableReader, p: &str) -> Result<Vec<StepRecord>> {
    let c = |n: &str| format!("{p}{n}");
    let st = t.u64(&c("step"))?;
    let (te, lr, lo, gn) = (
        t.f64(&c("t_eff"))?,
        t.f64(&c("lr"))?,
        t.f64(&c("loss"))?,
        t.f64(&c("grad_norm"))?,
    );
    if [te.len(), lr.len(), lo.len(), gn.len()]
        .iter()
        .any(|&m| m != st.len())
    {
        return Err(Error::data(
            &t.path,
            "history columns have different lengths",
        ));
    }
    Ok((0..st.len())
        .map(|i| StepRecord {
            step: st[i] as usize,
            t_eff: te[i],
            lr: lr[i],
            loss: lo[i],
            grad_norm: gn[i],
        })
        .collect())
}

/// Persist a completed training run of the `eos` claim under `name`.
pub fn save_eos_run(r: &Resume, name: &str, run: &SeedRun) -> Result<()> {
    let mut w = TableWriter::default();
    w.meta("seed", run.seed.to_string());
    let e = run.entry;
    w.f64(
        "scalars",
        &[
            run.lr,
            run.seconds,
            e.is_some() as u8 as f64,
            e.map(|e| e.step as f64).unwrap_or(f64::NAN),
            e.map(|e| e.t_star).unwrap_or(f64::NAN),
            e.map(|e| e.t_eff).unwrap_or(f64::NAN),
        ],
        vec![6],
    );
    put_history(&mut w, "hist.", &run.history);
    put_records(&mut w, "rec.", &run.sharpness);
    w.write(&r.done_path(name))
}

/// A completed training run of the `eos` claim, if persisted.
pub fn load_eos_run(r: &Resume, name: &str) -> Result<Option<SeedRun>> {
    let path = r.done_path(name);
    if !path.exists() {
        return Ok(None);
    }
    let t = TableReader::open(&path)?;
    let sc = t.f64("scalars")?;
    if sc.len() != 6 {
        return Err(Error::data(&path, "scalars: expected 6 values"));
    }
    let seed: u64 = t
        .meta("seed")?
        .parse()
        .map_err(|_| Error::data(&path, "bad seed"))?;
    eprintln!("[resume] {name}: already complete in {}", path.display());
    Ok(Some(SeedRun {
        lr: sc[0],
        seed,
        history: get_history(&t, "hist.")?,
        sharpness: get_records(&t, "rec.")?,
        entry: (sc[2] == 1.0).then(|| EosEntry {
            step: sc[3] as usize,
            t_star: sc[4],
            t_eff: sc[5],
        }),
        seconds: sc[1],
    }))
}

/// Persist a completed seed (bit-exact) so that a rerun skips it; its checkpoints are removed.
pub fn save_seed(r: &Resume, s: &SeedBranches) -> Result<()> {
    let mut w = TableWriter::default();
    w.meta("seed", s.seed.to_string());
    w.meta("fork_step", s.fork_step.to_string());
    w.f64(
        "scalars",
        &[
            s.t_star,
            s.t_star2.unwrap_or(f64::NAN),
            s.t_star2.is_some() as u8 as f64,
            s.window.0,
            s.window.1,
        ],
        vec![5],
    );
    let groups: Vec<&String> = s.window_delta.keys().collect();
    w.meta(
        "window_groups",
        serde_json::to_string(&groups).expect("json"),
    );
    w.f64(
        "window_delta",
        &s.window_delta.values().copied().collect::<Vec<_>>(),
        vec![groups.len()],
    );
    let dgroups: Vec<&String> = s.delta.keys().collect();
    w.meta(
        "delta_groups",
        serde_json::to_string(&dgroups).expect("json"),
    );
    for (i, d) in s.delta.values().enumerate() {
        let flat: Vec<f64> = d.iter().flat_map(|&(t, v)| [t, v]).collect();
        w.f64(&format!("delta.{i}"), &flat, vec![d.len(), 2]);
    }
    put_log(&mut w, "log.", &s.log);
    w.write(&r.seed_result_path(s.seed))?;
    r.clean_seed(s.seed);
    Ok(())
}

/// A completed seed's result, if this run directory has one.
pub fn load_seed(r: &Resume, seed: u64) -> Result<Option<SeedBranches>> {
    let path = r.seed_result_path(seed);
    if !path.exists() {
        return Ok(None);
    }
    let t = TableReader::open(&path)?;
    let bad = |m: &str| Error::data(&path, m.to_string());
    let saved_seed: u64 = t.meta("seed")?.parse().map_err(|_| bad("bad seed"))?;
    if saved_seed != seed {
        return Err(bad(&format!("holds seed {saved_seed}, expected {seed}")));
    }
    let fork_step: usize = t
        .meta("fork_step")?
        .parse()
        .map_err(|_| bad("bad fork_step"))?;
    let sc = t.f64("scalars")?;
    if sc.len() != 5 {
        return Err(bad("scalars: expected 5 values"));
    }
    let names = |key: &str| -> Result<Vec<String>> {
        serde_json::from_str(t.meta(key)?).map_err(|e| bad(&e.to_string()))
    };
    let wg = names("window_groups")?;
    let wd = t.f64("window_delta")?;
    if wd.len() != wg.len() {
        return Err(bad("window_delta length"));
    }
    let mut delta = BTreeMap::new();
    for (i, g) in names("delta_groups")?.into_iter().enumerate() {
        let flat = t.f64(&format!("delta.{i}"))?;
        delta.insert(g, flat.chunks_exact(2).map(|c| (c[0], c[1])).collect());
    }
    eprintln!(
        "[resume] seed {seed}: already complete in {}",
        path.display()
    );
    Ok(Some(SeedBranches {
        seed,
        fork_step,
        t_star: sc[0],
        t_star2: (sc[2] == 1.0).then_some(sc[1]),
        window: (sc[3], sc[4]),
        log: get_log(&t, "log.")?,
        delta,
        window_delta: wg.into_iter().zip(wd).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_every_changed_field_and_ignores_device() {
        let a = serde_json::json!({"run": {"lr": 0.01, "device": "cpu", "hidden": [512, 512]}, "seeds": [0, 1]});
        let b = serde_json::json!({"run": {"lr": 0.02, "device": "cuda:0", "hidden": [512, 256]}, "seeds": [0, 1]});
        let d = config_diff(&without_device(&a), &without_device(&b));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("run.hidden[1]: 512"), "{d:?}");
        assert!(d[1].starts_with("run.lr: 0.01"), "{d:?}");
    }

    #[test]
    fn log_roundtrip_is_exact_with_nan() {
        let mut log = RunLog::new("x");
        for (i, v) in [1.0 / 3.0, f64::NAN, -0.0, 1e-310].iter().enumerate() {
            log.rows.push(MetricRow {
                branch: if i % 2 == 0 { "eos" } else { "stable" }.into(),
                seed: 7,
                step: i * 32,
                t_eff: i as f64 * 0.01,
                group: "inlier".into(),
                metric: "loss".into(),
                value: *v,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let mut w = TableWriter::default();
        put_log(&mut w, "", &log);
        w.write(&p).unwrap();
        let back = get_log(&TableReader::open(&p).unwrap(), "").unwrap();
        assert_eq!(back.rows.len(), 4);
        for (a, b) in log.rows.iter().zip(&back.rows) {
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!((&a.branch, a.step, a.t_eff), (&b.branch, b.step, b.t_eff));
        }
    }

    #[test]
    fn open_refuses_foreign_and_mismatched_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"run": {"lr": 0.01, "device": "cpu"}});
        let d = dir.path().join("run");
        Resume::open(&d, cfg.clone(), "abc", ResumeOptions::default()).unwrap();
        // Same config on another device: fine. Other lr, or other data: errors.
        let other_dev = serde_json::json!({"run": {"lr": 0.01, "device": "cuda:0"}});
        Resume::open(&d, other_dev, "abc", ResumeOptions::default()).unwrap();
        let e = Resume::open(
            &d,
            serde_json::json!({"run": {"lr": 0.02, "device": "cpu"}}),
            "abc",
            ResumeOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("run.lr: 0.01 (directory) vs 0.02 (now)"), "{e}");
        let e = Resume::open(&d, cfg.clone(), "xyz", ResumeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("training set differs"), "{e}");
        let foreign = dir.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
        let e = Resume::open(&foreign, cfg, "abc", ResumeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not empty"), "{e}");
    }
}
