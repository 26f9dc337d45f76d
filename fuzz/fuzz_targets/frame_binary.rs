//! cargo-fuzz target: the binary frame decoder (length prefix + postcard) (property in `fuzz/props.rs`).
#![no_main]

#[allow(dead_code)] // each target uses one property
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::frames(Some(cmdr_proto::Codec::Binary), data);
});
