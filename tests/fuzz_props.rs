//! The fuzz properties (`fuzz/props.rs`) as bounded proptests, so CI checks them on every
//! run; the long, coverage-guided runs are `cargo fuzz` (docs/reliability.md).
//! `CMDR_LONG_TESTS=1` raises the number of cases.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[allow(dead_code)] // shared with the cargo-fuzz targets
#[path = "../fuzz/props.rs"]
mod props;

/// Pieces of real inputs: frames, ini syntax, keys, timestamps. Random bytes alone would
/// rarely get past the first parser.
const FRAGMENTS: &[&str] = &[
    "{\"hello\":{\"protocol\":1,\"client\":\"x\",\"client_version\":\"1\"}}\n",
    "{\"request\":{\"id\":1,\"request\":\"status\"}}\n",
    "{\"request\":{\"id\":2,\"request\":{\"accept\":{\"name\":\"acme\"}}}}\n",
    "{\"request\":{\"id\":3,\"request\":\"subscribe\"}}\n",
    "\n",
    "\r\n",
    "{",
    "}",
    "\"",
    ":",
    ",",
    "\u{0}",
    "[acme]\n",
    "[default]\n",
    "[profile acme]\n",
    "[sso-session s]\n",
    "[other]\n",
    "[profile  acme]\n",
    "[ default ]\n",
    "[profile default]\n",
    "[services s]\n",
    "[profile a#b]\n",
    "[]\n",
    "s3 =\n",
    "  max_concurrent_requests = 10\n",
    "  continued\n",
    "\tk = v\n",
    "a b = c\n",
    "=v\n",
    "Region = X\n",
    "kéy = v\n",
    "k = v ;c\n",
    "k = v#c\n",
    "\u{a0}",
    "\u{2003}#",
    "#",
    ";",
    "]",
    "[",
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
    "aws_secret_access_key = wJalrXUtnFEMI-SECRET-fuzz\n",
    "aws_session_token = FUZZ-TOKEN\n",
    "aws_session_token=T2\r\n",
    "region = eu-west-1\n",
    "source_profile = acme\n",
    "role_arn = arn:aws:iam::1:role/r\n",
    "x_security_token_expires = 2030-01-02T03:04:05Z\n",
    "aws_expiration = 2030-01-02 03:04:05+0000\n",
    "expiration = 2030-01-02T03:04:05\n",
    "# Expires: 2030-01-02T03:04:05UTC\n",
    "; comment\n",
    "# comment\n",
    "   ",
    "\t",
    "=",
    " = ",
    "key",
    "acme",
    "12h",
    "90m",
    "2021-12-07T01:19:12UTC",
    "\u{0}[acme]\naws_access_key_id = AKIANEW\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n",
    "\u{0}aws_access_key_id=AKIANEW\naws_secret_access_key=NEWSECRET\n",
];

fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => proptest::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn run(name: &str, check: fn(&[u8])) {
    let short = std::env::var_os("CMDR_LONG_TESTS").is_none();
    let cases = if short { 400 } else { 20_000 };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&input(), |data| {
        check(&data);
        Ok(())
    });
    if let Err(err) = result {
        panic!("{name}: {err}");
    }
}

#[test]
fn frames_binary() {
    run("frames_binary", |d| {
        props::frames(Some(cmdr_proto::Codec::Binary), d)
    });
}

#[test]
fn frames_json_and_detection() {
    run("frames_json", |d| {
        props::frames(Some(cmdr_proto::Codec::JsonLines), d);
        props::frames(None, d);
    });
}

#[test]
fn profile_view_and_expiry() {
    run("profile_view", props::profile_view);
}

#[test]
fn paste_changes_only_the_target() {
    run("paste", props::paste);
}

/// Valid binary frames of real messages still decode however they are split.
#[test]
fn encoded_requests_survive_any_split() {
    let hello = cmdr_proto::ClientMessage::Hello(cmdr_proto::Hello {
        protocol: cmdr_proto::PROTOCOL_VERSION,
        client: "fuzz".to_owned(),
        client_version: "0".to_owned(),
    });
    for codec in [cmdr_proto::Codec::Binary, cmdr_proto::Codec::JsonLines] {
        let frame = cmdr_proto::encode(codec, &hello).expect("encode");
        let mut data = vec![0x05];
        data.extend_from_slice(&frame);
        data.extend_from_slice(&frame);
        props::frames(Some(codec), &data[1..]);
    }
}

/// Every input the fuzzers ever failed on, kept in `fuzz/crashes/` or `fuzz/open-crashes/`,
/// must now pass its property.
#[test]
fn former_fuzz_findings_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut checked = 0;
    for dir in ["crashes", "open-crashes"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let data = std::fs::read(entry.path()).expect("finding");
            if name.starts_with("paste") {
                props::paste(&data);
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no saved findings found under {}",
        root.display()
    );
}
