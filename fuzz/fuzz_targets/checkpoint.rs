//! The checkpoint reader (tensors and the JSON metadata in the safetensors header): the input
//! is the checkpoint file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = eoslab::checkpoint::Checkpoint::from_bytes(Path::new("process.safetensors"), data);
});
