//! A resumable run's measurement state (`seed-<s>/resume/<process>-<step>/monitor.safetensors`:
//! sharpness records, warm-start vectors, metric log, loss history): the input is the file.
#![no_main]
use eoslab::resume::{MonitorState, TableReader};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("monitor.safetensors");
    if let Ok(t) = TableReader::from_bytes(path, data.to_vec()) {
        let _ = MonitorState::from_table(&t, &candle_core::Device::Cpu);
    }
});
