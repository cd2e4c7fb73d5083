//! `eoslab run CONFIG.json`: run a configuration again — any run directory's `config.json`
//! (or one written by hand) — with `--set` overrides, and print the criterion's verdict on it.
use crate::branch::{BranchConfig, Design, Job};
use crate::eos::EosConfig;
use crate::experiment::claims;
use crate::resume::ResumeOptions;
use crate::verdict::Verdict;
use crate::{Error, Result};
use std::path::Path;

/// What a configuration file holds: the `eos` experiment (it has `lrs`) or a branching one (it
/// has `design`).
#[derive(Clone, Debug)]
pub enum Experiment {
    /// The edge-of-stability runs of claim `eos`.
    Eos(EosConfig),
    /// One branching experiment (exit or enter fork).
    Branch(BranchConfig),
}

/// Read `path` as an experiment's configuration and apply the `sets` overrides; every error
/// names the file.
pub fn read(path: &Path, sets: &[String]) -> Result<Experiment> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::data(path, format!("not valid JSON: {e}")))?;
    let has = |k: &str| v.get(k).is_some();
    let named = |e: Error| Error::data(path, e.to_string());
    if has("lrs") {
        let cfg: EosConfig = serde_json::from_value(v)
            .map_err(|e| Error::data(path, format!("not an eos configuration: {e}")))?;
        Ok(Experiment::Eos(
            crate::overrides::apply(&cfg, sets).map_err(named)?,
        ))
    } else if has("design") {
        let cfg: BranchConfig = serde_json::from_value(v)
            .map_err(|e| Error::data(path, format!("not a branching configuration: {e}")))?;
        let cfg = crate::overrides::apply(&cfg, sets).map_err(named)?;
        cfg.validate().map_err(named)?;
        Ok(Experiment::Branch(cfg))
    } else {
        Err(Error::data(
            path,
            "neither an eos configuration (no \"lrs\") nor a branching one (no \"design\"); \
             use the config.json of an eoslab run directory",
        ))
    }
}

/// Run the configuration in `path` (with `sets` applied), resumable in `out` when given, and
/// return the verdict of the claim its kind belongs to: `eos`, or `tradeoff` / `tradeoff-enter`
/// by the fork's design (for the branching runs of the alignment and saturation claims, this
/// is the tradeoff criterion on that one experiment; their own claims need both of their runs).
pub fn rerun(
    path: &Path,
    sets: &[String],
    out: Option<&Path>,
    resume: &ResumeOptions,
) -> Result<Verdict> {
    match read(path, sets)? {
        Experiment::Eos(cfg) => {
            let res = crate::eos::run_with(&cfg, out.map(|o| (o, resume)))?;
            if let Some(dir) = out {
                res.write(dir)?;
            }
            Ok(claims::eos(&res))
        }
        Experiment::Branch(cfg) => {
            let job = Job {
                cfg: &cfg,
                dir: out,
                resume: out.map(|_| resume),
            };
            let res = crate::report::run_many(&[job], crate::parallel::default_jobs())?.remove(0);
            Ok(match cfg.design {
                Design::Exit { .. } => claims::tradeoff(&res),
                Design::Enter { .. } => claims::tradeoff_enter(&res),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        let err = |text: &str| {
            std::fs::write(&p, text).unwrap();
            read(&p, &[]).unwrap_err().to_string()
        };
        assert!(err("{").contains("c.json") && err("{").contains("not valid JSON"));
        assert!(err("{\"a\": 1}").contains("neither an eos configuration"));
        assert!(err("{\"lrs\": 1}").contains("not an eos configuration"));
        let missing = read(&tmp.path().join("none.json"), &[]).unwrap_err();
        assert!(missing.to_string().contains("none.json"), "{missing}");
    }

    #[test]
    fn a_preset_round_trips_with_overrides() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("config.json");
        let cfg = crate::experiment::presets::Preset::named("digits", None)
            .unwrap()
            .tradeoff();
        std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
        match read(&p, &["horizon=3.5".into()]).unwrap() {
            Experiment::Branch(c) => {
                assert_eq!(c.horizon, 3.5);
                assert_eq!(c.run, cfg.run);
            }
            Experiment::Eos(_) => panic!("read a branching configuration as eos"),
        }
        let e = read(&p, &["horizn=3".into()]).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("no field \"horizn\""),
            "{e}"
        );
    }
}
