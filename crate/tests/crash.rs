//! Crash test: the small resumable claim of `claim_run::claim`, killed (SIGKILL) at seeded
//! random moments and rerun with the same command after each kill, ends with every file of its
//! output directory and its printed summary byte-for-byte those of an uninterrupted run; a kill
//! inside its very first writes leaves a directory the next run takes up.
//!
//! Half the kills fall at a time drawn uniformly over a stretch of the run, half inside a
//! write: after a drawn number of writes has begun (or, for some of a run's last kills, once a
//! write of a seed result, table or figure has begun), a drawn fraction of the way through it
//! (the binary's test hook `EOSLAB_WRITE_DELAY_US` makes each write pause between its phases
//! and log them; see `eoslab::atomic`).
//!
//! `EOSLAB_CRASH_KILLS` (default 30) sets the number of kills, `EOSLAB_CRASH_SEED` (default 1)
//! the moments. No file is excluded from the comparison.
mod claim_run;

use claim_run::{Reference, assert_same_files, assert_success, claim, run_clean, scratch};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Pause of the write hook after each phase of a write (µs).
const WRITE_DELAY_US: u64 = 2000;

/// SplitMix64: the kill moments, reproducible from the seed.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform on [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When to kill one invocation.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// Not at all.
    Never,
    /// This long after the start.
    At(Duration),
    /// Once `writes` writes have begun, this long after the last of them began.
    InWrite { writes: usize, after: Duration },
    /// Once a write of a file of this kind (see [`kind`]) has begun, this long after.
    InWriteOf { kind: &'static str, after: Duration },
}

/// How one invocation ended.
enum Ended {
    /// It exited by itself: its stdout.
    Exited(std::process::Output),
    /// It was killed: its stderr.
    Killed(String),
}

/// The writes a killed process had begun and not finished (path and last phase), from its
/// `[write] <phase> <path>` log.
fn writes_in_flight(stderr: &str) -> Vec<(String, String)> {
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for l in stderr.lines() {
        if let Some((phase, path)) = l.strip_prefix("[write] ").and_then(|r| r.split_once(' ')) {
            last.insert(path, phase);
        }
    }
    last.into_iter()
        .filter(|(_, phase)| *phase != "renamed")
        .map(|(path, phase)| (path.to_string(), phase.to_string()))
        .collect()
}

/// The kind of file a run writes at `path`, for the tally of kills inside writes.
fn kind(path: &str) -> &'static str {
    if path.contains("/resume/") {
        "checkpoint"
    } else if path.ends_with("result.safetensors") {
        "seed result"
    } else if path.ends_with(".parquet") || path.ends_with(".csv") {
        "table"
    } else if path.ends_with(".svg") {
        "figure"
    } else {
        "run identity, training set or fork"
    }
}

fn stderr_of(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Run the claim into `out` with the write hook on, and kill it as `kill` says unless it ends
/// first.
fn run_once(out: &Path, kill: Kill, log: &Path) -> Ended {
    let mut child: Child = claim(out)
        .env("EOSLAB_WRITE_DELAY_US", WRITE_DELAY_US.to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut began: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            let mut o = child.wait_with_output().unwrap();
            o.stderr = std::fs::read(log).unwrap();
            return Ended::Exited(o);
        }
        let due = match kill {
            Kill::Never => false,
            Kill::At(t) => t0.elapsed() >= t,
            Kill::InWrite { writes, after } => {
                if began.is_none() && stderr_of(log).matches("[write] created ").count() >= writes {
                    began = Some(Instant::now());
                }
                began.is_some_and(|b| b.elapsed() >= after)
            }
            Kill::InWriteOf { kind: k, after } => {
                let begun = |l: &str| {
                    l.strip_prefix("[write] created ")
                        .is_some_and(|p| kind(p) == k)
                };
                if began.is_none() && stderr_of(log).lines().any(begun) {
                    began = Some(Instant::now());
                }
                began.is_some_and(|b| b.elapsed() >= after)
            }
        };
        if due {
            // Child::kill sends SIGKILL: no destructor, no flush, no cleanup runs.
            child.kill().unwrap();
            child.wait().unwrap();
            return Ended::Killed(stderr_of(log));
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Tally of the kills.
#[derive(Default)]
struct Tally {
    kills: usize,
    aimed: usize,
    in_write: usize,
    by_kind: BTreeMap<&'static str, usize>,
    by_phase: BTreeMap<String, usize>,
    runs: usize,
}

impl Tally {
    fn killed(&mut self, stderr: &str, aimed: bool) {
        self.kills += 1;
        self.aimed += aimed as usize;
        let flying = writes_in_flight(stderr);
        if !flying.is_empty() {
            self.in_write += 1;
        }
        for (path, phase) in flying {
            *self.by_kind.entry(kind(&path)).or_default() += 1;
            *self.by_phase.entry(format!("after {phase}")).or_default() += 1;
        }
    }
}

/// The uninterrupted run, with the write hook on (it changes no result: the first-write test
/// compares a run without it), computed once: the kill moments are scaled to it.
fn reference() -> &'static Reference {
    static REF: std::sync::OnceLock<Reference> = std::sync::OnceLock::new();
    REF.get_or_init(|| run_clean(&[("EOSLAB_WRITE_DELAY_US", &WRITE_DELAY_US.to_string())]))
}

/// Kills per run (each run is killed this many times at most, then resumed to its end and
/// compared).
const KILLS_PER_RUN: usize = 15;

#[test]
fn killed_at_random_moments_the_resumed_claim_ends_bit_identical() {
    let t_test = Instant::now();
    let want = reference();
    let kills: usize = env_or("EOSLAB_CRASH_KILLS", 30);
    let mut rng = Moments(env_or("EOSLAB_CRASH_SEED", 1));
    let (duration, writes) = (
        want.seconds,
        want.stderr.matches("[write] created ").count(),
    );
    let write_time = Duration::from_micros(3 * WRITE_DELAY_US);
    let mut tally = Tally::default();
    while tally.kills < kills {
        let (tmp, out) = scratch();
        let log = tmp.path().join("stderr.log");
        // Each invocation runs on average 1/per_run of an uninterrupted run before its kill
        // (and first repeats the work since the last checkpoint): kills fall all over the run.
        let per_run = KILLS_PER_RUN.min(kills - tally.kills);
        let (span, write_span) = (2.0 * duration / per_run as f64, 2 * writes / per_run);
        let mut killed_here = 0;
        loop {
            // Half the kills aim at writes. Of the last three of a run, half aim at the late,
            // rare writes (a seed result, then tables, then figures) that kills aimed by count
            // seldom reach; only there, since after them little of the run is left to kill.
            let aimed = rng.uniform() < 0.5;
            let left = per_run - killed_here;
            let kill = if left == 0 {
                Kill::Never
            } else if aimed && left <= 3 && per_run == KILLS_PER_RUN {
                Kill::InWriteOf {
                    kind: ["figure", "table", "seed result"][left - 1],
                    after: write_time.mul_f64(rng.uniform()),
                }
            } else if aimed {
                Kill::InWrite {
                    writes: 1 + (rng.uniform() * write_span as f64) as usize,
                    after: write_time.mul_f64(rng.uniform()),
                }
            } else {
                Kill::At(Duration::from_secs_f64(rng.uniform() * span))
            };
            match run_once(&out, kill, &log) {
                Ended::Exited(o) => {
                    assert_success("resumed run", &o);
                    let what = format!("run {} after {killed_here} kills", tally.runs);
                    assert_eq!(
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&want.stdout),
                        "{what}: summary"
                    );
                    assert_same_files(&what, &claim_run::snapshot(&out), &want.files);
                    tally.runs += 1;
                    break;
                }
                Ended::Killed(stderr) => {
                    tally.killed(&stderr, aimed);
                    killed_here += 1;
                }
            }
        }
    }
    eprintln!(
        "crash test: {} kills ({} aimed at writes, {} at uniform times) over {} runs, each \
         resumed to its end bit-identical; {} kills landed inside a write (writes in flight, \
         by file: {:?}; by phase reached: {:?}); uninterrupted run {duration:.1} s with \
         {writes} writes; test {:.1} s",
        tally.kills,
        tally.aimed,
        tally.kills - tally.aimed,
        tally.runs,
        tally.in_write,
        tally.by_kind,
        tally.by_phase,
        t_test.elapsed().as_secs_f64()
    );
}

/// Kill a run inside the write of `file` (relative to the claim's directory) once it reached
/// `phase`: the hook pauses a second there, so the kill lands at that point. Tried again in a
/// fresh directory where the run had gone on regardless (this process was held up longer).
fn kill_at_phase(out: &Path, log: &Path, file: &str, phase: &str) {
    for _ in 0..5 {
        if try_kill_at_phase(out, log, file, phase) {
            return;
        }
        std::fs::remove_dir_all(out).unwrap();
    }
    panic!("could not kill a run after {phase} of {file}");
}

/// One try of [`kill_at_phase`]: whether the run was killed with that as its last phase.
fn try_kill_at_phase(out: &Path, log: &Path, file: &str, phase: &str) -> bool {
    let mut child = claim(out)
        .env("EOSLAB_WRITE_DELAY_US", "1000000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let line = format!(
        "[write] {phase} {}",
        out.join("tradeoff").join(file).display()
    );
    let t0 = Instant::now();
    while !stderr_of(log).lines().any(|l| l == line) {
        assert!(
            child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(60),
            "no {line:?} in\n{}",
            stderr_of(log)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = stderr_of(log);
    log.lines().rfind(|l| l.starts_with("[write] ")) == Some(line.as_str())
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn killed_inside_its_first_writes_the_claim_starts_over_cleanly() {
    let want = reference();
    // The first write of a run is its directory's resume.json, the second its config.json.
    let cases = [
        ("resume.json", "created"),
        ("resume.json", "written"),
        ("resume.json", "synced"),
        ("config.json", "created"),
    ];
    for (i, (file, phase)) in cases.into_iter().enumerate() {
        let (tmp, out) = scratch();
        let log = tmp.path().join("stderr.log");
        kill_at_phase(&out, &log, file, phase);
        let dir = out.join("tradeoff");
        let tmps = temporaries(&dir);
        assert_eq!(tmps.len(), 1, "{file} {phase}: {tmps:?}");
        assert_eq!(dir.join("resume.json").exists(), file == "config.json");
        assert!(!dir.join("config.json").exists());
        // The next run takes the directory up: it starts training (here it stops at once).
        let o = claim(&out).args(["--step-budget", "1"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{file} {phase}: {err}");
        assert!(err.contains("step budget spent"), "{err}");
        assert!(temporaries(&dir).is_empty(), "{file} {phase}");
        if i + 1 < cases.len() {
            continue;
        }
        // And a rerun of the last completes it, as if nothing had happened (the crash test
        // above compares many more).
        let o = claim(&out).output().unwrap();
        assert_success(&format!("{file} {phase}: rerun"), &o);
        assert_eq!(o.stdout, want.stdout, "{file} {phase}: summary");
        assert_same_files(
            &format!("killed after {phase} of {file}"),
            &claim_run::snapshot(&out),
            &want.files,
        );
        // As a run killed after saving seed 0's result and before removing its checkpoints:
        // a rerun finds the seed complete, removes them, and changes nothing else.
        let left = dir.join("seed-0/resume/baseline-000000020");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("process.safetensors"), b"old").unwrap();
        std::fs::write(dir.join("seed-0/resume/baseline.json"), b"{}").unwrap();
        let o = claim(&out).output().unwrap();
        assert_success("rerun of a complete run", &o);
        assert_eq!(o.stdout, want.stdout, "rerun of a complete run: summary");
        assert_same_files(
            "rerun of a complete run",
            &claim_run::snapshot(&out),
            &want.files,
        );
    }
}
