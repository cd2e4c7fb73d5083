//! A run directory's `resume.json`: the input is the file, checked with a `config.json` that
//! matches the run (the same as in crate/tests/fuzz_regressions.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const CONFIG: &str =
    r#"{"run":{"lr":0.01,"device":"cpu","hidden":[512,512],"loss":"mse"},"seeds":[0,1]}"#;

fuzz_target!(|data: &[u8]| {
    let config: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    let _ = eoslab::resume::check_identity(
        Path::new("run"),
        CONFIG.as_bytes(),
        Some(data),
        &config,
        "0123456789abcdef",
    );
});
