//! A run directory's `config.json`: the input is the file, checked against a fixed run
//! configuration with a valid `resume.json` (the same as in crate/tests/fuzz_regressions.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const CONFIG: &str =
    r#"{"run":{"lr":0.01,"device":"cpu","hidden":[512,512],"loss":"mse"},"seeds":[0,1]}"#;
const RESUME: &str = r#"{"format":"eoslab-resume-v1","train_fingerprint":"0123456789abcdef","eoslab_version":"0.1.0"}"#;

fuzz_target!(|data: &[u8]| {
    let config: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    let _ = eoslab::resume::check_identity(
        Path::new("run"),
        data,
        Some(RESUME.as_bytes()),
        &config,
        "0123456789abcdef",
    );
});
