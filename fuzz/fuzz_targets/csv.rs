//! The CSV reader on plain text: the input is the file, read with every kind of label column.
#![no_main]
use eoslab::data::csv::{LabelColumn, parse_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    for label in [
        LabelColumn::Last,
        LabelColumn::First,
        LabelColumn::Index(1),
        LabelColumn::Name("label".into()),
    ] {
        let _ = parse_bytes(Path::new("fuzz.csv"), data, &label);
    }
});
