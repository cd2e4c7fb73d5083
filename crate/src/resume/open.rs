//! Opening a run directory: its identity (configuration, training set) checked against the
//! run, a new or half-claimed directory claimed, what killed runs left behind cleared.
use super::*;

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
pub(super) fn without_device(v: &serde_json::Value) -> serde_json::Value {
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
        // Temporaries of writes a killed run left behind are never part of a run's record.
        let stale = crate::data::atomic::remove_stale_temporaries(dir)?;
        if stale > 0 {
            eprintln!(
                "[resume] {}: removed {stale} temporary file(s) of interrupted writes",
                dir.display()
            );
        }
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            check_identity(dir, &read_json(&cfg_path)?, &config, fingerprint)?;
        } else {
            claim(dir, &config, fingerprint)?;
        }
        Ok(Resume {
            dir: dir.to_path_buf(),
            options,
            fingerprint: fingerprint.to_string(),
            config,
        })
    }
}

/// Check that the run in `dir` (its configuration `old`) is the one described by `config` on
/// a training set with `fingerprint`: an error listing the differences otherwise.
fn check_identity(
    dir: &Path,
    old: &serde_json::Value,
    config: &serde_json::Value,
    fingerprint: &str,
) -> Result<()> {
    let diff = config_diff(&without_device(old), &without_device(config));
    if !diff.is_empty() {
        return Err(Error::Config(format!(
            "{} holds a run with another configuration; choose another output directory \
             (or remove that one) rather than mixing runs. Differences: {}",
            dir.display(),
            diff.join("; ")
        )));
    }
    let (od, nd) = (find_device(old), find_device(config));
    if od != nd {
        eprintln!(
            "[resume] {}: continuing a run started on {} on {}; results are not \
             bit-identical to an uninterrupted run on one device",
            dir.display(),
            od.as_deref().unwrap_or("?"),
            nd.as_deref().unwrap_or("?")
        );
    }
    let state_path = dir.join("resume.json");
    if !state_path.exists() {
        return Err(Error::Config(format!(
            "{} holds a run that was not started as resumable (no resume.json); use \
             another output directory",
            dir.display()
        )));
    }
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
    Ok(())
}

/// Claim `dir` (empty, or holding what a run stopped while claiming it left) for the run
/// described by `config` on a training set with `fingerprint`.
fn claim(dir: &Path, config: &serde_json::Value, fingerprint: &str) -> Result<()> {
    let state_path = dir.join("resume.json");
    if claim_interrupted(&state_path)? {
        // resume.json is written first, config.json second: a run stopped between the two had
        // done nothing else yet, so the directory is claimed afresh.
        eprintln!(
            "[resume] {}: completing the claim of this directory (an earlier run stopped \
             while starting)",
            dir.display()
        );
        std::fs::remove_file(&state_path).map_err(|e| Error::io(&state_path, e))?;
    }
    let occupied = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .next()
        .is_some();
    if occupied {
        return Err(Error::Config(format!(
            "{} is not empty and holds no eoslab run (no config.json); use an empty or new \
             output directory",
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
    write_json(&dir.join("config.json"), config)
}

/// Whether `state_path` (a directory's `resume.json`, its `config.json` absent) is all that a
/// run stopped right after claiming the directory left there: the directory holds nothing else
/// and the file is this module's.
fn claim_interrupted(state_path: &Path) -> Result<bool> {
    let dir = state_path.parent().unwrap_or(Path::new("."));
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(e.map_err(|e| Error::io(dir, e))?.file_name());
    }
    if names.len() != 1 || names[0] != "resume.json" {
        return Ok(false);
    }
    let ours = read_json(state_path)
        .ok()
        .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(FORMAT));
    Ok(ours)
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
