//! Opening a run directory: its identity (configuration, training set) checked against the
//! run, a new or half-claimed directory claimed, what killed runs left behind cleared.
use super::*;

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
        let stale = crate::atomic::remove_stale_temporaries(dir)?;
        if stale > 0 {
            eprintln!(
                "[resume] {}: removed {stale} temporary file(s) of interrupted writes",
                dir.display()
            );
        }
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            let old = std::fs::read(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
            let state_path = dir.join("resume.json");
            let state = match std::fs::read(&state_path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(&state_path, e)),
            };
            if let Some(warning) =
                check_identity(dir, &old, state.as_deref(), &config, fingerprint)?
            {
                eprintln!("[resume] {warning}");
            }
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
