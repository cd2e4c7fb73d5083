//! `--set path.to.field=value`: override any field of a typed configuration through its JSON
//! form, so that every field is reachable from the command line without a flag per field.
//!
//! The value is read as JSON (`0.01`, `true`, `[64, 64]`, `{"Exit": {"m": 0.5}}`) and, when it
//! is not valid JSON, as a string (`--set run.loss=ce`). The path must name a field that
//! exists: a misspelt field is an error listing the fields there, never a silently ignored
//! setting. The typed configuration is then rebuilt from the JSON, so a value of the wrong
//! type is an error naming the field too.
use crate::{Error, Result};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// `config` with every `path=value` of `sets` applied in order.
pub fn apply<T: Serialize + DeserializeOwned + Clone>(config: &T, sets: &[String]) -> Result<T> {
    if sets.is_empty() {
        return Ok(config.clone());
    }
    let mut v = serde_json::to_value(config).map_err(|e| Error::Config(e.to_string()))?;
    let mut added = Vec::new();
    for s in sets {
        added.extend(set_value(&mut v, s)?);
    }
    let out: T = serde_json::from_value(v).map_err(|e| {
        Error::Config(format!(
            "--set {}: the configuration no longer fits its type: {e}",
            sets.join(" --set ")
        ))
    })?;
    // A field the JSON form leaves out at its default (`skip_serializing_if`) could only be
    // added: it is one of the type's fields if it survives the round trip through the type. (A
    // misspelt field set to a value that is also a default, such as null, cannot be told apart
    // from a real one and changes nothing.)
    if !added.is_empty() {
        let back = serde_json::to_value(&out).map_err(|e| Error::Config(e.to_string()))?;
        for a in added {
            if a.value != Value::Null && back.pointer(&a.pointer).is_none() {
                return Err(a.error);
            }
        }
    }
    Ok(out)
}

/// A field that `--set` added because the JSON form had none.
struct Added {
    /// JSON pointer of the field.
    pointer: String,
    /// The value set.
    value: Value,
    /// The error to report if the type does not know the field.
    error: Error,
}

/// Apply one `path=value` to a JSON value.
pub fn apply_one(v: &mut Value, set: &str) -> Result<()> {
    match set_value(v, set)? {
        Some(a) => Err(a.error),
        None => Ok(()),
    }
}

/// Apply one `path=value`; a last key missing from its object is added and returned for the
/// round-trip check.
fn set_value(v: &mut Value, set: &str) -> Result<Option<Added>> {
    let (path, raw) = set.split_once('=').ok_or_else(|| {
        Error::Config(format!(
            "--set {set:?}: expected path.to.field=value (e.g. run.lr=0.01)"
        ))
    })?;
    let path = path.trim();
    if path.is_empty() {
        return Err(Error::Config(format!(
            "--set {set:?}: the field path is empty"
        )));
    }
    let new: Value =
        serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.to_string()));
    let keys: Vec<&str> = path.split('.').collect();
    let mut here = v;
    let mut walked = String::new();
    for (i, key) in keys.iter().copied().enumerate() {
        let at = if walked.is_empty() {
            "the top level".to_string()
        } else {
            walked.clone()
        };
        here = match here {
            Value::Object(m) => {
                let fields: Vec<String> = m.keys().cloned().collect();
                let missing = format!(
                    "--set {path}: no field {key:?} at {at} (fields: {})",
                    fields.join(", ")
                );
                if !m.contains_key(key) {
                    if i + 1 < keys.len() {
                        return Err(Error::Config(format!(
                            "{missing} (a field left out at its default is set whole: --set \
                             {}={{...}})",
                            keys[..=i].join(".")
                        )));
                    }
                    let error = Error::Config(missing);
                    m.insert(key.to_string(), new.clone());
                    let pointer = keys.iter().map(|k| format!("/{k}")).collect::<String>();
                    return Ok(Some(Added {
                        pointer,
                        value: new,
                        error,
                    }));
                }
                m.get_mut(key).expect("checked")
            }
            Value::Array(a) => {
                let n = a.len();
                key.parse::<usize>()
                    .ok()
                    .and_then(|i| a.get_mut(i))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "--set {path}: {at} is a list of {n}; {key:?} is not an index in it"
                        ))
                    })?
            }
            other => {
                return Err(Error::Config(format!(
                    "--set {path}: {at} is the value {other}, which has no field {key:?}"
                )));
            }
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(key);
    }
    *here = new;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        lr: f64,
        loss: String,
        hidden: Vec<usize>,
        chunk: Option<usize>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        run: Inner,
        seeds: Vec<u64>,
        /// Left out of the JSON while `None` (as `SharpnessConfig::track_above`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra: Option<Extra>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Extra {
        c: f64,
    }

    fn outer() -> Outer {
        Outer {
            run: Inner {
                lr: 0.05,
                loss: "mse".into(),
                hidden: vec![64, 64],
                chunk: None,
            },
            seeds: vec![0, 1],
            extra: None,
        }
    }

    #[test]
    fn sets_nested_fields_lists_and_strings() {
        let sets = [
            "run.lr=0.01",
            "run.loss=ce",
            "run.hidden.1=32",
            "run.chunk=128",
            "seeds=[0,1,2]",
        ]
        .map(String::from);
        let o = apply(&outer(), &sets).unwrap();
        assert_eq!(o.run.lr, 0.01);
        assert_eq!(o.run.loss, "ce");
        assert_eq!(o.run.hidden, vec![64, 32]);
        assert_eq!(o.run.chunk, Some(128));
        assert_eq!(o.seeds, vec![0, 1, 2]);
        assert_eq!(apply(&outer(), &[]).unwrap(), outer());
    }

    #[test]
    fn fields_left_out_at_their_default_can_be_set_and_misspellings_still_fail() {
        let o = apply(&outer(), &[r#"extra={"c": 1.5}"#.to_string()]).unwrap();
        assert_eq!(o.extra, Some(Extra { c: 1.5 }));
        let o = apply(&o, &["extra.c=2".to_string()]).unwrap();
        assert_eq!(o.extra, Some(Extra { c: 2.0 }));
        assert_eq!(apply(&o, &["extra=null".to_string()]).unwrap().extra, None);
        let e = apply(&outer(), &[r#"extraa={"c": 1.5}"#.to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no field \"extraa\" at the top level"), "{e}");
        let e = apply(&outer(), &["run.lrr=0.1".to_string()]).unwrap_err();
        assert!(e.to_string().contains("no field \"lrr\" at run"), "{e}");
        let e = apply(&outer(), &["extra.c=1".to_string()]).unwrap_err();
        assert!(
            e.to_string().contains("set whole: --set extra={...}"),
            "{e}"
        );
    }

    #[test]
    fn bad_paths_and_values_are_named() {
        let err = |s: &str| apply(&outer(), &[s.to_string()]).unwrap_err().to_string();
        let e = err("run.lrr=0.1");
        assert!(
            e.contains("no field \"lrr\" at run") && e.contains("loss, lr"),
            "{e}"
        );
        assert!(err("run.hidden.5=1").contains("list of 2"));
        assert!(err("run.lr.x=1").contains("no field \"x\""));
        assert!(err("run.lr").contains("path.to.field=value"));
        let e = err("run.lr=fast");
        assert!(
            e.contains("no longer fits") && e.contains("run.lr=fast"),
            "{e}"
        );
    }
}
