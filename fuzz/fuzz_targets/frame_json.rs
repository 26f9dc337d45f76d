//! cargo-fuzz target: the JSON-lines decoder and codec detection (property in `fuzz/props.rs`).
#![no_main]

#[allow(dead_code)] // each target uses one property
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::frames(Some(cmdr_proto::Codec::JsonLines), data);
    props::frames(None, data);
});
