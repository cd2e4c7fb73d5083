//! The CSV reader on a gzipped file (`*.csv.gz`): the input is the compressed file.
#![no_main]
use eoslab::data::csv::{LabelColumn, parse_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = parse_bytes(Path::new("fuzz.csv.gz"), data, &LabelColumn::Last);
});
