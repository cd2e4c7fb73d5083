//! Full and read-only disks: the small resumable claim of `claim_run::claim` writing to a tmpfs
//! this test mounts (as root; skipped with a message where mounting is not allowed) that fills
//! up, or is remounted read-only, mid-run. The run stops with an error naming the file and the
//! cause; the last good checkpoint and every completed seed are intact and load; once there is
//! space again (or the disk is writable again) the same command continues, and the run ends
//! with every file byte-for-byte those of an uninterrupted run on the normal disk.
mod claim_run;

use candle_core::Device;
use claim_run::{assert_same_files, assert_success, claim, reference, snapshot};
use eoslab::checkpoint::Checkpoint;
use eoslab::resume::{MonitorState, Resume, ResumeOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tmpfs mounted on a fresh directory, unmounted when dropped (a failed test included).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount one of `size` (as `mount -o size=` takes it), or `None` (with a message) where
    /// this process may not mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `mount -o remount,<options>`; retried for a while since a remount read-only is refused
    /// while a file is open for writing.
    fn remount(&self, options: &str) {
        let t0 = Instant::now();
        loop {
            let o = Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(self.path())
                .output()
                .unwrap();
            if o.status.success() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "remount,{options}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        // Lazily where still busy (a run that is still being killed).
        if !ok(&[]) && !ok(&["-l"]) {
            eprintln!("could not unmount {}", self.dir.path().display());
        }
    }
}

/// Start the claim into `out`; once one seed is complete and the other has a checkpoint, call
/// `fault`, then wait for the run to stop. Returns its stderr.
fn run_until_fault(out: &Path, fault: impl FnOnce()) -> String {
    let mut child = claim(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let dir = out.join("tradeoff");
    let ready = || {
        let done = |s: u64| dir.join(format!("seed-{s}/result.safetensors")).exists();
        let pointer = |s: u64| dir.join(format!("seed-{s}/resume/baseline.json")).exists();
        (done(0) && pointer(1)) || (done(1) && pointer(0))
    };
    let t0 = Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the fault"
        );
        assert!(t0.elapsed() < Duration::from_secs(600));
        std::thread::sleep(Duration::from_millis(1));
    }
    fault();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "the run did not notice the fault:\n{err}"
    );
    err
}

/// The checks after a fault: a completed seed and the incomplete seed's last checkpoint are
/// intact, and load with the library's loaders; returns the seeds complete.
fn check_intact(dir: &Path) -> Vec<u64> {
    let want = reference();
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
    };
    let fingerprint = read("resume.json")["train_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Resume::open(
        dir,
        read("config.json"),
        &fingerprint,
        ResumeOptions::default(),
    )
    .unwrap();
    let mut complete = Vec::new();
    for seed in 0..2u64 {
        let rel = format!("tradeoff/seed-{seed}/result.safetensors");
        if let Some(s) = eoslab::branch::persist::load_seed(&r, seed).unwrap() {
            assert_eq!(s.seed, seed);
            assert_eq!(
                std::fs::read(r.seed_result_path(seed)).unwrap(),
                want.files[&rel]
            );
            complete.push(seed);
            continue;
        }
        let res = dir.join(format!("seed-{seed}/resume"));
        let pointer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(res.join("baseline.json")).unwrap()).unwrap();
        let ck = res.join(pointer["dir"].as_str().unwrap());
        let process = Checkpoint::load(&ck.join("process.safetensors")).unwrap();
        let monitor = MonitorState::load(&ck.join("monitor.safetensors"), &Device::Cpu).unwrap();
        let step = pointer["step"].as_u64().unwrap() as usize;
        assert_eq!((process.meta.state.step, monitor.step), (step, step));
    }
    assert_eq!(complete.len(), 1, "{complete:?}");
    complete
}

/// Rerun the claim into `out` (space or write access restored): it must end bit-identical to
/// the uninterrupted run on the normal disk.
fn rerun_matches(out: &Path, what: &str) {
    let want = reference();
    let o = claim(out).output().unwrap();
    assert_success(what, &o);
    assert_eq!(o.stdout, want.stdout, "{what}: summary");
    assert_same_files(what, &snapshot(out), &want.files);
}

/// Fill the file system of `dir` up: a file grown until the disk refuses more.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 1 << 16];
    loop {
        if let Err(e) = f.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(28), "{e}");
            break;
        }
    }
    // Smaller pieces too, so that not even a small file fits.
    while f.write_all(&[0u8; 512]).is_ok() {}
    p
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_a_rerun_with_space_continues() {
    let t0 = Instant::now();
    reference();
    let Some(fs) = Tmpfs::mount("64m") else {
        return;
    };
    let out = fs.path().join("out");
    let err = run_until_fault(&out, || {
        fill(fs.path());
    });
    let dir = out.join("tradeoff");
    assert!(
        err.contains("No space left on device") && err.contains(&*dir.to_string_lossy()),
        "{err}"
    );
    eprintln!("full disk: {}", err.lines().last().unwrap_or(""));
    check_intact(&dir);
    fs.remount("size=128m");
    rerun_matches(&out, "rerun with space");
    eprintln!("full-disk test: {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_disk_made_read_only_stops_the_run_cleanly_and_a_rerun_continues() {
    let t0 = Instant::now();
    reference();
    let Some(fs) = Tmpfs::mount("64m") else {
        return;
    };
    let out = fs.path().join("out");
    let err = run_until_fault(&out, || fs.remount("ro"));
    let dir = out.join("tradeoff");
    assert!(
        err.contains("Read-only file system") && err.contains(&*dir.to_string_lossy()),
        "{err}"
    );
    eprintln!("read-only disk: {}", err.lines().last().unwrap_or(""));
    check_intact(&dir);
    fs.remount("rw");
    rerun_matches(&out, "rerun on the writable disk");
    eprintln!("read-only test: {:.1} s", t0.elapsed().as_secs_f64());
}
