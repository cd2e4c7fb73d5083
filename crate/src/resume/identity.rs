//! The identity of a run directory: its `config.json` (the run's configuration) and
//! `resume.json` (the training set's fingerprint), checked before a run continues there.
use super::FORMAT;
use crate::{Error, Result};
use std::path::Path;

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

pub(super) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_json(path, &bytes)
}

/// A JSON file's bytes; `path` names it in errors.
fn parse_json(path: &Path, bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::data(path, format!("not valid JSON: {e}")))
}

/// Check a run directory's `config.json` and `resume.json` (their bytes; `None`: no
/// `resume.json`) against the run about to continue in `dir`: the same configuration (the
/// device aside) and the same training set, or an error naming the file and every difference.
/// `Ok(Some(warning))` when only the device changed (the results are then not bit-identical).
pub fn check_identity(
    dir: &Path,
    config_json: &[u8],
    resume_json: Option<&[u8]>,
    config: &serde_json::Value,
    fingerprint: &str,
) -> Result<Option<String>> {
    let config_path = dir.join("config.json");
    let old = parse_json(&config_path, config_json)?;
    let diff = config_diff(&without_device(&old), &without_device(config));
    if !diff.is_empty() {
        return Err(Error::Config(format!(
            "{} holds a run with another configuration; choose another output directory \
             (or remove that one) rather than mixing runs. Differences: {}",
            config_path.display(),
            diff.join("; ")
        )));
    }
    let Some(state) = resume_json else {
        return Err(Error::Config(format!(
            "{} holds a run that was not started as resumable (no resume.json); use \
             another output directory",
            dir.display()
        )));
    };
    let state_path = dir.join("resume.json");
    let st = parse_json(&state_path, state)?;
    // A file that is JSON but not the one this module writes is named as such, not taken
    // for a run on other data.
    match st.get("format").and_then(|v| v.as_str()) {
        Some(FORMAT) => {}
        Some(f) => {
            return Err(Error::data(
                &state_path,
                format!("format {f:?}, expected {FORMAT:?}"),
            ));
        }
        None => {
            return Err(Error::data(
                &state_path,
                format!("no \"format\": {FORMAT:?} entry: not written by eoslab"),
            ));
        }
    }
    let Some(old_fp) = st.get("train_fingerprint").and_then(|v| v.as_str()) else {
        return Err(Error::data(
            &state_path,
            "no \"train_fingerprint\" string: the training set of this run is unknown",
        ));
    };
    if old_fp != fingerprint {
        return Err(Error::Config(format!(
            "{}: the training set differs from the one this run directory was started with \
             (fingerprint {old_fp} there, {fingerprint} now): the data directory or its files \
             changed; use another output directory",
            state_path.display()
        )));
    }
    let (od, nd) = (find_device(&old), find_device(config));
    Ok((od != nd).then(|| {
        format!(
            "{}: continuing a run started on {} on {}; results are not bit-identical to an \
             uninterrupted run on one device",
            dir.display(),
            od.as_deref().unwrap_or("?"),
            nd.as_deref().unwrap_or("?")
        )
    }))
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
