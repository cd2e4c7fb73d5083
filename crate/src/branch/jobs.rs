//! Running branching experiments: every seed of one or many configurations, in run
//! directories (resumable, or shared between notebooks by a content key), seeds side by side.
use super::{BranchConfig, BranchResult, SeedBranches, persist, prepare, run_seed_with};
use crate::data::Dataset;
use crate::resume::{Resume, ResumeOptions};
use crate::{Error, Result};
use std::path::Path;

/// Run every seed; with `dir`, also write the run directory's configuration, training set and
/// metrics ([`crate::report::write`] adds the summary and figures).
pub fn run(cfg: &BranchConfig, dir: Option<&Path>) -> Result<BranchResult> {
    run_with(cfg, dir, None)
}

/// [`run`]; with `resume` options (and `dir`), resumable: the directory is claimed for this
/// configuration (a different one is an error), each process is checkpointed periodically,
/// completed seeds are kept, and a rerun continues where the last one stopped (see
/// [`crate::resume`]). Seeds run [`crate::parallel::default_jobs`] at a time.
pub fn run_with(
    cfg: &BranchConfig,
    dir: Option<&Path>,
    resume: Option<&ResumeOptions>,
) -> Result<BranchResult> {
    let job = Job { cfg, dir, resume };
    let mut out = run_many(&[job], crate::parallel::default_jobs())?;
    Ok(out.remove(0))
}

/// A short content key of a configuration (16 hex digits of the FNV-1a hash of its JSON): runs
/// of identical configuration share one directory under a common root, so notebooks reuse each
/// other's runs instead of recomputing them.
pub fn run_key(cfg: &BranchConfig) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cfg.to_json().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Run each configuration in its own resumable directory `root/<run_key>`, all seeds
/// [`crate::parallel::default_jobs`] at a time: a configuration already complete there is read
/// back instead of recomputed, an interrupted one continues.
pub fn run_shared(root: &Path, cfgs: &[&BranchConfig]) -> Result<Vec<BranchResult>> {
    let dirs: Vec<std::path::PathBuf> = cfgs.iter().map(|c| root.join(run_key(c))).collect();
    let opts = ResumeOptions::default();
    let jobs: Vec<Job> = cfgs
        .iter()
        .zip(&dirs)
        .map(|(cfg, d)| Job {
            cfg,
            dir: Some(d),
            resume: Some(&opts),
        })
        .collect();
    run_many(&jobs, crate::parallel::default_jobs())
}

/// One branching experiment for [`run_many`]: its configuration, run directory and resume
/// options (as for [`run_with`]).
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// The configuration.
    pub cfg: &'a BranchConfig,
    /// Its run directory, if any.
    pub dir: Option<&'a Path>,
    /// Resume options (needs `dir`).
    pub resume: Option<&'a ResumeOptions>,
}

/// A job's data and run directory, ready for its seeds to run.
struct Prepared {
    train: Dataset,
    test: Dataset,
    resume: Option<Resume>,
}

fn prepare_job(job: &Job) -> Result<Prepared> {
    let cfg = job.cfg;
    cfg.validate()?;
    let (train, test) = prepare(cfg)?;
    let resume = match (job.dir, job.resume) {
        (Some(d), Some(o)) => Some(Resume::open(
            d,
            serde_json::to_value(cfg).map_err(|e| Error::Numerics(e.to_string()))?,
            &train.fingerprint(),
            o.clone(),
        )?),
        (None, Some(_)) => {
            return Err(Error::Config(
                "a resumable run needs an output directory".into(),
            ));
        }
        _ => None,
    };
    if let Some(dir) = job.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if resume.is_none() {
            crate::atomic::write_atomic(&dir.join("config.json"), cfg.to_json().as_bytes())?;
        }
        crate::data::tensors::export(&train, &dir.join("train.safetensors"), &[])?;
    }
    Ok(Prepared {
        train,
        test,
        resume,
    })
}

/// Run every seed of every job, `jobs` seeds at a time (each on one core; the results do not
/// depend on `jobs`, see [`crate::parallel`]), and write each job's run directory.
pub fn run_many(list: &[Job], jobs: usize) -> Result<Vec<BranchResult>> {
    let prepared = list.iter().map(prepare_job).collect::<Result<Vec<_>>>()?;
    let tasks: Vec<(usize, u64)> = list
        .iter()
        .enumerate()
        .flat_map(|(j, job)| job.cfg.seeds.iter().map(move |&s| (j, s)))
        .collect();
    let seeds = crate::parallel::run_tasks(tasks.len(), jobs, |t| {
        let (j, s) = tasks[t];
        let (job, p) = (&list[j], &prepared[j]);
        if let Some(r) = &p.resume
            && let Some(done) = persist::load_seed(r, s)?
        {
            // A run stopped between saving this result and removing its checkpoints left them.
            r.clean_seed(s);
            return Ok(done);
        }
        let result = run_seed_with(job.cfg, &p.train, &p.test, s, job.dir, p.resume.as_ref())?;
        if let Some(r) = &p.resume {
            crate::resume::save(&r.seed_result_path(s), &result)?;
            r.clean_seed(s);
        }
        Ok(result)
    })?;
    let mut seeds = seeds.into_iter();
    let mut out = Vec::with_capacity(list.len());
    for (job, p) in list.iter().zip(prepared) {
        let mine: Vec<SeedBranches> = seeds.by_ref().take(job.cfg.seeds.len()).collect();
        out.push(assemble(job, mine, p.train)?);
    }
    Ok(out)
}

fn assemble(job: &Job, seeds: Vec<SeedBranches>, train: Dataset) -> Result<BranchResult> {
    let mut groups: Vec<String> = seeds[0].window_delta.keys().cloned().collect();
    // Paper groups first (in id order), then the whole-set rows.
    groups.sort_by_key(|g| {
        (
            crate::groups::GroupKind::ALL
                .iter()
                .position(|k| k.name() == g)
                .unwrap_or(99),
            g.clone(),
        )
    });
    let result = BranchResult {
        config: job.cfg.clone(),
        groups,
        seeds,
        train,
    };
    if let Some(dir) = job.dir {
        result.write_metrics(dir)?;
    }
    Ok(result)
}
