//! The MNIST IDX reader on an images file and a labels file (raw or gzipped). Input layout:
//! a big-endian u32 `k`, then the images file (its first `k` bytes of what follows), then the
//! labels file (the rest); crate/tests/fuzz_regressions.rs splits the same way.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let (images, labels) = split(data);
    let _ = eoslab::data::mnist::parse_files(
        Path::new("fuzz-images-idx3-ubyte"),
        images,
        Path::new("fuzz-labels-idx1-ubyte"),
        labels,
    );
});

/// The two files packed in one input.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((k, rest)) = data.split_first_chunk::<4>() else {
        return (data, &[]);
    };
    rest.split_at((u32::from_be_bytes(*k) as usize).min(rest.len()))
}
