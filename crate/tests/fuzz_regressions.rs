//! The fuzz corpora (`fuzz/corpus/<target>/`) and crash reproducers (`fuzz/regressions/<target>/`)
//! replayed through the readers on stable, without the fuzzer: every file must come back as
//! `Ok` or `Err`, never a panic, and every reproducer as an `Err` naming the file. Each target
//! feeds its input to the reader exactly as `fuzz/fuzz_targets/<target>.rs` does.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpus` rewrites the seed files
//! (`seed-*`) of the corpora from the library's own writers (fuzz_regressions/seeds.rs).
use eoslab::checkpoint::Checkpoint;
use eoslab::data::csv::LabelColumn;
use eoslab::data::{cifar, csv, mnist, tensors};
use eoslab::resume::MonitorState;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The configuration and training set a fuzzed `config.json` / `resume.json` is checked against
/// (the same as in fuzz/fuzz_targets/run_config.rs and resume_state.rs).
const CONFIG: &str =
    r#"{"run":{"lr":0.01,"device":"cpu","hidden":[512,512],"loss":"mse"},"seeds":[0,1]}"#;
const RESUME: &str = r#"{"format":"eoslab-resume-v1","train_fingerprint":"0123456789abcdef","eoslab_version":"0.1.0"}"#;
const FINGERPRINT: &str = "0123456789abcdef";

#[path = "fuzz_regressions/seeds.rs"]
mod seeds;

/// Every fuzz target, in the order of fuzz/Cargo.toml.
const TARGETS: [&str; 9] = [
    "csv",
    "csv_gz",
    "safetensors",
    "cifar",
    "mnist_idx",
    "checkpoint",
    "run_config",
    "resume_state",
    "monitor_state",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none if the folder does not exist).
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// The MNIST target's input: a big-endian u32 `k`, the images file (`k` bytes), the labels file.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((k, rest)) = data.split_first_chunk::<4>() else {
        return (data, &[]);
    };
    rest.split_at((u32::from_be_bytes(*k) as usize).min(rest.len()))
}

/// Feed `data` to `target`'s reader(s) as the fuzz target does: each call's error message, or
/// `None` where it succeeded; and the file names an error must mention.
fn replay(target: &str, data: &[u8]) -> (Vec<Option<String>>, &'static [&'static str]) {
    fn msg<T>(r: eoslab::Result<T>) -> Option<String> {
        r.err().map(|e| e.to_string())
    }
    let config: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    let run = Path::new("run");
    match target {
        "csv" => (
            [
                LabelColumn::Last,
                LabelColumn::First,
                LabelColumn::Index(1),
                LabelColumn::Name("label".into()),
            ]
            .iter()
            .map(|l| msg(csv::parse_bytes(Path::new("fuzz.csv"), data, l)))
            .collect(),
            &["fuzz.csv"],
        ),
        "csv_gz" => (
            vec![msg(csv::parse_bytes(
                Path::new("fuzz.csv.gz"),
                data,
                &LabelColumn::Last,
            ))],
            &["fuzz.csv.gz"],
        ),
        "safetensors" => (
            vec![msg(tensors::parse_bytes(
                Path::new("fuzz.safetensors"),
                data,
            ))],
            &["fuzz.safetensors"],
        ),
        "cifar" => (
            vec![msg(cifar::parse_batch(Path::new("data_batch_1.bin"), data))],
            &["data_batch_1.bin"],
        ),
        "mnist_idx" => {
            let (images, labels) = split(data);
            (
                vec![msg(mnist::parse_files(
                    Path::new("fuzz-images-idx3-ubyte"),
                    images,
                    Path::new("fuzz-labels-idx1-ubyte"),
                    labels,
                ))],
                &["fuzz-images-idx3-ubyte", "fuzz-labels-idx1-ubyte"],
            )
        }
        "checkpoint" => (
            vec![msg(Checkpoint::from_bytes(
                Path::new("process.safetensors"),
                data,
            ))],
            &["process.safetensors"],
        ),
        "run_config" => (
            vec![msg(eoslab::resume::check_identity(
                run,
                data,
                Some(RESUME.as_bytes()),
                &config,
                FINGERPRINT,
            ))],
            &["config.json", "resume.json"],
        ),
        "resume_state" => (
            vec![msg(eoslab::resume::check_identity(
                run,
                CONFIG.as_bytes(),
                Some(data),
                &config,
                FINGERPRINT,
            ))],
            &["config.json", "resume.json"],
        ),
        "monitor_state" => {
            let path = Path::new("monitor.safetensors");
            let state = eoslab::resume::TableReader::from_bytes(path, data.to_vec())
                .and_then(|t| MonitorState::from_table(&t, &candle_core::Device::Cpu));
            (vec![msg(state)], &["monitor.safetensors"])
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

/// What each crash reproducer must now be refused with (it panicked before the fix).
const REPRODUCERS: [(&str, &str, &str); 7] = [
    // safetensors accepts an empty [0, C, H, W] tensor whatever C x H x W is.
    (
        "safetensors",
        "x-empty-images-chw-overflow",
        "C x H x W overflows",
    ),
    (
        "safetensors",
        "image-shape-product-overflow",
        "does not hold the 1 features of x",
    ),
    // Architecture in the checkpoint's metadata: division by zero, then an overflowing size.
    ("checkpoint", "cnn-pool-zero", "no valid architecture"),
    (
        "checkpoint",
        "cnn-feature-size-overflow",
        "feature sizes overflow",
    ),
    // An empty tensor whose other dimensions overflow candle's strides.
    (
        "checkpoint",
        "empty-tensor-huge-dims",
        "tensor net.9.extra has shape [0, 1099511627776, 1099511627776], whose size overflows",
    ),
    (
        "monitor_state",
        "record-length-wraps",
        "sharpness records truncated",
    ),
    (
        "monitor_state",
        "vector-empty-huge-dims",
        "tensor vector.0 has shape [0, 1099511627776, 1099511627776], whose size overflows",
    ),
];

#[test]
fn each_reproducer_fails_with_its_message() {
    for (target, name, want) in REPRODUCERS {
        let p = fuzz_dir().join("regressions").join(target).join(name);
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (results, _) = replay(target, &data);
        for r in results {
            let e = r.unwrap_or_else(|| panic!("{target}/{name} was accepted"));
            assert!(e.contains(want), "{target}/{name}: {e}");
        }
    }
    // Every reproducer on disk is listed above with its message.
    let listed = TARGETS
        .iter()
        .map(|t| files("regressions", t).len())
        .sum::<usize>();
    assert_eq!(
        listed,
        REPRODUCERS.len(),
        "a reproducer is missing from REPRODUCERS"
    );
}

#[test]
fn corpora_and_reproducers_never_panic_and_reproducers_fail_clearly() {
    let mut problems = Vec::new();
    let mut counts = Vec::new();
    for target in TARGETS {
        for kind in ["corpus", "regressions"] {
            let paths = files(kind, target);
            counts.push(format!("{target}/{kind}: {}", paths.len()));
            for p in paths {
                let data = std::fs::read(&p).unwrap();
                let shown = format!("{kind}/{target}/{}", p.file_name().unwrap().display());
                let Ok((results, names)) = catch_unwind(AssertUnwindSafe(|| replay(target, &data)))
                else {
                    problems.push(format!("{shown}: the reader panicked"));
                    continue;
                };
                if kind != "regressions" {
                    continue;
                }
                // A reproducer is malformed input: every reading of it must be refused, with
                // a message that names the file.
                for r in results {
                    match r {
                        None => problems.push(format!("{shown}: accepted")),
                        Some(m) if !names.iter().any(|n| m.contains(n)) => {
                            problems.push(format!("{shown}: the error names no file: {m}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The corpora ship with the repository: an empty one means a folder went missing.
    for target in TARGETS {
        assert!(
            !files("corpus", target).is_empty(),
            "fuzz/corpus/{target} is empty ({})",
            counts.join(", ")
        );
    }
}
