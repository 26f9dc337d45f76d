//! The SSO token cache exactly as the AWS CLI v2 writes it:
//! `~/.aws/sso/cache/<sha1 hex of the sso-session name>.json`, mode 0600, written atomically.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};

/// The fields of the CLI v2's cache file. Secrets: `access_token`, `client_secret`,
/// `refresh_token` (never printed; `Debug` redacts them).
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CachedToken {
    pub start_url: String,
    pub region: String,
    pub access_token: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("start_url", &self.start_url)
            .field("region", &self.region)
            .field("expires_at", &self.expires_at)
            .field("client_id", &self.client_id)
            .field("registration_expires_at", &self.registration_expires_at)
            .finish_non_exhaustive()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the CLI writes `expiresAt`.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The cache file of an sso-session.
pub fn path(cache_dir: &Path, session: &str) -> PathBuf {
    let digest = Sha1::digest(session.as_bytes());
    cache_dir.join(format!("{}.json", hex::encode(digest)))
}

/// The cached token, if a readable one is there.
pub fn read(path: &Path) -> Option<CachedToken> {
    // Bounded, and never blocked by a FIFO or device planted in the cache.
    let bytes = cmdr_config::userfile::read_bounded(path, 1 << 20).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn write(path: &Path, token: &CachedToken) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(token).map_err(std::io::Error::other)?;
    cmdr_config::write_atomic(path, &bytes, 0o600)
}

impl CachedToken {
    /// The client registration in this file, if it is good for another hour.
    pub fn registration(&self, now: DateTime<Utc>) -> Option<(String, String)> {
        let until = parse_timestamp(self.registration_expires_at.as_deref()?)?;
        (until > now + chrono::Duration::hours(1))
            .then(|| Some((self.client_id.clone()?, self.client_secret.clone()?)))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_is_the_sha1_of_the_session_name() {
        // sha1("my-sso") as botocore computes it for `[sso-session my-sso]`.
        let p = path(Path::new("/c"), "my-sso");
        let want = hex::encode(Sha1::digest(b"my-sso"));
        assert_eq!(p, Path::new("/c").join(format!("{want}.json")));
        assert_eq!(want.len(), 40);
    }

    #[test]
    fn timestamps_are_second_precision_zulu() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T15:10:00.123Z")
            .unwrap_or_default()
            .with_timezone(&Utc);
        assert_eq!(timestamp(at), "2026-12-05T15:10:00Z");
    }
}
