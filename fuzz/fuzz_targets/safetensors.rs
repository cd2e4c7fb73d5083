//! The safetensors training-set reader: the input is the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = eoslab::data::tensors::parse_bytes(Path::new("fuzz.safetensors"), data);
});
