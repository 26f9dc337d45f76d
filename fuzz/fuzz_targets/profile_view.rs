//! cargo-fuzz target: profile view, expiry timestamps, comments and durations (property in `fuzz/props.rs`).
#![no_main]

#[allow(dead_code)] // each target uses one property
#[path = "../props.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::profile_view(data);
});
