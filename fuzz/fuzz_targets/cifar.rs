//! The CIFAR-10 binary batch reader: the input is the batch file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = eoslab::data::cifar::parse_batch(Path::new("data_batch_1.bin"), data);
});
