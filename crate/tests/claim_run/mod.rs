//! Shared by the crash and disk tests: a small resumable claim run by the `eoslab` binary, an
//! uninterrupted reference run of it, and byte-for-byte comparison of output directories.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_eoslab");

/// `eoslab claim tradeoff` on the shipped digits, two seeds side by side, branches cut to one
/// unit of effective time and a checkpoint at every measurement (every 20 steps): a few
/// seconds that write every kind of file a resumable run writes (identity, checkpoints and
/// their pointers, fork states, seed results, tables, figures).
pub fn claim(out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["claim", "tradeoff", "--preset", "digits", "--seeds", "2"])
        .args(["--horizon", "1", "--checkpoint-every", "20", "--jobs", "2"])
        .arg("--out")
        .arg(out)
        .env_remove("EOSLAB_WRITE_DELAY_US")
        .env_remove("EOSLAB_JOBS")
        .stdin(Stdio::null());
    c
}

/// Every file under `dir`, by its path relative to `dir`, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Panic naming every file missing, extra or different in `got` against `want`.
pub fn assert_same_files(
    what: &str,
    got: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
) {
    let mut problems = Vec::new();
    for (name, bytes) in want {
        match got.get(name) {
            None => problems.push(format!("missing {name}")),
            Some(b) if b != bytes => problems.push(format!(
                "{name} differs ({} vs {} bytes, first difference at byte {})",
                b.len(),
                bytes.len(),
                b.iter()
                    .zip(bytes)
                    .position(|(x, y)| x != y)
                    .unwrap_or(b.len().min(bytes.len()))
            )),
            _ => {}
        }
    }
    problems.extend(
        got.keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| format!("extra {k}")),
    );
    assert!(problems.is_empty(), "{what}: {}", problems.join("; "));
}

/// What an uninterrupted run of [`claim`] printed and wrote, and how long it took.
pub struct Reference {
    /// Its stdout: the claim line and the JSON summary.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
    /// Its output directory.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Wall time of the run (seconds).
    pub seconds: f64,
}

/// Run [`claim`] (with `env` added) into a fresh directory to its end; panics unless it
/// succeeds.
pub fn run_clean(env: &[(&str, &str)]) -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let t0 = Instant::now();
    let o = claim(&out).envs(env.iter().copied()).output().unwrap();
    let seconds = t0.elapsed().as_secs_f64();
    assert_success("uninterrupted run", &o);
    Reference {
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        stdout: o.stdout,
        files: snapshot(&out),
        seconds,
    }
}

/// The uninterrupted run on the normal disk, computed once per test binary.
pub fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let r = run_clean(&[]);
        eprintln!("reference run: {:.1} s, {} files", r.seconds, r.files.len());
        r
    })
}

/// Panic with the run's stderr unless it exited successfully.
pub fn assert_success(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A fresh directory for one test's runs (removed when dropped).
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    (dir, out)
}
