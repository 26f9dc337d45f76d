//! The view: kinds, regions, SDK semantics, secrets, errors, expiry from every source.

use super::*;
use crate::expiry::ExpirySource;

use super::parse_files as view;

fn check(config: &str, credentials: &str, name: &str, kind: ProfileKind, region: Option<&str>) {
    let v = view(config, credentials);
    let p = v
        .get(name)
        .unwrap_or_else(|| panic!("profile {name} missing in {v:?}"));
    assert_eq!(p.kind, kind, "{name}");
    assert_eq!(p.region.as_deref(), region, "{name}");
}

const KEYS: &str = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3cr3t\n";

#[test]
fn kinds_and_regions() {
    let cases: &[(&str, &str, &str, ProfileKind, Option<&str>)] = &[
        ("", &format!("[a]\n{KEYS}"), "a", ProfileKind::Static, None),
        (
            "",
            &format!("[a]\n{KEYS}aws_session_token = tok\n"),
            "a",
            ProfileKind::Session,
            None,
        ),
        (
            "[profile a]\nregion = eu-west-1\n",
            &format!("[a]\n{KEYS}"),
            "a",
            ProfileKind::Static,
            Some("eu-west-1"),
        ),
        (
            "[profile r]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = a\n",
            "",
            "r",
            ProfileKind::AssumeRole,
            None,
        ),
        (
            "[profile s]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n\
             [sso-session corp]\nsso_start_url = https://x\nsso_region = us-east-1\n",
            "",
            "s",
            ProfileKind::Sso,
            None,
        ),
        (
            "[profile p]\ncredential_process = /bin/true\n",
            "",
            "p",
            ProfileKind::CredentialProcess,
            None,
        ),
        (
            "[profile w]\nrole_arn = arn\nweb_identity_token_file = /t\n",
            "",
            "w",
            ProfileKind::WebIdentity,
            None,
        ),
        (
            // `aws login` (AWS CLI >= 2.32); a credential_process beside it loses, as in
            // aws-config's provider order.
            "[profile l]\nlogin_session = arn:aws:iam::123456789012:user/Admin\ncredential_process = /bin/true\nregion = eu-west-1\n",
            "",
            "l",
            ProfileKind::Login,
            Some("eu-west-1"),
        ),
        (
            "[default]\nregion = us-east-1\n",
            "",
            "default",
            ProfileKind::Other,
            Some("us-east-1"),
        ),
    ];
    for (config, credentials, name, kind, region) in cases {
        check(config, credentials, name, *kind, *region);
    }
}

#[test]
fn sdk_semantics_are_kept() {
    // `[profile default]` beats `[default]` in config; credentials win per key;
    // a `#` inside a value is only a comment after whitespace; keys are lower-cased.
    let v = view(
        "[default]\nregion = us-west-1\n[profile default]\nregion = eu-north-1\n\
         [profile a]\nRegion = ap-south-1\noutput = json#not-a-comment ; a comment\n\
         [notprefixed]\nregion = x\n",
        "[a]\nregion = sa-east-1\n",
    );
    assert_eq!(
        v.get("default").and_then(|p| p.region.as_deref()),
        Some("eu-north-1")
    );
    let a = v.get("a").expect("a");
    assert_eq!(a.region.as_deref(), Some("sa-east-1"));
    assert_eq!(
        a.properties.get("output").map(String::as_str),
        Some("json#not-a-comment")
    );
    assert_eq!(a.sources, vec![FileKind::Config, FileKind::Credentials]);
    assert!(v.get("notprefixed").is_none());
    assert!(
        v.warnings.iter().any(|w| w.contains("[notprefixed]")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn secrets_are_redacted_and_fingerprinted() {
    let v = view("", &format!("[a]\n{KEYS}aws_session_token = tok1\n"));
    let a = v.get("a").expect("a");
    assert_eq!(a.properties["aws_secret_access_key"], REDACTED);
    assert_eq!(a.properties["aws_session_token"], REDACTED);
    // Nested under a sub-property too (docs/reliability.md, "6. Secrets"): at every depth.
    let v = view(
        "",
        &format!(
            "[b]\n{KEYS}s3 =\n  aws_secret_access_key = nested-secret\n  max_concurrent_requests = 20\n"
        ),
    );
    let s3 = &v.get("b").expect("b").properties["s3"];
    assert!(!s3.contains("nested-secret"), "{s3}");
    assert!(
        s3.contains(REDACTED) && s3.contains("max_concurrent_requests = 20"),
        "{s3}"
    );
    assert_eq!(a.properties["aws_access_key_id"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(a.masked_access_key_id.as_deref(), Some("AKIA…MPLE"));
    let debug = format!("{v:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("tok1"),
        "{debug}"
    );

    let fp1 = a.fingerprint.clone().expect("fingerprint");
    let v2 = view("", &format!("[a]\n{KEYS}aws_session_token = tok2\n"));
    let fp2 = v2
        .get("a")
        .and_then(|p| p.fingerprint.clone())
        .expect("fingerprint");
    assert_ne!(fp1, fp2);
    assert_eq!(fp1.len(), 16);
    // Non-secret edits keep the fingerprint.
    let v3 = view(
        "[profile a]\nregion = eu-west-1\n",
        &format!("[a]\n{KEYS}aws_session_token = tok1\n"),
    );
    assert_eq!(v3.get("a").and_then(|p| p.fingerprint.clone()), Some(fp1));
}

#[test]
fn errors_name_file_and_line() {
    let cache = BTreeMap::new();
    let err = parse_view(Inputs {
        config: b"[profile a]\nregion = x\n",
        credentials: b"[a]\naws_access_key_id = A\n[broken\n",
        sso_cache: &cache,
    })
    .expect_err("broken");
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].file, FileKind::Credentials);
    assert_eq!(err[0].line, Some(3));
    assert!(err[0].message.contains("]"), "{}", err[0].message);

    let err = parse_view(Inputs {
        config: b"[profile a]\nno equals sign here\n",
        credentials: b"",
        sso_cache: &cache,
    })
    .expect_err("broken");
    assert_eq!((err[0].file, err[0].line), (FileKind::Config, Some(2)));
    assert!(!err[0].message.contains("no equals"), "{}", err[0].message);

    let err = parse_view(Inputs {
        config: b"",
        credentials: b"[a]\n\xff\xfe\n",
        sso_cache: &cache,
    })
    .expect_err("binary");
    assert_eq!((err[0].file, err[0].line), (FileKind::Credentials, Some(2)));
}

#[test]
fn every_expiry_key_is_read() {
    for key in crate::expiry::EXPIRY_KEYS {
        let v = view(
            "",
            &format!("[a]\n{KEYS}aws_session_token = t\n{key} = 2026-11-29T10:00:00+0000\n"),
        );
        let e = v.get("a").and_then(|p| p.expiry.clone()).expect("expiry");
        assert_eq!(e.source().label(), *key);
        assert_eq!(
            e.when().map(|a| a.to_rfc3339()).as_deref(),
            Some("2026-11-29T10:00:00+00:00")
        );
    }
}

/// The view of redacted files, given the view of the real ones, is the same view.
fn check_redacted(config: &str, credentials: &str) {
    let cache = BTreeMap::new();
    let real = view(config, credentials);
    let (config_r, credentials_r) = (
        redact_secrets(config.as_bytes()),
        redact_secrets(credentials.as_bytes()),
    );
    let detail = Detail {
        previous: Some(&real),
        ..Detail::FULL
    };
    let again = parse_view_with(
        Inputs {
            config: &config_r,
            credentials: &credentials_r,
            sso_cache: &cache,
        },
        detail,
    )
    .expect("a redacted file parses");
    assert_eq!(again, real, "{config:?} {credentials:?}");
    for (name, p) in &real.profiles {
        assert_eq!(again.profiles[name].credentials, p.credentials, "{name}");
        if let Some(c) = &p.credentials {
            let kept = [&config_r, &credentials_r].map(|b| String::from_utf8_lossy(b).into_owned());
            for secret in [Some(&c.secret_access_key), c.session_token.as_ref()]
                .into_iter()
                .flatten()
            {
                for part in secret.split('\n') {
                    assert!(
                        !kept.iter().any(|k| k.contains(part)),
                        "{part:?} kept in {kept:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn redacted_files_keep_the_view_but_not_the_secrets() {
    check_redacted("", &format!("[a]\n{KEYS}aws_session_token = tok-one\n"));
    check_redacted(
        "[profile a]\nregion = eu-west-1\naws_session_token = in-config-zz\n",
        "[a]\r\nAWS_Access_Key_Id = AKIAIOSFODNN7EXAMPLE\r\naws_secret_access_key = sec-two # c\r\n\
         aws_security_token = legacy-tok\r\n# Expires: 2030-01-01T00:00:00Z\r\n",
    );
    // Continuation lines, an empty value continued, empty values, a last line without
    // a line end, duplicates.
    check_redacted(
        "",
        "[a]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s3c\n  r3t-part\n\
         aws_session_token =\n# Expires: 2030-01-01T00:00:00Z\n\n  x-tok = y-part\n\
         region = r\n[b]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key =\n\
         [a]\naws_secret_access_key = later-sec\naws_session_token = tail-tok\r",
    );
    assert!(
        String::from_utf8_lossy(&redact_secrets(b"[a]\naws_session_token = t\n"))
            .contains("aws_session_token")
    );
}

#[test]
fn a_broken_file_falls_back_and_the_other_still_counts() {
    let cache = BTreeMap::new();
    let inputs = Inputs {
        config: b"[profile a]\nregion = new\n",
        credentials: b"[broken\n",
        sso_cache: &cache,
    };
    let good = b"[a]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n";
    let (view, errors) = parse_view_or(inputs, [b"", good], Detail::FULL);
    let view = view.expect("view");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].file, errors[0].line),
        (FileKind::Credentials, Some(1))
    );
    let a = view.get("a").expect("a");
    assert_eq!(a.region.as_deref(), Some("new"));
    assert!(a.credentials.is_some());
    // Fallbacks that are broken too give no view.
    let (view, errors) = parse_view_or(inputs, [b"", b"[also broken\n"], Detail::FULL);
    assert!(view.is_none());
    assert_eq!(errors.len(), 1);
}

#[test]
fn expiry_keys_comments_and_sso_cache() {
    let v = view(
        "",
        &format!(
            "[a]\n{KEYS}aws_session_token = t\nx_security_token_expires = 2026-11-29T10:00:00Z\n\
             [b]\n# Expires: 2026-11-29T11:00:00Z\n{KEYS}aws_session_token = t\n\
             [c]\n{KEYS}aws_session_token = t\naws_session_expiration = 2026-11-29T12:00:00+0000\n\
             [d]\n{KEYS}\n[e]\n{KEYS}aws_session_token = t\n"
        ),
    );
    let label = |n: &str| {
        v.get(n)
            .and_then(|p| p.expiry.as_ref())
            .map(|e| (e.when().map(|a| a.to_rfc3339()), e.source().label()))
    };
    assert_eq!(
        label("a"),
        Some((
            Some("2026-11-29T10:00:00+00:00".into()),
            "x_security_token_expires".into()
        ))
    );
    assert_eq!(
        label("b"),
        Some((Some("2026-11-29T11:00:00+00:00".into()), "comment".into()))
    );
    assert_eq!(
        label("c"),
        Some((
            Some("2026-11-29T12:00:00+00:00".into()),
            "aws_session_expiration".into()
        ))
    );
    assert_eq!(label("d"), Some((None, "never".into())));
    assert_eq!(label("e"), None);

    // An assumed role inherits the expiry of its source chain; cycles end the walk.
    let v = view(
        "[profile r1]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = r2\n\
         [profile r2]\nrole_arn = arn:aws:iam::1:role/y\nsource_profile = a\n\
         [profile c1]\nrole_arn = arn\nsource_profile = c2\n\
         [profile c2]\nrole_arn = arn\nsource_profile = c1\n",
        &format!(
            "[a]\n{KEYS}aws_session_token = t\nx_security_token_expires = 2026-11-29T10:00:00Z\n"
        ),
    );
    let r1 = v
        .get("r1")
        .and_then(|p| p.expiry.clone())
        .expect("r1 expiry");
    assert_eq!(r1.source().label(), "source_profile:a");
    assert!(v.get("c1").and_then(|p| p.expiry.clone()).is_none());

    let mut cache = BTreeMap::new();
    let name = format!("{}.json", hex::encode(sha1::Sha1::digest(b"corp")));
    cache.insert(
        name,
        br#"{"accessToken":"tok","expiresAt":"2021-12-07T01:19:12UTC"}"#.to_vec(),
    );
    cache.insert("junk.json".into(), b"not json".to_vec());
    let config = "[profile s]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n\
                  [sso-session corp]\nsso_start_url = https://x\n";
    let v = parse_view(Inputs {
        config: config.as_bytes(),
        credentials: b"",
        sso_cache: &cache,
    })
    .expect("parses");
    let s = v.get("s").expect("s");
    assert!(s.fingerprint.is_some());
    let e = s.expiry.as_ref().expect("expiry");
    assert_eq!(*e.source(), ExpirySource::SsoCache);
    assert_eq!(
        e.when().map(|a| a.to_rfc3339()).as_deref(),
        Some("2021-12-07T01:19:12+00:00")
    );
    assert_eq!(v.sso_sessions["corp"]["sso_start_url"], "https://x");
    // The portal comes from the sso-session.
    assert_eq!(s.sso_start_url.as_deref(), Some("https://x"));

    // Legacy SSO profiles: the cache file is named by the start URL's hash.
    let mut cache = BTreeMap::new();
    let name = format!(
        "{}.json",
        hex::encode(sha1::Sha1::digest(b"https://legacy"))
    );
    cache.insert(
        name,
        br#"{"accessToken":"tok","expiresAt":"2026-11-29T10:00:00Z","region":"x"}"#.to_vec(),
    );
    let v = parse_view(Inputs {
        config: b"[profile l]\nsso_start_url = https://legacy\nsso_account_id = 1\nsso_role_name = R\nsso_region = us-east-1\n",
        credentials: b"",
        sso_cache: &cache,
    })
    .expect("parses");
    let e = v.get("l").and_then(|p| p.expiry.clone()).expect("expiry");
    // A legacy profile names its portal itself.
    assert_eq!(
        v.get("l").and_then(|p| p.sso_start_url.as_deref()),
        Some("https://legacy")
    );
    assert_eq!(
        e.when().map(|a| a.to_rfc3339()).as_deref(),
        Some("2026-11-29T10:00:00+00:00")
    );
    // No cache file: no expiry, no fingerprint, no error.
    let v = parse_view(Inputs {
        config: b"[profile l]\nsso_start_url = https://other\nsso_account_id = 1\n",
        credentials: b"",
        sso_cache: &cache,
    })
    .expect("parses");
    assert!(
        v.get("l")
            .is_some_and(|p| p.expiry.is_none() && p.fingerprint.is_none())
    );
}

/// A refreshable sign-in is one token for its accounts, however often it is refreshed; a
/// token without a refresh token is fingerprinted by itself.
#[test]
fn refreshes_of_an_sso_sign_in_keep_the_fingerprint() {
    let name = format!("{}.json", hex::encode(sha1::Sha1::digest(b"corp")));
    let config = "[profile s]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = R\n\
                  [sso-session corp]\nsso_start_url = https://x\nsso_region = us-east-1\n";
    let view = |token: &str| {
        let cache = BTreeMap::from([(name.clone(), token.as_bytes().to_vec())]);
        let v = parse_view(Inputs {
            config: config.as_bytes(),
            credentials: b"",
            sso_cache: &cache,
        })
        .expect("parses");
        v.get("s").cloned().expect("s")
    };
    let refreshable = |access: &str, refresh: &str| {
        format!(
            r#"{{"accessToken":"{access}","expiresAt":"2030-01-01T00:00:00Z","clientId":"c","clientSecret":"s","refreshToken":"{refresh}"}}"#
        )
    };
    let a = view(&refreshable("one", "r1"));
    let b = view(&refreshable("two", "r2"));
    assert_eq!(a.fingerprint, b.fingerprint);
    let plain = |access: &str| {
        format!(r#"{{"accessToken":"{access}","expiresAt":"2030-01-01T00:00:00Z"}}"#)
    };
    assert_ne!(
        view(&plain("one")).fingerprint,
        view(&plain("two")).fingerprint
    );
    assert_ne!(view(&plain("one")).fingerprint, a.fingerprint);
    assert_eq!(
        a.sso,
        Some(SsoRole {
            session: "corp".into(),
            account_id: "1".into(),
            role_name: "R".into(),
            own_endpoints: false,
        })
    );
}
