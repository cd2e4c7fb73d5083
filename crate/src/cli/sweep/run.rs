//! Running a sweep's tasks: one task in this process (`eoslab task`, what every array task and
//! local process runs), the unfinished ones submitted to Slurm, or run here as processes.
use super::{Status, Sweep, array_spec};
use crate::atomic::write_atomic;
use crate::experiment::options::ClaimOptions;
use crate::verdict::Verdict;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Run task `i` of the sweep in `dir` (what each array task and each local process does): a
/// finished task is skipped, an interrupted one continues from its last checkpoint. Returns
/// its verdicts (none when it was already finished).
pub fn run_task(dir: &Path, i: usize) -> Result<Vec<Verdict>> {
    let sweep = Sweep::load(dir)?;
    let task = sweep.tasks.get(i).ok_or_else(|| {
        Error::Config(format!(
            "task {i} does not exist: {} has tasks 0..{}",
            dir.join("sweep.json").display(),
            sweep.tasks.len()
        ))
    })?;
    let tdir = Sweep::task_dir(dir, i);
    if Sweep::status(dir, i) == Status::Done {
        eprintln!("[task {i}] already finished ({})", tdir.display());
        return Ok(Vec::new());
    }
    let _ = std::fs::remove_file(tdir.join("failed.json"));
    eprintln!(
        "[task {i}] claim {} seed {}{}",
        sweep.claim,
        task.seed,
        task.point
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect::<String>()
    );
    let opts = ClaimOptions {
        out: Some(tdir.clone()),
        ..task.options.clone()
    };
    match super::super::run_claims_with(&sweep.claim, &opts) {
        Ok(verdicts) => {
            let json = serde_json::json!({
                "index": i,
                "seed": task.seed,
                "point": task.point,
                "verdicts": verdicts.iter().map(|v| serde_json::json!({
                    "line": v.line(), "holds": v.holds(), "numbers": v.numbers,
                })).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&json).expect("json");
            write_atomic(&tdir.join("done.json"), text.as_bytes())?;
            Ok(verdicts)
        }
        // A spent budget or a kill is not a failure: the task resumes when run again.
        Err(e @ Error::Interrupted(_)) => Err(e),
        Err(e) => {
            let text = serde_json::json!({ "index": i, "error": e.to_string() }).to_string();
            std::fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
            write_atomic(&tdir.join("failed.json"), text.as_bytes())?;
            Err(e)
        }
    }
}

/// Submit the sweep's unfinished tasks in `dir` with `sbatch` (the array restricted to them);
/// returns the job id, or `None` when every task has finished.
pub fn submit(dir: &Path) -> Result<Option<String>> {
    let sweep = Sweep::load(dir)?;
    let todo = sweep.unfinished(dir);
    if todo.is_empty() {
        return Ok(None);
    }
    let array = array_spec(&todo, &sweep.slurm);
    let script = dir.join("sweep.sbatch");
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg(&script)
        .output()
        .map_err(|e| {
            Error::Config(format!(
                "cannot run sbatch ({e}): is Slurm installed here? `eoslab sweep … --local -j N` \
                 runs the same tasks on this machine"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let log = dir.join("jobs.txt");
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text.push_str(&format!("{id} --array={array}\n"));
    write_atomic(&log, text.as_bytes())?;
    Ok(Some(id))
}

/// Run the sweep's unfinished tasks in `dir` as local processes of `exe` (`exe task DIR I`),
/// `jobs` at a time, each logging to `logs/task-<i>.{out,err}`; an error lists the tasks that
/// did not finish.
pub fn run_local(dir: &Path, exe: &Path, jobs: usize) -> Result<()> {
    let sweep = Sweep::load(dir)?;
    let mut todo: std::collections::VecDeque<usize> = sweep.unfinished(dir).into();
    let total = todo.len();
    let mut running: Vec<(usize, std::process::Child, std::time::Instant)> = Vec::new();
    let mut failed = Vec::new();
    let append = |p: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| Error::io(&p, e))
    };
    while !todo.is_empty() || !running.is_empty() {
        while running.len() < jobs.max(1)
            && let Some(i) = todo.pop_front()
        {
            let logs = dir.join("logs");
            let child = std::process::Command::new(exe)
                .arg("task")
                .arg(dir)
                .arg(i.to_string())
                // One core per task, as for seeds side by side in one process: a local sweep
                // computes the bits of `eoslab claim --jobs N` (and of a one-CPU Slurm task).
                .env("EOSLAB_JOBS", "1")
                .env("RAYON_NUM_THREADS", "1")
                .stdin(std::process::Stdio::null())
                .stdout(append(logs.join(format!("task-{i}.out")))?)
                .stderr(append(logs.join(format!("task-{i}.err")))?)
                .spawn()
                .map_err(|e| Error::io(exe, e))?;
            running.push((i, child, std::time::Instant::now()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut k = 0;
        while k < running.len() {
            let Some(status) = running[k].1.try_wait().map_err(|e| Error::io(exe, e))? else {
                k += 1;
                continue;
            };
            let (i, _, t0) = running.remove(k);
            let secs = t0.elapsed().as_secs_f64();
            if status.success() {
                eprintln!("[sweep] task {i}: finished in {secs:.1} s");
            } else {
                let last = super::super::collect::last_log_line(dir, i);
                eprintln!("[sweep] task {i}: {status} after {secs:.1} s: {last}");
                failed.push(i);
            }
        }
    }
    if failed.is_empty() {
        eprintln!(
            "[sweep] {total} tasks run; `eoslab collect {}`",
            dir.display()
        );
        return Ok(());
    }
    failed.sort_unstable();
    Err(Error::Config(format!(
        "{} of {total} tasks did not finish ({failed:?}); their logs are in {}; rerun to retry \
         them (finished tasks are skipped)",
        failed.len(),
        dir.join("logs").display()
    )))
}
