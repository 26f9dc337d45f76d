//! The block parser (Option 2, `export`, `set`, `$Env:`) and the byte-preserving edit.

use super::*;
use crate::profile::{FileKind, check_file};

fn block(token: &str) -> Block {
    Block {
        profile: Some("acme".into()),
        access_key_id: "ASIANEWKEY".into(),
        secret_access_key: "NEWSECRET".into(),
        session_token: Some(token.into()),
        expires: None,
    }
}

fn creds_of(text: &str, profile: &str) -> (String, String, Option<String>) {
    let view = crate::profile::parse_files("", text);
    let c = view
        .get(profile)
        .and_then(|p| p.credentials.as_deref().cloned())
        .expect("credentials");
    (
        c.access_key_id.clone(),
        c.secret_access_key.clone(),
        c.session_token.clone(),
    )
}

#[test]
fn parses_portal_blocks() {
    let ok = [
        "[123456789012_Admin]\naws_access_key_id=ASIA1\naws_secret_access_key=S\naws_session_token=T\n",
        "\r\n\r\n[p]\r\naws_access_key_id = ASIA1\r\naws_secret_access_key  =  S\r\naws_session_token= T\r\n\r\n",
        "aws_access_key_id = ASIA1\naws_secret_access_key = S\naws_session_token = T\n",
    ];
    for input in ok {
        let b = parse_block(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(b.access_key_id, "ASIA1");
        assert_eq!(b.secret_access_key, "S");
    }
    let b = parse_block(ok[0].as_bytes()).expect("ok");
    assert_eq!(b.profile.as_deref(), Some("123456789012_Admin"));
    assert_eq!(b.session_token.as_deref(), Some("T"));
    let secret = parse_block(b"aws_access_key_id = AKIA1\naws_secret_access_key = SECRETVALUE\n")
        .expect("ok");
    assert!(!format!("{secret:?}").contains("SECRETVALUE"));
}

#[test]
fn parses_environment_variable_blocks() {
    let blocks = [
        "export AWS_ACCESS_KEY_ID=\"ASIA1\"\nexport AWS_SECRET_ACCESS_KEY=\"S/+x\"\nexport AWS_SESSION_TOKEN=\"T==\"\n",
        "SET AWS_ACCESS_KEY_ID=ASIA1\r\nSET AWS_SECRET_ACCESS_KEY=S/+x\r\nSET AWS_SESSION_TOKEN=T==\r\n",
        "$Env:AWS_ACCESS_KEY_ID=\"ASIA1\"\n$Env:AWS_SECRET_ACCESS_KEY = 'S/+x'\n$env:AWS_SESSION_TOKEN=\"T==\"\n",
        "[named]\nexport AWS_ACCESS_KEY_ID=ASIA1\nexport AWS_SECRET_ACCESS_KEY=S/+x\nexport AWS_SESSION_TOKEN=T==\n",
    ];
    for input in blocks {
        let b = parse_block(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(
            (b.access_key_id.as_str(), b.secret_access_key.as_str()),
            ("ASIA1", "S/+x"),
            "{input:?}"
        );
        assert_eq!(b.session_token.as_deref(), Some("T=="), "{input:?}");
    }
    assert_eq!(parse_block(blocks[0].as_bytes()).expect("ok").profile, None);
    assert_eq!(
        parse_block(blocks[3].as_bytes())
            .expect("ok")
            .profile
            .as_deref(),
        Some("named")
    );
    // An unbalanced quote is a copy cut short, not part of a key.
    assert_eq!(
        parse_block(b"export AWS_ACCESS_KEY_ID=\"A\nexport AWS_SECRET_ACCESS_KEY=S\n"),
        Err(PasteError::BadLine(1))
    );
}

#[test]
fn rejects_bad_blocks_without_quoting_them() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"\x00\x01\x02binary", "not text"),
        (b"\xff\xfe", "not text"),
        (b"[a]\naws_access_key_id = A\n", "aws_secret_access_key"),
        (b"[a]\naws_secret_access_key = S\n", "aws_access_key_id"),
        (
            b"[a]\naws_access_key_id = A\naws_secret_access_key = S\n[b]\n",
            "one profile",
        ),
        (
            b"[a]\naws_access_key_id = A\naws_secret_access_key = S\nregion = x\n",
            "unexpected key",
        ),
        (
            b"[a]\naws_access_key_id = A\nnonsense SECRETVALUE\n",
            "expected `key = value`",
        ),
        (b"[a\naws_access_key_id = A\n", "invalid section"),
        // Regression (fuzz): the SDKs would read `= #…` as an empty value.
        (
            b"aws_access_key_id = A\naws_secret_access_key = #]SECRETVALUE\n",
            "read as a comment",
        ),
        (
            b"aws_access_key_id = A\naws_secret_access_key = S\naws_session_token = x;SECRETVALUE\n",
            "read as a comment",
        ),
        (
            b"[a]\naws_access_key_id = A\naws_access_key_id = B\naws_secret_access_key = S\n",
            "twice",
        ),
        (
            b"[a]\naws_access_key_id = \naws_secret_access_key = S\n",
            "is empty",
        ),
    ];
    for (input, message) in cases {
        let err = parse_block(input).expect_err("must fail").to_string();
        assert!(err.contains(message), "{input:?}: {err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
    }
    assert_eq!(
        parse_block(&vec![b'a'; MAX_BLOCK_LEN + 1]),
        Err(PasteError::TooLarge)
    );
}

fn check(before: &str, expected: &str) {
    let after = apply(before, "acme", &block("NEWTOKEN"), None);
    assert_eq!(after, expected, "\n--- before ---\n{before}");
    check_file(FileKind::Credentials, after.as_bytes()).expect("result parses");
    assert_eq!(
        creds_of(&after, "acme"),
        (
            "ASIANEWKEY".into(),
            "NEWSECRET".into(),
            Some("NEWTOKEN".into())
        )
    );
}

/// Regression (found by the `paste` property in `fuzz/props.rs`): a section with a
/// header and no key lines got no keys at all; the edited file had no credentials.
#[test]
fn section_without_key_lines_gets_the_keys() {
    let new = "aws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n";
    check("[acme]\n", &format!("[acme]\n{new}"));
    check("[acme]", &format!("[acme]\n{new}"));
    check(
        "[acme]\n# a comment\n\n[b]\nx = 1\n",
        &format!("[acme]\n{new}# a comment\n\n[b]\nx = 1\n"),
    );
    check(
        "[acme]\r\n",
        &format!("[acme]\r\n{}", new.replace('\n', "\r\n")),
    );
}

#[test]
fn profile_names_are_those_the_sdks_accept() {
    for ok in ["acme", "123456789012_Admin", "a-b.c/d%e@f:g+h"] {
        assert!(valid_profile_name(ok), "{ok}");
    }
    // Regression (fuzz): `!` and other characters make the SDKs drop the section.
    for bad in ["", "a b", "a!b", "a[b", "a#b", "a;b", "ünï", "a\tb", "a\"b"] {
        assert!(!valid_profile_name(bad), "{bad}");
    }
}

#[test]
fn edits_only_the_target_section() {
    let new = "aws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n";
    let cases: Vec<(String, String)> = vec![
        // Empty file: a new section.
        (String::new(), format!("[acme]\n{new}")),
        // Appended after other profiles, one blank line between.
        ("# my creds\n[other]\nx = 1\n".into(), format!("# my creds\n[other]\nx = 1\n\n[acme]\n{new}")),
        ("[other]\nx = 1".into(), format!("[other]\nx = 1\n\n[acme]\n{new}")),
        // Replaced in place; comments, order, region and the other profile kept.
        (
            "[a]\nk=1\n\n# work\n[acme] ; mine\nregion=eu-west-1\naws_access_key_id=OLD\n# keep me\naws_secret_access_key =OLD\naws_session_token= OLD\nx_security_token_expires = 2020-01-01T00:00:00Z\n\n[z]\nq = 2\n".into(),
            "[a]\nk=1\n\n# work\n[acme] ; mine\nregion=eu-west-1\naws_access_key_id = ASIANEWKEY\n# keep me\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n\n[z]\nq = 2\n".into(),
        ),
        // Static keys gain a token after the last key line.
        (
            "[acme]\naws_access_key_id = OLD\naws_secret_access_key = OLD\n# trailing comment\n\n[b]\n".into(),
            "[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n# trailing comment\n\n[b]\n".into(),
        ),
        // CRLF files stay CRLF.
        (
            "[b]\r\nx = 1\r\n[acme]\r\naws_access_key_id = OLD\r\naws_secret_access_key = OLD\r\n".into(),
            "[b]\r\nx = 1\r\n[acme]\r\naws_access_key_id = ASIANEWKEY\r\naws_secret_access_key = NEWSECRET\r\naws_session_token = NEWTOKEN\r\n".into(),
        ),
        // Duplicate sections: managed keys leave the first, the last gets the values.
        (
            "[acme]\naws_session_token = OLD1\nregion = x\n[b]\ny = 2\n[acme]\naws_access_key_id = OLD\naws_secret_access_key = OLD\n".into(),
            "[acme]\nregion = x\n[b]\ny = 2\n[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n".into(),
        ),
        // A stale `# Expires:` comment goes with the old session; a last line without newline.
        (
            "[acme]\n# Expires: 2020-01-01T00:00:00Z\naws_access_key_id = OLD\naws_secret_access_key = OLD".into(),
            format!("[acme]\n{new}"),
        ),
    ];
    for (before, expected) in cases {
        check(&before, &expected);
    }
}

/// Found by the paste fuzz target: junk after `]` means the SDKs do not read the line
/// as that profile's header, so the keys must go into a real `[acme]` section.
#[test]
fn a_header_with_trailing_junk_is_not_the_section() {
    let before = "[acme]\u{1a}ibe-=\n[other]\nx = 1\n";
    let after = apply(before, "acme", &block("T"), None);
    assert!(after.starts_with(before), "{after:?}");
    assert!(after.ends_with("[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = T\n"));
    let comment = apply(
        "[acme] # mine\naws_access_key_id = OLD\naws_secret_access_key = OLD\n",
        "acme",
        &block("T"),
        None,
    );
    assert!(
        comment.starts_with("[acme] # mine\naws_access_key_id = ASIANEWKEY\n"),
        "{comment}"
    );
}

#[test]
fn expiry_is_written_and_tokens_can_be_dropped() {
    let mut b = block("T");
    b.session_token = None;
    let after = apply(
        "[acme]\naws_access_key_id = A\naws_secret_access_key = S\naws_session_token = OLD\n",
        "acme",
        &b,
        Some("2026-11-29T10:00:00Z"),
    );
    assert_eq!(
        after,
        "[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\nx_security_token_expires = 2026-11-29T10:00:00Z\n"
    );
}

/// Issue 22: a token wrapped onto a second line holding `=` (base64 padding) was reported
/// as "unexpected key `secrettokenpart2+xyz/qq`": part of the secret in the message.
#[test]
fn no_message_shows_part_of_a_secret() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"[a]\naws_access_key_id = ASIA1\naws_secret_access_key = S\naws_session_token = SECRETPART1\nsecrettokenpart2+xyz/qq==\n",
            "line 5 looks like the rest of line 4's value",
        ),
        (
            b"[a]\naws_access_key_id = ASIA1\naws_secret_access_key = SECRETPART1\nabcdef=\naws_session_token = T\n",
            "line 4 looks like the rest of line 3's value",
        ),
        (
            b"[a]\naws_access_key_id = ASIA1\naws_secret_access_key = S\naws_session_token = SECRETPART1\nSECRETPART2NOEQUALS\n",
            "line 5 looks like the rest of line 4's value",
        ),
        (
            b"[a]\nIQoJb3JpZ2luX2VjEJr//SECRETPART = x\naws_access_key_id = A\n",
            "line 2: not a line of an",
        ),
        (
            b"[a]\naws_access_key_id = A\naws_secret_access_key = SECRET PART\n",
            "line 3: the value of `aws_secret_access_key` contains a space",
        ),
    ];
    for (input, message) in cases {
        let err = parse_block(input).expect_err("must fail").to_string();
        assert!(err.contains(message), "{input:?}: {err}");
        for part in ["SECRET", "secrettokenpart2", "xyz", "abcdef", "IQoJ"] {
            assert!(!err.contains(part), "{err}");
        }
    }
    // A real key name is still named.
    let err = parse_block(b"[a]\naws_access_key_id = A\nregion = eu-west-1\n")
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("unexpected key `region`"), "{err}");
}

#[test]
fn a_temporary_key_needs_its_session_token() {
    let err = parse_block(b"[a]\naws_access_key_id = ASIAXYZ\naws_secret_access_key = S\n")
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("`aws_session_token` is missing"), "{err}");
    assert!(err.contains("copy the whole block again"), "{err}");
    // Long-lived keys have none.
    assert!(parse_block(b"[a]\naws_access_key_id = AKIAXYZ\naws_secret_access_key = S\n").is_ok());
}

#[test]
fn what_the_portal_and_users_paste() {
    let b = parse_block(
        b"[profile acme]\naws_access_key_id = ASIA1\naws_secret_access_key = S\naws_session_token = T\nx_security_token_expires = 2030-01-02T03:04:05+01:00\n\nexport AWS_PROFILE=acme\n",
    )
    .expect("ok");
    assert_eq!(b.profile.as_deref(), Some("acme"));
    assert_eq!(
        b.expires.map(|t| t.to_rfc3339()),
        Some("2030-01-02T02:04:05+00:00".to_owned())
    );
    let b = parse_block(
        b"export AWS_ACCESS_KEY_ID=ASIA1\nexport AWS_SECRET_ACCESS_KEY=S\nexport AWS_SESSION_TOKEN=T\nexport AWS_PROFILE=dev\naws_expiration = 2030-01-02T03:04:05Z\n",
    )
    .expect("ok");
    assert_eq!(b.profile.as_deref(), Some("dev"));
    assert!(b.expires.is_some());
    // Contradictions and unreadable expiries are refused by line.
    let err = parse_block(
        b"[acme]\naws_access_key_id = A\naws_secret_access_key = S\nexport AWS_PROFILE=prod\n",
    )
    .expect_err("mismatch")
    .to_string();
    assert!(
        err.contains("names profile `prod`, but the header names `acme`"),
        "{err}"
    );
    let err = parse_block(
        b"[acme]\naws_access_key_id = A\naws_secret_access_key = S\naws_expiration = soon\n",
    )
    .expect_err("expiry")
    .to_string();
    assert!(err.starts_with("line 4: the expiry"), "{err}");
    // Any header name is taken; whether the SDKs read it is said by profile_name_problem.
    let b =
        parse_block("[acmé-prød]\naws_access_key_id = A\naws_secret_access_key = S\n".as_bytes())
            .expect("ok");
    assert_eq!(b.profile.as_deref(), Some("acmé-prød"));
    let why = profile_name_problem("acmé-prød").expect("a problem");
    assert!(why.contains("boto3 and the AWS CLI read"), "{why}");
    assert!(why.contains("AWS SDK for Rust"), "{why}");
    assert_eq!(profile_name_problem("acme"), None);
    assert_eq!(
        parse_block(b"[sso-session x]\n"),
        Err(PasteError::BadHeader(1))
    );
}

#[test]
fn swapped_key_and_secret_are_refused() {
    let swapped = b"[acme]\naws_access_key_id = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY00\naws_secret_access_key = AKIAIOSFODNN7EXAMPLE\n";
    assert_eq!(parse_block(swapped), Err(PasteError::Swapped));
    let right = b"[acme]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY00\n";
    assert!(parse_block(right).is_ok());
    // LocalStack's `test`/`test` and other short placeholders are not judged.
    assert!(parse_block(b"[ls]\naws_access_key_id = test\naws_secret_access_key = test\n").is_ok());
    let secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY00";
    let token = "IQoJb3JpZ2luX2VjE".repeat(20);
    let swapped = format!(
        "[acme]\naws_access_key_id = ASIAIOSFODNN7EXAMPLE\naws_secret_access_key = {token}\naws_session_token = {secret}\n"
    );
    assert_eq!(
        parse_block(swapped.as_bytes()),
        Err(PasteError::SwappedToken)
    );
    let right = format!(
        "[acme]\naws_access_key_id = ASIAIOSFODNN7EXAMPLE\naws_secret_access_key = {secret}\naws_session_token = {token}\n"
    );
    assert!(parse_block(right.as_bytes()).is_ok());
}
