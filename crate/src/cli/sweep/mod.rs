//! `eoslab sweep`: a claim over seeds and settings as independent tasks — one per (point on the
//! axes, seed), each with its exact options and its own run directory — written to a sweep
//! directory with a Slurm batch script for a job array; submitted with `sbatch` (`--submit`)
//! or run as local processes (`--local -j N`). Both paths run the same `eoslab task DIR I`
//! ([`run_task`], with [`submit`] and [`run_local`] in `run`); `eoslab collect`
//! ([`super::collect`]) turns finished tasks into verdicts.
//!
//! Layout: `sweep.json` (the claim, its options, the axes and every task), `sweep.sbatch`,
//! `tasks/<i>/` (task i's run directory, resumable; `done.json` once finished, `failed.json`
//! after an error), `logs/task-<i>.{out,err}` (appended to across requeues), `jobs.txt` (one
//! line per submission). No two tasks write the same file.
mod run;

pub use run::{run_local, run_task, submit};

use crate::atomic::write_atomic;
use crate::experiment::options::ClaimOptions;
use crate::experiment::presets::Preset;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format tag of `sweep.json`.
pub const FORMAT: &str = "eoslab-sweep-v1";

/// Short names of common axes and the configuration field each sets.
pub const ALIASES: [(&str, &str); 4] = [
    ("m", "design.m"),
    ("lr", "run.lr"),
    ("loss", "run.loss"),
    ("per_class", "groups.per_class"),
];

/// One axis of a sweep: a configuration field (a `--set` path) and the values it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// The field, e.g. `design.m`.
    pub path: String,
    /// Its values, as `--set` takes them (JSON, or a plain string).
    pub values: Vec<String>,
}

impl std::str::FromStr for Axis {
    type Err = Error;
    /// `PATH=V1,V2,…` (commas inside brackets belong to the value), PATH a field or an alias.
    fn from_str(s: &str) -> Result<Axis> {
        let bad = |why: &str| Error::Config(format!("--axis {s:?}: {why} (PATH=V1,V2,…)"));
        let (path, vals) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let path = path.trim();
        let path = ALIASES
            .iter()
            .find(|(a, _)| *a == path)
            .map_or(path, |(_, p)| p);
        if path.is_empty() || path == "seeds" {
            return Err(bad("give seeds with --seeds N; other axes name a field"));
        }
        let (mut values, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
        for c in vals.chars() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    values.push(std::mem::take(&mut cur).trim().to_string());
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        values.push(cur.trim().to_string());
        if values.iter().any(String::is_empty) {
            return Err(bad("an empty value"));
        }
        Ok(Axis {
            path: path.to_string(),
            values,
        })
    }
}

/// Slurm resources of each array task (the `eoslab sweep` options of the same names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct SlurmOptions {
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task (e.g. 6:00:00); a task past it is killed, and resumes from its last
    /// checkpoint when requeued or resubmitted.
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (`--gres=gpu:N`).
    #[arg(long)]
    pub gpus: Option<usize>,
    /// Memory per task (e.g. 16G).
    #[arg(long)]
    pub mem: Option<String>,
    /// CPUs per task (default 1; the task's threads).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// At most this many tasks running at once (`--array=…%N`).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// A further `#SBATCH` option, verbatim (e.g. `--sbatch=--account=abc`); repeatable.
    #[arg(long = "sbatch", value_name = "OPTION")]
    pub extra: Vec<String>,
}

/// One task: a point on the axes and a seed, with the exact options of its claim run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its index (the array index).
    pub index: usize,
    /// The point: `(field, value)` per axis.
    pub point: Vec<(String, String)>,
    /// The seed.
    pub seed: u64,
    /// The claim's options (its output directory is set when it runs).
    pub options: ClaimOptions,
}

/// A sweep as `sweep.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// [`FORMAT`].
    pub format: String,
    /// The claim.
    pub claim: String,
    /// Its options before the axes (no seeds, no output directory).
    pub base: ClaimOptions,
    /// Seeds of every point.
    pub seeds: Vec<u64>,
    /// The axes besides the seed.
    pub axes: Vec<Axis>,
    /// Slurm resources.
    pub slurm: SlurmOptions,
    /// Every task, points in axis order, seeds innermost.
    pub tasks: Vec<Task>,
}

/// Whether a task has finished, failed, or not (yet) either.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// `done.json` is there.
    Done,
    /// `failed.json` is there: the error.
    Failed(String),
    /// Neither: never run, running, or killed.
    Missing,
}

impl Sweep {
    /// Plan a sweep of claim `claim`: `opts` with `--seeds` (default: the preset's), each point
    /// of `axes`; every option is checked before anything is written.
    pub fn plan(
        claim: &str,
        opts: &ClaimOptions,
        axes: Vec<Axis>,
        slurm: SlurmOptions,
    ) -> Result<Sweep> {
        if opts.out.is_some() || opts.step_budget.is_some() {
            return Err(Error::Config(
                "a sweep's tasks have their own directories and run to the end: no --out or \
                 --step-budget (the sweep directory is the positional argument)"
                    .into(),
            ));
        }
        let (_, preset) = super::resolve(claim, opts)?;
        let seeds: Vec<u64> = match opts.seeds {
            Some(n) => (0..n as u64).collect(),
            None => default_seeds(claim, &preset),
        };
        // Tasks run wherever Slurm starts them: data paths are made absolute.
        let abs = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        };
        let mut base = ClaimOptions {
            seeds: None,
            data_dir: abs(&opts.data_dir),
            ..opts.clone()
        };
        base.data.path = abs(&opts.data.path);
        let mut tasks = Vec::new();
        for point in points(&axes) {
            for &seed in &seeds {
                let mut options = base.clone();
                options.set.extend(point_sets(&point));
                options.set.push(format!("seeds=[{seed}]"));
                tasks.push(Task {
                    index: tasks.len(),
                    point: point.clone(),
                    seed,
                    options,
                });
            }
        }
        let sweep = Sweep {
            format: FORMAT.into(),
            claim: claim.into(),
            base,
            seeds,
            axes,
            slurm,
            tasks,
        };
        for t in &sweep.tasks {
            check_options(claim, &t.options, &preset)?;
        }
        Ok(sweep)
    }

    /// Read `dir/sweep.json`.
    pub fn load(dir: &Path) -> Result<Sweep> {
        let path = dir.join("sweep.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let s: Sweep = serde_json::from_slice(&bytes)
            .map_err(|e| Error::data(&path, format!("not a sweep: {e}")))?;
        if s.format != FORMAT {
            return Err(Error::data(
                &path,
                format!("format {:?}, expected {FORMAT}", s.format),
            ));
        }
        if s.tasks.iter().enumerate().any(|(i, t)| t.index != i) {
            return Err(Error::data(&path, "task indices out of order"));
        }
        Ok(s)
    }

    /// Write the sweep into `dir` (with its batch script running `exe`); a directory that
    /// already holds this sweep keeps its tasks (its Slurm resources may change: a longer
    /// time limit, say), one holding another is an error.
    pub fn write(&self, dir: &Path, exe: &Path) -> Result<()> {
        let path = dir.join("sweep.json");
        if path.exists() {
            let old = Sweep {
                slurm: self.slurm.clone(),
                ..Sweep::load(dir)?
            };
            if old != *self {
                return Err(Error::data(
                    &path,
                    "holds another sweep (other claim, options, seeds or axes); use a new \
                     directory",
                ));
            }
        }
        for d in ["tasks", "logs"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| Error::io(dir.join(d), e))?;
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(self).expect("json");
        write_atomic(&path, json.as_bytes())?;
        write_atomic(
            &dir.join("sweep.sbatch"),
            self.batch_script(&dir, exe).as_bytes(),
        )
    }

    /// The Slurm batch script of the job array: one array task per sweep task.
    pub fn batch_script(&self, dir: &Path, exe: &Path) -> String {
        let s = &self.slurm;
        let n = self.tasks.len();
        let mut o = vec![
            "#!/bin/bash".to_string(),
            format!(
                "# eoslab sweep of claim {}: {n} tasks, one per array index; `eoslab sweep \
                 --submit` submits the unfinished ones, `eoslab collect {}` gathers them.",
                self.claim,
                dir.display()
            ),
            format!("#SBATCH --job-name=eoslab-{}", self.claim),
            format!(
                "#SBATCH --array={}",
                array_spec(&(0..n).collect::<Vec<_>>(), s)
            ),
            format!("#SBATCH --output={}/logs/task-%a.out", dir.display()),
            format!("#SBATCH --error={}/logs/task-%a.err", dir.display()),
            // A requeued task appends to its logs and continues from its last checkpoint.
            "#SBATCH --open-mode=append".into(),
            "#SBATCH --requeue".into(),
            format!("#SBATCH --cpus-per-task={}", s.cpus_per_task.unwrap_or(1)),
        ];
        let opt = |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("#SBATCH --{k}={v}"));
        o.extend(opt("partition", &s.partition));
        o.extend(opt("time", &s.time));
        o.extend(opt("mem", &s.mem));
        o.extend(s.gpus.map(|g| format!("#SBATCH --gres=gpu:{g}")));
        o.extend(s.extra.iter().map(|e| format!("#SBATCH {e}")));
        o.push("set -euo pipefail".into());
        // A task computes with the threads Slurm gave it, whatever the node's size: with one
        // CPU (the default) the bits of `eoslab claim --jobs N`, on any node.
        o.push("export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"".into());
        o.push("export EOSLAB_JOBS=\"${SLURM_CPUS_PER_TASK:-1}\"".into());
        o.push(format!(
            "exec {} task {} \"$SLURM_ARRAY_TASK_ID\"",
            shell_quote(&exe.display().to_string()),
            shell_quote(&dir.display().to_string())
        ));
        o.join("\n") + "\n"
    }

    /// Task `i`'s run directory under sweep directory `dir`.
    pub fn task_dir(dir: &Path, i: usize) -> PathBuf {
        dir.join("tasks").join(i.to_string())
    }

    /// Where task `i` stands.
    pub fn status(dir: &Path, i: usize) -> Status {
        let d = Sweep::task_dir(dir, i);
        if d.join("done.json").exists() {
            return Status::Done;
        }
        match std::fs::read_to_string(d.join("failed.json")) {
            Ok(s) => Status::Failed(
                serde_json::from_str::<serde_json::Value>(&s)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or(s),
            ),
            Err(_) => Status::Missing,
        }
    }

    /// Indices of the tasks not finished.
    pub fn unfinished(&self, dir: &Path) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| Sweep::status(dir, i) != Status::Done)
            .collect()
    }
}

/// Every point of the axes (their cartesian product, the first axis outermost); one empty
/// point without axes.
fn points(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out = vec![Vec::new()];
    for a in axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                a.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((a.path.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    out
}

/// A point as `--set` overrides.
pub fn point_sets(point: &[(String, String)]) -> Vec<String> {
    point.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The preset's seeds for claim `claim`.
fn default_seeds(claim: &str, preset: &Preset) -> Vec<u64> {
    match claim {
        "eos" => preset.eos().seeds,
        "alignment" => preset.alignment().0.seeds,
        "saturation" => preset.saturation().0.seeds,
        _ => preset.tradeoff().seeds,
    }
}

/// Apply a task's options to the claim's configurations, as its run will (a misspelt field or
/// a bad value is an error now, not in every task); the device is opened by the task itself,
/// since a sweep is often written on a machine without the task's GPU.
fn check_options(claim: &str, opts: &ClaimOptions, preset: &Preset) -> Result<()> {
    let o = ClaimOptions {
        device: None,
        ..opts.clone()
    };
    if claim == "eos" {
        return o.apply_eos(&mut preset.eos());
    }
    let cfgs = match claim {
        "alignment" => <[_; 2]>::from(preset.alignment()).to_vec(),
        "saturation" => <[_; 2]>::from(preset.saturation()).to_vec(),
        _ if o.design.as_deref() == Some("enter") => vec![preset.enter()],
        _ if o.design.as_deref() == Some("both") => vec![preset.tradeoff(), preset.enter()],
        _ => vec![preset.tradeoff()],
    };
    for mut c in cfgs {
        o.apply(&mut c)?;
    }
    Ok(())
}

/// `--array` of the indices `ids` (ranges where consecutive), with `%max_parallel`.
pub fn array_spec(ids: &[usize], s: &SlurmOptions) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", ids[i], ids[j])
        } else {
            ids[i].to_string()
        });
        i = j + 1;
    }
    let mut a = parts.join(",");
    if let Some(m) = s.max_parallel {
        a.push_str(&format!("%{m}"));
    }
    a
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_parse_with_aliases_and_bracketed_values() {
        let a: Axis = "m=0.1, 0.5".parse().unwrap();
        assert_eq!(
            (a.path.as_str(), a.values),
            ("design.m", vec!["0.1".into(), "0.5".into()])
        );
        let b: Axis = "lrs=[0.1,0.2],[0.05]".parse().unwrap();
        assert_eq!(b.values, ["[0.1,0.2]", "[0.05]"]);
        for bad in ["m", "m=", "m=0.1,,0.2", "seeds=0,1", "=1"] {
            assert!(bad.parse::<Axis>().is_err(), "{bad}");
        }
    }

    #[test]
    fn arrays_compress_to_ranges() {
        let s = SlurmOptions::default();
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8], &s), "0-2,5,7-8");
        let m = SlurmOptions {
            max_parallel: Some(4),
            ..s
        };
        assert_eq!(array_spec(&[3], &m), "3%4");
    }

    #[test]
    fn a_sweep_is_one_task_per_point_and_seed() {
        let opts = ClaimOptions {
            preset: Some("digits".into()),
            seeds: Some(2),
            ..ClaimOptions::default()
        };
        let axes = vec!["m=0.1,0.5".parse().unwrap()];
        let slurm = SlurmOptions {
            gpus: Some(1),
            time: Some("6:00:00".into()),
            ..SlurmOptions::default()
        };
        let s = Sweep::plan("tradeoff", &opts, axes, slurm).unwrap();
        assert_eq!(s.tasks.len(), 4);
        assert_eq!(
            s.tasks[3].options.set,
            ["design.m=0.5".to_string(), "seeds=[1]".into()]
        );
        assert_eq!(s.tasks[3].options.seeds, None);
        let script = s.batch_script(Path::new("/sw"), Path::new("/bin/eoslab"));
        for line in [
            "#SBATCH --array=0-3",
            "#SBATCH --output=/sw/logs/task-%a.out",
            "#SBATCH --requeue",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --time=6:00:00",
            "exec '/bin/eoslab' task '/sw' \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(script.lines().any(|l| l == line), "{line} not in\n{script}");
        }
        let bad = |axes: Vec<Axis>| {
            Sweep::plan("tradeoff", &opts, axes, SlurmOptions::default())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(bad(vec!["design.mm=0.1".parse().unwrap()]).contains("mm"));
        let tmp = tempfile::tempdir().unwrap();
        s.write(tmp.path(), Path::new("/bin/eoslab")).unwrap();
        s.write(tmp.path(), Path::new("/bin/eoslab")).unwrap();
        // Other resources are the same sweep: the script changes, the tasks stay.
        let longer = Sweep {
            slurm: SlurmOptions {
                time: Some("12:00:00".into()),
                ..s.slurm.clone()
            },
            ..s.clone()
        };
        longer.write(tmp.path(), Path::new("/bin/eoslab")).unwrap();
        let script = std::fs::read_to_string(tmp.path().join("sweep.sbatch")).unwrap();
        assert!(script.contains("#SBATCH --time=12:00:00"), "{script}");
        let other = Sweep::plan("tradeoff", &opts, vec![], SlurmOptions::default()).unwrap();
        let e = other
            .write(tmp.path(), Path::new("/bin/eoslab"))
            .unwrap_err();
        assert!(e.to_string().contains("holds another sweep"), "{e}");
        assert_eq!(s.unfinished(tmp.path()), [0, 1, 2, 3]);
    }
}
