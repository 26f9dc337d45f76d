//! The bridge to the AWS SDK's own profile parser (`aws_config::profile`), so cmdr sees
//! exactly what the SDKs see. Contents are handed over in memory: the parser never touches
//! the file system and its future never waits, so it is polled to completion here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_types::os_shim_internal::{Env, Fs};

/// Parses the given contents with the SDK. `Err` carries the SDK's message (with the line).
fn load(config: Option<&str>, credentials: Option<&str>) -> Result<ProfileSet, String> {
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
    let future = aws_config::profile::load(&fs, &env, &files, None);
    match poll_once(future) {
        Some(Ok(set)) => Ok(set),
        Some(Err(err)) => Err(crate::innermost_message(&err)),
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

/// Where cmdr's own reading of the files ([`crate::grammar`]) and the SDK's differ, if
/// they do: which sections exist, every value of every key, and for a broken file the line
/// and the message. `None` means they agree. `doctor`, the tests and the fuzz target ask.
pub fn disagreement(config: &str, credentials: &str) -> Option<String> {
    let ours = crate::grammar::parse(config, credentials);
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
    ours: &crate::grammar::Props<'_>,
    theirs: impl Fn(&str) -> Option<&'s str>,
) -> Option<String> {
    keys.iter().find_map(|key| {
        let (a, b) = (ours.get(key), theirs(key));
        (a != b).then(|| format!("key {key:?}: {}", values(key, a, b)))
    })
}

/// Two differing values, unless they are secrets: this text may reach a terminal.
fn values(key: &str, ours: Option<&str>, sdk: Option<&str>) -> String {
    if crate::profile::SECRET_KEYS.contains(&key) {
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

    /// The oracle can fail: a differing value is found and named, a secret never shown.
    #[test]
    fn a_difference_is_found_and_secrets_stay_hidden() {
        let parsed =
            crate::grammar::parse("[profile a]\nk = v\naws_session_token = s3cr3t-value\n", "")
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
}
