//! Atomic file writes: a file is either its old content or its complete new content, never a
//! half-written mix (a crash or a full disk mid-write must not destroy an exported data set).
//!
//! A write goes through a temporary `.<name>.tmp-<pid>-<n>` beside the file. A process killed
//! mid-write leaves that temporary behind; [`remove_stale_temporaries`] clears those of
//! processes that are gone (resumable runs call it when they open their directory).
//!
//! Test hook: with `EOSLAB_WRITE_DELAY_US=N` in the environment, every write logs its phases
//! to stderr (`[write] created|written|synced|renamed <path>`) and sleeps N µs after creating,
//! writing and syncing the temporary, so that a test killing the process at random moments
//! lands inside writes often (crate/tests/crash.rs). Unset, writes neither log nor sleep.
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Distinguishes concurrent writers in one process (tests run in parallel threads).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The write-delay test hook, read once per process (`None`: off).
fn write_delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("EOSLAB_WRITE_DELAY_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_micros)
    })
}

/// With the test hook on: log that `path`'s write reached `phase`, then pause.
fn phase(path: &Path, phase: &str, pause: bool) {
    if let Some(d) = write_delay() {
        eprintln!("[write] {phase} {}", path.display());
        if pause {
            std::thread::sleep(d);
        }
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
///
/// The temporary file must live in the same directory because `rename` is only atomic within
/// one file system. On any failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::data(path, "not a file path (it has no file name)"))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // Run directories are created on first write (checkpoints under seed-N/, figures, tables).
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(tmp_name);
    // Errors name the file being written, not its temporary (which is removed): a full or
    // read-only disk then says which result could not be saved.
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        phase(path, "created", true);
        f.write_all(bytes).map_err(|e| Error::io(path, e))?;
        phase(path, "written", true);
        // Flush to disk before the rename, or a crash could leave a renamed but empty file.
        f.sync_all().map_err(|e| Error::io(path, e))?;
        phase(path, "synced", true);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        phase(path, "renamed", false);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] for a safetensors file, with its header in a canonical order.
///
/// Why: `safetensors::serialize` writes the metadata from a `HashMap` in the map's (per
/// process random) order, so the same content gave different bytes in every run, and a
/// resumed run's files could not be compared with an uninterrupted run's. Here the metadata
/// keys are sorted; the tensors (and their offsets) are as serialized.
pub fn write_safetensors_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, &canonical_safetensors(path, bytes)?)
}

/// `bytes` (a serialized safetensors file) with the header's keys and its metadata's keys
/// sorted; the header is padded with spaces to a multiple of 8 bytes as safetensors pads it.
fn canonical_safetensors(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    use serde_json::Value;
    let bad = |m: &str| Error::data(path, format!("cannot write safetensors: {m}"));
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("no header"))?;
    let end = n
        .checked_add(8)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated header"))?;
    let header = &bytes[8..end];
    let mut fields: std::collections::BTreeMap<String, Value> =
        serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    if let Some(Value::Object(m)) = fields.get_mut("__metadata__") {
        // Re-inserted in sorted order: sorted whether or not serde_json preserves order.
        let sorted: std::collections::BTreeMap<String, Value> =
            std::mem::take(m).into_iter().collect();
        m.extend(sorted);
    }
    let mut text = serde_json::to_vec(&fields).map_err(|e| bad(&e.to_string()))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// The id of the process that wrote `name`, if `name` is one of [`write_atomic`]'s
/// temporaries (`.<file>.tmp-<pid>-<n>`).
pub fn temporary_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (file, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if file.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` may still be writing (it is this process, or it is alive).
fn may_be_writing(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // Where /proc is missing nothing can be told: only this process's own files are kept.
    Path::new("/proc/self").exists() && Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove, under `dir` (recursively), the temporaries [`write_atomic`] left behind in
/// processes that no longer run (killed mid-write). Returns how many were removed; a
/// directory that is absent holds none.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            removed += remove_stale_temporaries(&path)?;
        } else if let Some(pid) = entry.file_name().to_str().and_then(temporary_owner)
            && kind.is_file()
            && !may_be_writing(pid)
        {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new content").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new content");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn missing_directories_are_created_and_blocked_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new/sub/a.bin");
        write_atomic(&p, b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        // A parent that is a file cannot become a directory: the error names it.
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let e = write_atomic(&blocker.join("a.bin"), b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("file"), "{e}");
    }

    #[test]
    fn temporaries_are_recognised_by_name() {
        assert_eq!(temporary_owner(".result.safetensors.tmp-417-3"), Some(417));
        assert_eq!(temporary_owner(".a.tmp-1.json.tmp-9-0"), Some(9));
        for other in [
            "result.safetensors",
            ".a.tmp-",
            ".a.tmp-12",
            ".a.tmp-x-1",
            ".tmp-1-2",
        ] {
            assert_eq!(temporary_owner(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited (and been reaped) cannot be writing any more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = child.id();
        let sub = dir.path().join("seed-0/resume");
        std::fs::create_dir_all(&sub).unwrap();
        let stale = [
            dir.path().join(format!(".metrics.csv.tmp-{dead}-0")),
            sub.join(format!(".baseline.json.tmp-{dead}-7")),
        ];
        let mine = dir.path().join(format!(".x.tmp-{}-0", std::process::id()));
        let kept = [
            mine,
            dir.path().join(".notes.tmp"),
            sub.join("baseline.json"),
        ];
        for p in stale.iter().chain(&kept) {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 2);
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(kept.iter().all(|p| p.exists()));
        assert_eq!(
            remove_stale_temporaries(&dir.path().join("absent")).unwrap(),
            0
        );
    }

    #[test]
    fn safetensors_headers_do_not_depend_on_map_order() {
        use safetensors::tensor::{Dtype, TensorView};
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let write = |keys: &[&str]| {
            // Maps built in different orders: their iteration orders differ.
            let meta: std::collections::HashMap<String, String> = keys
                .iter()
                .map(|k| (k.to_string(), format!("v{k}")))
                .collect();
            let views = [("t", TensorView::new(Dtype::U8, vec![8], &data).unwrap())];
            let bytes = safetensors::serialize(views, Some(meta)).unwrap();
            canonical_safetensors(Path::new("x"), &bytes).unwrap()
        };
        let keys: Vec<String> = (0..12).map(|i| format!("key{i}")).collect();
        let fwd: Vec<&str> = keys.iter().map(String::as_str).collect();
        let rev: Vec<&str> = fwd.iter().rev().copied().collect();
        let a = write(&fwd);
        for _ in 0..8 {
            assert_eq!(write(&rev), a);
        }
        let st = safetensors::SafeTensors::deserialize(&a).unwrap();
        assert_eq!(st.tensor("t").unwrap().data(), &data);
        let (_, md) = safetensors::SafeTensors::read_metadata(&a).unwrap();
        assert_eq!(md.metadata().as_ref().unwrap()["key3"], "vkey3");
        assert!(canonical_safetensors(Path::new("x"), &a[..20]).is_err());
    }
}
