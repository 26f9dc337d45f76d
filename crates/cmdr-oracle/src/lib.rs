//! cmdr-oracle: the bridge to the AWS SDK's own profile parser (aws-runtime's
//! `env_config`, which `aws_config::profile::load` runs), kept as the authority cmdr-core's
//! grammar is checked against, so cmdr sees exactly what the SDKs see. Contents are handed
//! over in memory: the parser never touches the file system and its future never waits, so
//! it is polled to completion here.
//!
//! A crate of its own so that cmdr-core stays free of the SDK: `cmdrctl doctor`, the tests,
//! the bench and the fuzz target link it; the daemon does not. It calls aws-runtime
//! directly, not aws-config, whose dependencies (aws-sdk-sts and the HTTP stack) the parser
//! does not need.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_runtime::env_config::error::EnvConfigFileLoadError;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_runtime::env_config::section::EnvConfigSections;
use aws_runtime::env_config::source;
use aws_types::os_shim_internal::{Env, Fs};
use cmdr_core::grammar;

/// Parses the given contents with the SDK: what `aws_config::profile::load` does (load the
/// sources, then parse them; no profile override), on in-memory contents. `Err` carries the
/// SDK's message (with the line).
pub fn load(config: Option<&str>, credentials: Option<&str>) -> Result<EnvConfigSections, String> {
    let mut builder = EnvConfigFiles::builder();
    if let Some(config) = config {
        builder = builder.with_contents(EnvConfigFileKind::Config, config);
    }
    if let Some(credentials) = credentials {
        builder = builder.with_contents(EnvConfigFileKind::Credentials, credentials);
    }
    let files = builder.build();
    // An empty fake file system and environment: nothing can leak in from the real ones.
    let fs = Fs::from_map(HashMap::<String, Vec<u8>>::new());
    let env = Env::from_slice(&[]);
    let future = async {
        let source = source::load(&env, &fs, &files).await?;
        EnvConfigSections::parse(source).map_err(EnvConfigFileLoadError::from)
    };
    match poll_once(future) {
        Some(Ok(set)) => Ok(set),
        Some(Err(err)) => Err(cmdr_core::innermost_message(&err)),
        None => Err("the AWS profile parser did not complete synchronously".to_owned()),
    }
}

fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Where cmdr's own reading of the files ([`cmdr_core::grammar`]) and the SDK's differ, if
/// they do: which sections exist, every value of every key, and for a broken file the line
/// and the message. `None` means they agree. `doctor`, the tests and the fuzz target ask.
pub fn disagreement(config: &str, credentials: &str) -> Option<String> {
    let ours = grammar::parse(config, credentials);
    let sdk = load(Some(config), Some(credentials));
    match (ours, sdk) {
        (Err(ours), Err(message)) => {
            let theirs = error_parts(&message);
            let first = ours.first().map(|e| (e.line, e.message.clone()));
            (first.as_ref() != Some(&theirs))
                .then(|| format!("both fail, cmdr with {first:?}, the SDK with {theirs:?}"))
        }
        (Ok(_), Err(message)) => Some(format!("the SDK fails ({message}), cmdr parses")),
        (Err(ours), Ok(_)) => Some(format!("cmdr fails ({ours:?}), the SDK parses")),
        (Ok(ours), Ok(set)) => {
            let keys = candidate_keys(config, credentials);
            let our_names: Vec<&str> = ours.profiles.keys().copied().collect();
            let mut sdk_names: Vec<&str> = set.profiles().collect();
            sdk_names.sort_unstable();
            if our_names != sdk_names {
                return Some(format!("profiles: cmdr {our_names:?}, SDK {sdk_names:?}"));
            }
            let our_sessions: Vec<&str> = ours.sso_sessions.keys().copied().collect();
            let mut sdk_sessions: Vec<&str> = set.sso_sessions().collect();
            sdk_sessions.sort_unstable();
            if our_sessions != sdk_sessions {
                return Some(format!(
                    "sso sessions: cmdr {our_sessions:?}, SDK {sdk_sessions:?}"
                ));
            }
            for (name, section) in &ours.profiles {
                let theirs = set.get_profile(name);
                let get = |key: &str| theirs.and_then(|p| p.get(key));
                if let Some(why) = differing_key(&keys, &section.props, get) {
                    return Some(format!("profile {name:?}, {why}"));
                }
            }
            for (name, session) in &ours.sso_sessions {
                let theirs = set.sso_session(name);
                let get = |key: &str| theirs.and_then(|s| s.get(key));
                if let Some(why) = differing_key(&keys, &session.props, get) {
                    return Some(format!("sso-session {name:?}, {why}"));
                }
            }
            None
        }
    }
}

/// The first of `keys` whose value differs between cmdr's section and the SDK's.
fn differing_key<'s>(
    keys: &std::collections::BTreeSet<String>,
    ours: &grammar::Props<'_>,
    theirs: impl Fn(&str) -> Option<&'s str>,
) -> Option<String> {
    keys.iter().find_map(|key| {
        let (a, b) = (ours.get(key), theirs(key));
        (a != b).then(|| format!("key {key:?}: {}", values(key, a, b)))
    })
}

/// Two differing values, unless they are secrets: this text may reach a terminal.
fn values(key: &str, ours: Option<&str>, sdk: Option<&str>) -> String {
    if cmdr_core::profile::SECRET_KEYS.contains(&key) {
        let state = |v: Option<&str>| if v.is_some() { "set" } else { "not set" };
        format!(
            "cmdr {}, the SDK {} (values not shown)",
            state(ours),
            state(sdk)
        )
    } else {
        format!("cmdr {ours:?}, the SDK {sdk:?}")
    }
}

/// Every string that could be a key anywhere in the files (a superset of the SDK's keys,
/// which it does not list).
fn candidate_keys(config: &str, credentials: &str) -> std::collections::BTreeSet<String> {
    config
        .lines()
        .chain(credentials.lines())
        .filter_map(|line| line.split_once('='))
        .map(|(key, _)| key.trim().to_ascii_lowercase())
        .collect()
}

/// The SDK says `error parsing <path> on line N:\n  <message>`; keep N and the message.
fn error_parts(text: &str) -> (Option<u32>, String) {
    let line = text.split_once(" on line ").and_then(|(_, rest)| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    let message = match text.split_once(":\n") {
        Some((_, message)) => message.trim().to_owned(),
        None => text.trim().to_owned(),
    };
    (line, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdr_core::FileKind;
    use cmdr_core::grammar::{Props, parse};

    /// The oracle can fail: a differing value is found and named, a secret never shown.
    #[test]
    fn a_difference_is_found_and_secrets_stay_hidden() {
        let parsed = grammar::parse("[profile a]\nk = v\naws_session_token = s3cr3t-value\n", "")
            .expect("parses");
        let props = &parsed.profiles["a"].props;
        let keys: std::collections::BTreeSet<String> =
            ["k", "aws_session_token"].map(str::to_owned).into();
        let same = |key: &str| props.get(key);
        assert_eq!(differing_key(&keys, props, same), None);

        let other_value = |key: &str| {
            if key == "k" {
                Some("w")
            } else {
                props.get(key)
            }
        };
        let why = differing_key(&keys, props, other_value).expect("differs");
        assert!(why.contains("\"k\"") && why.contains("\"w\""), "{why}");

        let no_token = |key: &str| if key == "k" { props.get(key) } else { None };
        let why = differing_key(&keys, props, no_token).expect("differs");
        assert!(
            why.contains("values not shown") && !why.contains("s3cr3t"),
            "{why}"
        );
    }

    /// cmdr and the SDK read `config` and `credentials` alike.
    fn check(config: &str, credentials: &str) {
        if let Some(why) = disagreement(config, credentials) {
            panic!("{why}\nconfig: {config:?}\ncredentials: {credentials:?}");
        }
    }

    #[test]
    fn the_sdk_test_suite_passes_and_agrees() {
        let suite: serde_json::Value = serde_json::from_str(include_str!(
            "../../cmdr-core/testdata/profile-parser-tests.json"
        ))
        .expect("suite");
        let tests = suite["tests"].as_array().expect("tests");
        assert!(tests.len() >= 60, "{}", tests.len());
        for test in tests {
            let name = test["name"].as_str().unwrap_or_default();
            let config = test["input"]["configFile"].as_str().unwrap_or_default();
            let credentials = test["input"]["credentialsFile"]
                .as_str()
                .unwrap_or_default();
            check(config, credentials);
            let output = &test["output"];
            match parse(config, credentials) {
                Err(errors) => {
                    let wanted = output["errorContaining"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: unexpected error {errors:?}"));
                    assert!(
                        errors[0].message.contains(wanted),
                        "{name}: {errors:?} lacks {wanted:?}"
                    );
                }
                Ok(parsed) => {
                    let plain = |props: &Props<'_>| {
                        props
                            .iter()
                            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                            .collect::<serde_json::Map<_, _>>()
                    };
                    let profiles: serde_json::Map<_, _> = parsed
                        .profiles
                        .iter()
                        .map(|(n, s)| ((*n).to_owned(), plain(&s.props).into()))
                        .collect();
                    assert_eq!(
                        serde_json::Value::from(profiles),
                        output["config"]["profiles"],
                        "{name}"
                    );
                    if let Some(expected) = output["config"].get("sso_sessions") {
                        let sessions: serde_json::Map<_, _> = parsed
                            .sso_sessions
                            .iter()
                            .map(|(n, s)| ((*n).to_owned(), plain(&s.props).into()))
                            .collect();
                        assert_eq!(&serde_json::Value::from(sessions), expected, "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_the_sdk_on_odd_files() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("[default]\nregion = a\n[profile default]\nregion = b\n", ""),
            ("[profile default]\nregion = b\n[default]\noutput = c\n", ""),
            ("[ default ]\nregion = a\n", "[ default ]\nregion = z\n"),
            (
                "[profile a]\nregion = x\n[profile a]\nregion = y\noutput = j\n",
                "",
            ),
            ("[profile a]\nRegion = X\nREGION = Y\n", "[a]\nregion = z\n"),
            (
                "[profile a]\ns3 =\n  max_concurrent_requests = 10\n  addressing = path\n",
                "",
            ),
            ("[profile a]\ns3 =\n  no equals\n", ""),
            ("[profile a]\ns3 =\n  = v\n", ""),
            ("[profile a]\nk = v\n  more\n\tand more\n", ""),
            ("[profile a]\n  continuation first\n", ""),
            ("  continuation before any section\n", ""),
            ("k = v\n", ""),
            ("[profile a]\nno equals\n", ""),
            ("[profile a]\n= no name\n", ""),
            ("[profile a\n", ""),
            ("[profile a]]\n", ""),
            (
                "[profile a] # comment\nk = v # comment\nk2 = v#not\nk3 = v ;c\n",
                "",
            ),
            ("[profile a#b]\n", ""),
            ("[profile a;b]\n", ""),
            ("[profile a]\nk = v\u{a0}#after a no-break space\n", ""),
            ("[profile a]\nk = \u{2003};em space\n", ""),
            (
                "[profile a b]\nk = v\n[profile  c]\nk = v\n[profile\tt]\nk=v\n",
                "",
            ),
            (
                "[profile ]\n[profile]\n[]\n[ ]\n",
                "[]\nk = v\n[ ]\nj = w\n",
            ),
            (
                "[notprefixed]\nk = v\n[profile ok]\n",
                "[profile x]\nk = v\n[sso-session s]\nk=v\n",
            ),
            (
                "[profile a]\nbad key = v\nk/e.y@1:2+% = v\nkéy = v\n",
                "[a]\nbad key = 1\n",
            ),
            (
                "[sso-session s]\nsso_start_url = https://x\n[sso-session bad name]\n",
                "",
            ),
            (
                "[services s]\ns3 =\n  endpoint_url = http://x\n[profile a]\nservices = s\n",
                "",
            ),
            (
                "[profile a]\r\nk = v\r\nj = w\r\r\n",
                "[a]\r\naws_access_key_id = A\r\n",
            ),
            ("\u{feff}[profile a]\nk = v\n", ""),
            ("[profile a]\nk = v\n\n\n# c\n; c\n   \n\t\nj = w\n", ""),
            ("#c\n;c\n[profile a]\n", ""),
            (" [profile a]\n", ""),
            ("[profile a]\n [profile b]\n", ""),
            ("[profile a]\nk = =v= \n", ""),
            ("[profile a]\nk=\n\n  sub = 1\n", ""),
            ("[profile a]\nk=v\n[profile b]\n  cont\n", ""),
            ("[profile a]\nk =\n  x = 1\nk = 2\n  y\n", ""),
            ("[profile Éa]\nk = v\n", "[Éa]\nk = v\n"),
        ];
        for (config, credentials) in cases {
            check(config, credentials);
            check(credentials, config);
        }
    }

    #[test]
    fn errors_carry_the_sdks_wording() {
        let cases: &[(&str, u32, &str)] = &[
            ("k = v\n", 1, "Expected a profile definition"),
            (
                "[profile a]\n\n[b\n",
                3,
                "Profile definition must end with ']'",
            ),
            (
                "[profile a]\nnope\n",
                2,
                "Expected an '=' sign defining a property",
            ),
            ("k = v\n[profile a]\n", 1, "Expected a profile definition"),
            (
                "[profile a]\n = v\n",
                2,
                "Expected a property definition, found continuation",
            ),
            ("[profile a]\n=v\n", 2, "Property did not have a name"),
            (
                "[profile a]\n  x\n",
                2,
                "Expected a property definition, found continuation",
            ),
            (
                "[profile a]\nk =\n  x\n",
                3,
                "Expected an '=' sign defining a sub-property",
            ),
        ];
        for (text, line, message) in cases {
            let errors = parse(text, "").expect_err(text);
            assert_eq!(
                (errors[0].file, errors[0].line, errors[0].message.as_str()),
                (FileKind::Config, Some(*line), *message),
                "{text:?}"
            );
            check(text, "");
        }
        let errors = parse("[broken\n", "[also broken\n").expect_err("both");
        assert_eq!(errors.len(), 2);
    }
}
