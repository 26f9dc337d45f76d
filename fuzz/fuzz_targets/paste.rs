//! cargo-fuzz target: the paste block parser and the byte-preserving credentials edit (property in `fuzz/props.rs`).
#![no_main]

#[allow(dead_code)] // each target uses one property
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::paste(data);
});
