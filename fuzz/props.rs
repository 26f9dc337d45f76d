//! The properties the fuzzers check, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and their bounded proptest equivalents in CI (`tests/fuzz_props.rs`). Each takes raw
//! bytes and panics when a property fails.

use std::collections::BTreeMap;

use cmdr_core::paste::{apply, parse_block, valid_profile_name};
use cmdr_core::profile::redact_secrets;
use cmdr_core::{Detail, FileKind, Inputs, ProfileView, parse_view, parse_view_with};
use cmdr_proto::{ClientMessage, Codec, FrameDecoder, MAX_FRAME_LEN, ServerMessage, encode};

/// Splits `data` at the first NUL: (before, after).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Feeds `data` to a decoder in chunks of `chunk` bytes and collects what it yields, up to
/// and including the first error.
fn decode_all<T: serde::de::DeserializeOwned>(
    mut decoder: FrameDecoder,
    data: &[u8],
    chunk: usize,
) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        decoder.extend(piece);
        loop {
            match decoder.decode::<T>() {
                Ok(Some(message)) => out.push(message),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// The frame decoder never panics; how the bytes are split across reads does not change
/// what it yields (as long as no error cut the stream); every decoded message re-encodes
/// and decodes to itself.
pub fn frames(codec: Option<Codec>, data: &[u8]) {
    let fresh = || match codec {
        Some(codec) => FrameDecoder::new(codec),
        None => FrameDecoder::detecting(),
    };
    let chunk = usize::from(data.first().copied().unwrap_or(1) % 17) + 1;
    let (whole, whole_err) = decode_all::<ClientMessage>(fresh(), data, data.len().max(1));
    let (pieces, pieces_err) = decode_all::<ClientMessage>(fresh(), data, chunk);
    if !whole_err && !pieces_err {
        assert_eq!(whole, pieces, "chunking changed the decoded messages");
    }
    // The server side's decoder too (clients decode these).
    let _ = decode_all::<ServerMessage>(fresh(), data, chunk);
    let used = codec.unwrap_or(Codec::detect(data.first().copied().unwrap_or(0)));
    for message in whole {
        let frame = encode(used, &message).expect("a decoded message re-encodes");
        assert!(frame.len() <= MAX_FRAME_LEN + 4);
        let (again, err) = decode_all::<ClientMessage>(FrameDecoder::new(used), &frame, 7);
        assert!(!err, "a re-encoded frame failed to decode");
        assert_eq!(again, vec![message], "round trip changed the message");
    }
}

fn view(config: &[u8], credentials: &[u8]) -> Result<ProfileView, usize> {
    let cache = BTreeMap::new();
    parse_view(Inputs {
        config,
        credentials,
        sso_cache: &cache,
    })
    .map_err(|errors| errors.len())
}

/// Parsing the view and timestamps never panics, is deterministic, and a parse failure
/// always names at least one error; cmdr's parser and the AWS SDK's read every file alike.
pub fn profile_view(data: &[u8]) {
    let (config, credentials) = split(data);
    if let (Ok(c), Ok(k)) = (
        std::str::from_utf8(config),
        std::str::from_utf8(credentials),
    ) && let Some(why) = cmdr_oracle::disagreement(c, k)
    {
        panic!("cmdr and the SDK disagree: {why}\nconfig: {c:?}\ncredentials: {k:?}");
    }
    let first = view(config, credentials);
    assert_eq!(
        first,
        view(config, credentials),
        "parse_view is not deterministic"
    );
    match &first {
        Err(count) => assert!(*count > 0, "a failed parse must carry an error"),
        Ok(real) => {
            // What the daemon keeps of a good file rebuilds the same view.
            let (c, k) = (redact_secrets(config), redact_secrets(credentials));
            let cache = BTreeMap::new();
            let detail = Detail {
                previous: Some(real),
                ..Detail::FULL
            };
            let inputs = Inputs {
                config: &c,
                credentials: &k,
                sso_cache: &cache,
            };
            let again = parse_view_with(inputs, detail).expect("a redacted file parses");
            assert_eq!(&again, real, "redacting changed the view");
            for (name, p) in &real.profiles {
                assert_eq!(again.profiles[name].credentials, p.credentials, "{name}");
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(64) {
        let _ = cmdr_core::expiry::parse_timestamp(line);
        if let Some((_, value)) = line.split_once('=') {
            let _ = cmdr_core::expiry::parse_timestamp(value);
        }
        let _ = cmdr_core::expiry::parse_expires_comment(line);
        let _ = cmdr_core::expiry::parse_duration(line);
    }
}

/// `paste`: when the block parses and the file parses, the edited file parses, the target
/// profile holds exactly the pasted keys, and every other profile is unchanged.
pub fn paste(data: &[u8]) {
    let (file, block) = split(data);
    let Ok(block) = parse_block(block) else {
        return;
    };
    let Ok(file) = std::str::from_utf8(file) else {
        return;
    };
    let target = block.profile.clone().unwrap_or_else(|| "acme".to_owned());
    if !valid_profile_name(&target) {
        return;
    }
    let Ok(before) = view(b"", file.as_bytes()) else {
        return;
    };
    let expires = data
        .len()
        .is_multiple_of(2)
        .then_some("2030-01-02T03:04:05Z");
    let edited = apply(file, &target, &block, expires);
    let after = view(b"", edited.as_bytes()).unwrap_or_else(|errors| {
        panic!("the edited file does not parse ({errors} errors):\n{edited:?}\nfrom\n{file:?}")
    });
    let creds = after
        .get(&target)
        .and_then(|p| p.credentials.as_ref())
        .unwrap_or_else(|| panic!("no credentials for {target:?} in {edited:?}"));
    assert_eq!(creds.access_key_id, block.access_key_id, "{edited:?}");
    assert_eq!(
        creds.secret_access_key, block.secret_access_key,
        "{edited:?}"
    );
    assert_eq!(creds.session_token, block.session_token, "{edited:?}");
    let others = |v: &ProfileView| -> Vec<(String, Vec<FileKind>, BTreeMap<String, String>)> {
        v.profiles
            .values()
            .filter(|p| p.name != target)
            .map(|p| (p.name.clone(), p.sources.clone(), p.properties.clone()))
            .collect()
    };
    assert_eq!(
        others(&before),
        others(&after),
        "another profile changed:\n{edited:?}\nfrom\n{file:?}"
    );
    // Byte level: the edit is idempotent.
    assert_eq!(
        apply(&edited, &target, &block, expires),
        edited,
        "pasting the same block twice changed the file again"
    );
}
