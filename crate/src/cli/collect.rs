//! `eoslab collect SWEEP_DIR`: a sweep's finished tasks gathered into one run directory per
//! point (`collect/<point>/`): the tasks' completed seeds are copied there and the claim is
//! run on it with nothing left to compute (a step budget of 0 makes sure), so its verdicts and
//! JSON are, bit for bit, those a single-process `eoslab claim` prints for the same
//! configuration. Missing and failed tasks are reported by index with their log's last line;
//! the numbers of every point go to `collect/summary.{parquet,csv}` (one row per number, a
//! column per axis) and, along a numeric axis, Δℓ per group to `collect/<claim>-effects.svg`.
use super::sweep::{Status, Sweep, point_sets};
use crate::experiment::options::ClaimOptions;
use crate::plot::LinePlot;
use crate::verdict::Verdict;
use crate::{Error, Result};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// One point's verdicts.
pub struct PointResult {
    /// The point: `(field, value)` per axis.
    pub point: Vec<(String, String)>,
    /// Its collected run directory.
    pub dir: PathBuf,
    /// The claim's verdicts on all its seeds.
    pub verdicts: Vec<Verdict>,
}

/// What `collect` found.
pub struct Collected {
    /// Every point whose tasks have all finished, in axis order.
    pub points: Vec<PointResult>,
    /// Tasks not finished: index, status, their log's last line.
    pub incomplete: Vec<(usize, Status, String)>,
}

/// The last non-empty line of task `i`'s logs (stderr first, where errors and progress go).
pub fn last_log_line(dir: &Path, i: usize) -> String {
    ["err", "out"]
        .iter()
        .filter_map(|ext| std::fs::read_to_string(dir.join(format!("logs/task-{i}.{ext}"))).ok())
        .find_map(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "(no log yet)".into())
}

/// Collect the sweep in `dir` (see the module doc).
pub fn collect(dir: &Path) -> Result<Collected> {
    let sweep = Sweep::load(dir)?;
    let per_point = sweep.seeds.len().max(1);
    let mut out = Collected {
        points: Vec::new(),
        incomplete: Vec::new(),
    };
    for (k, tasks) in sweep.tasks.chunks(per_point).enumerate() {
        let mut complete = true;
        for t in tasks {
            let s = Sweep::status(dir, t.index);
            if s != Status::Done {
                out.incomplete
                    .push((t.index, s, last_log_line(dir, t.index)));
                complete = false;
            }
        }
        if !complete {
            continue;
        }
        let point = tasks[0].point.clone();
        let pdir = dir.join("collect").join(point_name(k, &point));
        let task_dirs: Vec<PathBuf> = tasks
            .iter()
            .map(|t| Sweep::task_dir(dir, t.index))
            .collect();
        claim_like(&task_dirs[0], &pdir, &sweep.seeds)?;
        for td in &task_dirs {
            copy_results(td, td, &pdir)?;
        }
        let mut opts = ClaimOptions {
            out: Some(pdir.clone()),
            // Everything is computed already: a missing result is an error, not a new run.
            step_budget: Some(0),
            ..sweep.base.clone()
        };
        opts.set.extend(point_sets(&point));
        opts.set.push(format!("seeds={:?}", sweep.seeds));
        let verdicts = super::run_claims_with(&sweep.claim, &opts)?;
        for td in &task_dirs {
            check_same_config(&pdir, td)?;
        }
        out.points.push(PointResult {
            point,
            dir: pdir,
            verdicts,
        });
    }
    write_tables(dir, &sweep, &out.points)?;
    Ok(out)
}

/// The directory name of point `k`.
fn point_name(k: usize, point: &[(String, String)]) -> String {
    if point.is_empty() {
        return "all".into();
    }
    let text: String = point
        .iter()
        .map(|(p, v)| format!("{}={v}", p.rsplit('.').next().unwrap_or(p)))
        .collect::<Vec<_>>()
        .join(",");
    let safe: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "=.,-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{k}-{safe}")
}

/// Whether a task's file at `rel` is a completed result: a seed's files (`seed-<s>/…`, not
/// its checkpoints under `resume/`) or a completed eos run (`done/…`).
fn is_result(rel: &Path) -> bool {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let seed = |p: &String| {
        p.strip_prefix("seed-")
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    !parts.iter().any(|p| p == "resume")
        && parts[..parts.len().saturating_sub(1)]
            .iter()
            .any(|p| p == "done" || seed(p))
}

/// Copy the completed results under `root` (walking `at`) into `to`, keeping their paths.
fn copy_results(root: &Path, at: &Path, to: &Path) -> Result<()> {
    let entries = std::fs::read_dir(at).map_err(|e| Error::io(at, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(at, e))?;
        let p = e.path();
        if p.is_dir() {
            copy_results(root, &p, to)?;
            continue;
        }
        let rel = p.strip_prefix(root).expect("under root");
        if !is_result(rel) {
            continue;
        }
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        let dest = to.join(rel);
        if std::fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            crate::atomic::write_atomic(&dest, &bytes)?;
        }
    }
    Ok(())
}

/// The run directories (`config.json` files) of a task: its root and each experiment's.
fn run_dirs(task: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    if task.join("config.json").exists() {
        out.push(PathBuf::new());
    }
    for e in std::fs::read_dir(task).map_err(|e| Error::io(task, e))? {
        let p = e.map_err(|e| Error::io(task, e))?.path();
        if p.join("config.json").exists() {
            out.push(p.strip_prefix(task).expect("under task").to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

/// Claim each run directory under `pdir` as the task's run directory with all `seeds`: its
/// `resume.json` (the training set's identity), then its `config.json` with the seeds
/// replaced (what a single run of every seed writes), so the claim run there resumes it.
fn claim_like(task: &Path, pdir: &Path, seeds: &[u64]) -> Result<()> {
    for rel in run_dirs(task)? {
        let (from, to) = (task.join(&rel), pdir.join(&rel));
        if to.join("config.json").exists() {
            continue;
        }
        std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
        let state = from.join("resume.json");
        let bytes = std::fs::read(&state).map_err(|e| Error::io(&state, e))?;
        crate::atomic::write_atomic(&to.join("resume.json"), &bytes)?;
        let cfg = from.join("config.json");
        let bytes = std::fs::read(&cfg).map_err(|e| Error::io(&cfg, e))?;
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::data(&cfg, e.to_string()))?;
        let Some(s) = v.get_mut("seeds") else {
            return Err(Error::data(&cfg, "no \"seeds\" field"));
        };
        *s = serde_json::json!(seeds);
        let text = serde_json::to_string_pretty(&v).expect("json");
        crate::atomic::write_atomic(&to.join("config.json"), text.as_bytes())?;
    }
    Ok(())
}

/// Every experiment configuration of the collected directory `pdir` equals the task's in
/// `task` but for its seeds (so the seeds gathered were computed under that configuration).
fn check_same_config(pdir: &Path, task: &Path) -> Result<()> {
    let read = |p: &Path| -> Result<serde_json::Value> {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::data(p, e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("seeds");
        }
        Ok(v)
    };
    let found: Vec<PathBuf> = run_dirs(pdir)?
        .into_iter()
        .map(|r| pdir.join(r).join("config.json"))
        .collect();
    for c in found {
        let rel = c.strip_prefix(pdir).expect("under pdir");
        if read(&c)? != read(&task.join(rel))? {
            return Err(Error::data(
                task.join(rel),
                format!(
                    "differs from {} in more than its seeds: the task was run with other \
                     options than the sweep's",
                    c.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Numeric leaves of a verdict's JSON as `(key, value)`: objects by field, arrays by index or,
/// for per-group entries, by their `group`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Number(n) => out.extend(n.as_f64().map(|x| (prefix.to_string(), x))),
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), *b as u8 as f64)),
        serde_json::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let key = e["group"].as_str().map_or(i.to_string(), String::from);
                flatten(&join(&key), e, out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, e) in o {
                if k != "group" {
                    flatten(&join(k), e, out);
                }
            }
        }
        _ => {}
    }
}

/// `collect/summary.{parquet,csv}` and, along a single numeric axis, the effects figures.
fn write_tables(dir: &Path, sweep: &Sweep, points: &[PointResult]) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let mut axes: Vec<Vec<String>> = vec![Vec::new(); sweep.axes.len()];
    let (mut claim, mut holds, mut key, mut value) = (vec![], vec![], vec![], vec![]);
    for p in points {
        for v in &p.verdicts {
            let mut leaves = Vec::new();
            flatten("", &v.numbers, &mut leaves);
            for (k, x) in leaves {
                for (a, (_, val)) in axes.iter_mut().zip(&p.point) {
                    a.push(val.clone());
                }
                claim.push(v.claim.clone());
                holds.push(v.holds());
                key.push(k);
                value.push(x);
            }
        }
    }
    let mut cols: Vec<Column> = sweep
        .axes
        .iter()
        .zip(axes)
        .map(|(a, vals)| Column::new(a.path.as_str().into(), vals))
        .collect();
    cols.extend([
        Column::new("claim".into(), claim),
        Column::new("holds".into(), holds),
        Column::new("key".into(), key),
        Column::new("value".into(), value),
    ]);
    let mut df = DataFrame::new_infer_height(cols)?;
    let cdir = dir.join("collect");
    crate::metrics::write_frame(&mut df, &cdir, "summary")?;
    effects_figures(&cdir, sweep, points)
}

/// Δℓ per group (median, quartile band) against the sweep's one numeric axis.
fn effects_figures(cdir: &Path, sweep: &Sweep, points: &[PointResult]) -> Result<()> {
    let [axis] = &sweep.axes[..] else {
        return Ok(());
    };
    let xs: Vec<f64> = points
        .iter()
        .filter_map(|p| p.point[0].1.parse().ok())
        .collect();
    if xs.len() != points.len() || xs.len() < 2 {
        return Ok(());
    }
    for (vi, v0) in points[0].verdicts.iter().enumerate() {
        let Some(groups) = v0.numbers["effects"].as_array() else {
            continue;
        };
        let mut plot = LinePlot::new(
            format!("claim {}: Δℓ per group against {}", v0.claim, axis.path),
            axis.path.clone(),
            "Δℓ = ℓ_EoS − ℓ_stable (median, quartiles over seeds)",
        )
        .markers()
        .hline(0.0, "", 7);
        for (gi, g) in groups.iter().enumerate() {
            let name = g["group"].as_str().unwrap_or("?");
            let (mut line, mut band) = (Vec::new(), Vec::new());
            for (p, &x) in points.iter().zip(&xs) {
                let e = p.verdicts[vi].numbers["effects"]
                    .as_array()
                    .and_then(|a| a.iter().find(|e| e["group"].as_str() == Some(name)));
                let num = |k: &str| e.and_then(|e| e[k].as_f64()).unwrap_or(f64::NAN);
                line.push((x, num("median")));
                band.push((x, num("q25"), num("q75")));
            }
            plot = plot.band(band, gi).line(name, line, gi, false);
        }
        plot.render()?
            .save(&cdir.join(format!("{}-effects.svg", v0.claim)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_seeds_and_done_runs_not_checkpoints() {
        for (p, want) in [
            ("tradeoff/seed-3/result.safetensors", true),
            ("tradeoff/seed-3/fork.safetensors", true),
            ("done/lr-0.1-seed-2.json", true),
            ("tradeoff/seed-3/resume/baseline.json", false),
            ("seed-1/resume/lr-0.1-000000512/process.safetensors", false),
            ("tradeoff/config.json", false),
            ("done.json", false),
            ("tradeoff/seed-x/result.safetensors", false),
        ] {
            assert_eq!(is_result(Path::new(p)), want, "{p}");
        }
    }

    #[test]
    fn numbers_flatten_by_field_and_group() {
        let v = serde_json::json!({
            "effects": [{"group": "inlier", "median": -1.5, "per_seed": [1.0, 2.0]}],
            "seeds_reaching_t2": 3, "ok": true, "name": "x",
        });
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "effects.inlier.median",
                "effects.inlier.per_seed.0",
                "effects.inlier.per_seed.1",
                "ok",
                "seeds_reaching_t2"
            ]
        );
        assert_eq!(out[0].1, -1.5);
    }

    #[test]
    fn tables_have_a_column_per_axis_and_effects_are_drawn_along_it() {
        let opts = ClaimOptions {
            preset: Some("digits".into()),
            seeds: Some(1),
            ..ClaimOptions::default()
        };
        let axes = vec!["m=0.1,0.5".parse().unwrap()];
        let sweep = Sweep::plan("tradeoff", &opts, axes, Default::default()).unwrap();
        let points: Vec<PointResult> = [("0.1", -0.5), ("0.5", 0.25)]
            .iter()
            .map(|&(m, d)| {
                let mut v = Verdict::new("tradeoff");
                v.numbers = serde_json::json!({"effects": [
                    {"group": "inlier", "median": d, "q25": d - 0.1, "q75": d + 0.1}
                ]});
                PointResult {
                    point: vec![("design.m".into(), m.into())],
                    dir: PathBuf::new(),
                    verdicts: vec![v],
                }
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        write_tables(tmp.path(), &sweep, &points).unwrap();
        let df = crate::metrics::read_parquet(&tmp.path().join("collect/summary.parquet")).unwrap();
        assert_eq!(df.height(), 6);
        let m = df.column("design.m").unwrap().str().unwrap();
        assert_eq!(m.get(0), Some("0.1"));
        assert_eq!(m.get(5), Some("0.5"));
        let svg = std::fs::read_to_string(tmp.path().join("collect/tradeoff-effects.svg")).unwrap();
        assert!(svg.contains("inlier") && svg.contains("design.m"));
    }

    #[test]
    fn point_names_are_safe_and_distinct() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(point_name(0, &[]), "all");
        assert_eq!(point_name(1, &p("design.m", "0.5")), "1-m=0.5");
        assert_eq!(point_name(2, &p("run.loss", "\"ce\"/x")), "2-loss=_ce__x");
    }
}
