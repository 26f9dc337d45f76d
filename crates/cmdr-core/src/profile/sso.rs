//! The AWS SSO token cache (`~/.aws/sso/cache/<sha1>.json`): which files the two AWS files
//! name, and the token and expiry a profile's session has there.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sha1::Digest as _;

use crate::expiry::parse_timestamp;
use crate::grammar;

/// The SSO cache files the two files name: `<sha1>.json` of every `sso_session` and
/// `sso_start_url` (a profile's own and its `[sso-session]`'s), which the view looks up.
/// The daemon learns these from its one parse of a change
/// ([`ProfileView::sso_cache_files`](super::ProfileView)) and tells its watcher, which
/// reads them first from a cache holding more files than it reads.
pub(super) fn named_files(parsed: &grammar::Parsed<'_>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |key: &str| {
        out.insert(format!(
            "{}.json",
            hex::encode(sha1::Sha1::digest(key.as_bytes()))
        ));
    };
    for section in parsed.profiles.values() {
        for key in ["sso_session", "sso_start_url"] {
            if let Some(value) = section.props.get_non_empty(key) {
                add(value);
            }
        }
    }
    for (name, section) in &parsed.sso_sessions {
        add(name);
        if let Some(url) = section.props.get_non_empty("sso_start_url") {
            add(url);
        }
    }
    out
}

/// A token from the SSO cache. Only the hash of `access_token` leaves this module.
pub(super) struct CachedToken {
    pub(super) access_token: String,
    pub(super) expires_at: Option<DateTime<Utc>>,
    /// A sign-in that can be renewed without a person (a refresh token and the client
    /// registration it belongs to): its refreshes are the same sign-in.
    pub(super) refreshable: bool,
}

/// Why the bytes of an SSO cache file the config names are not a token the SDK can use
/// (`None`: they are), with the line when it is known. Never quotes the file.
pub fn sso_token_problem(bytes: &[u8]) -> Option<(Option<u32>, String)> {
    let json: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(json) => json,
        Err(err) => {
            return Some((
                u32::try_from(err.line()).ok(),
                format!("not valid JSON (column {})", err.column()),
            ));
        }
    };
    match json.get("accessToken") {
        Some(serde_json::Value::String(_)) => None,
        _ => Some((None, "no `accessToken` string: not an SSO token".to_owned())),
    }
}

pub(super) struct SsoCache<'a> {
    files: &'a BTreeMap<String, Vec<u8>>,
}

impl<'a> SsoCache<'a> {
    pub(super) fn new(files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        SsoCache { files }
    }

    /// The cache file is named by the SHA-1 of the session name, or else of the start URL.
    pub(super) fn lookup(
        &self,
        session: Option<&str>,
        start_url: Option<&str>,
    ) -> Option<CachedToken> {
        let key = session.or(start_url)?;
        let file = format!("{}.json", hex::encode(sha1::Sha1::digest(key.as_bytes())));
        let bytes = self.files.get(&file)?;
        let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let access_token = json.get("accessToken")?.as_str()?.to_owned();
        let expires_at = json
            .get("expiresAt")
            .and_then(|v| v.as_str())
            .and_then(parse_timestamp);
        let text = |key: &str| {
            json.get(key)
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty())
        };
        let refreshable = text("refreshToken") && text("clientId") && text("clientSecret");
        Some(CachedToken {
            access_token,
            expires_at,
            refreshable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_problems_name_the_reason_not_the_contents() {
        assert_eq!(
            sso_token_problem(br#"{"accessToken":"x","expiresAt":"2030-01-01T00:00:00Z"}"#),
            None
        );
        let (line, garbage) = sso_token_problem(b"SECRET-GARBAGE").expect("problem");
        assert!(
            garbage.starts_with("not valid JSON") && !garbage.contains("SECRET"),
            "{garbage}"
        );
        assert_eq!(line, Some(1));
        let (line, _) =
            sso_token_problem(b"{\"accessToken\": \"abc\",\n\"expiresAt\": ").expect("problem");
        assert_eq!(line, Some(2));
        assert!(
            sso_token_problem(br#"{"token":"x"}"#)
                .expect("problem")
                .1
                .contains("accessToken")
        );
        assert!(sso_token_problem(br#"{"accessToken":1}"#).is_some());
    }
}
