//! Hand-out values: what an account's credentials are handed out as, the refusal codes,
//! which profiles the daemon resolves with the SDK's providers and the cache of what it
//! resolved. The engine decides (`engine/handout.rs`); `session.rs` and the endpoint
//! answer with it.

use chrono::{DateTime, Utc};
use cmdr_core::{AccountState, Credentials, ProfileKind};
use cmdr_proto::ErrorCode;

/// Resolved credentials are resolved again this long before they end, so that nothing is
/// handed out that dies in a client's hands.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// Resolved credentials that do not say when they end are resolved again after this.
const UNDATED_FOR: chrono::Duration = chrono::Duration::minutes(15);

/// Profiles whose credentials are not in the files: the SDK's providers get them.
pub fn resolvable(kind: ProfileKind) -> bool {
    matches!(
        kind,
        ProfileKind::Sso
            | ProfileKind::AssumeRole
            | ProfileKind::CredentialProcess
            | ProfileKind::WebIdentity
    )
}

/// The error code of a refusal in `state` (the endpoint's `code`).
pub fn refusal_code(state: AccountState) -> ErrorCode {
    match state {
        AccountState::Changed => ErrorCode::Changed,
        AccountState::Expired => ErrorCode::Expired,
        AccountState::Missing => ErrorCode::Missing,
        AccountState::Invalid => ErrorCode::Invalid,
        AccountState::Misconfigured => ErrorCode::Misconfigured,
        AccountState::Ok | AccountState::Expiring | AccountState::Unvalidated => {
            ErrorCode::NotAccepted
        }
    }
}

/// What resolved credentials were resolved from: the account's accepted token and its
/// profile's properties. Either changing makes them stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub fingerprint: Option<String>,
    pub digest: u64,
}

pub struct Cached {
    pub key: CacheKey,
    pub credentials: Credentials,
    pub expires_at: Option<DateTime<Utc>>,
    pub resolved_at: DateTime<Utc>,
}

impl Cached {
    pub fn fresh(&self, key: &CacheKey, now: DateTime<Utc>) -> bool {
        let until = self
            .expires_at
            .map_or(self.resolved_at + UNDATED_FOR, |at| at - REFRESH_MARGIN);
        self.key == *key && now < until
    }
}

/// Everything of a hand-out but the keys and their expiry.
#[derive(Debug, Clone)]
pub struct Grant {
    pub account: String,
    pub profile: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub account_id: Option<String>,
    pub expiry_source: String,
}

/// An account's credentials as handed out: the keys (redacted `Debug`, zeroed on drop)
/// and when they end. Never logged.
#[derive(Debug, Clone)]
pub struct HandOut {
    pub grant: Grant,
    pub credentials: Credentials,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What `cmdrctl exec` and `env --serve` get: where the child finds its credentials, and
/// the hand-out it would get there (whose keys the session does not pass on).
#[derive(Debug, Clone)]
pub struct ChildEnv {
    pub paths: ChildPaths,
    pub handout: HandOut,
}

/// Where a process started for an account finds its credentials (`cmdrctl exec`, `env --serve`).
#[derive(Debug, Clone)]
pub struct ChildPaths {
    pub url: String,
    pub token_file: std::path::PathBuf,
    pub config_file: std::path::PathBuf,
    pub credentials_file: std::path::PathBuf,
    pub boto_config: std::path::PathBuf,
    pub user_config_file: std::path::PathBuf,
    pub user_credentials_file: std::path::PathBuf,
}
