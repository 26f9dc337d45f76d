//! The state file's own types: what `state.json` and `state.journal` hold, field by field.
//! cmdr-core's `Account` is the engine's value and may change shape freely; these change
//! only together with `STATE_VERSION` (or by a field that defaults when absent), and the
//! conversions both ways are the one place that knows both.

use chrono::{DateTime, Utc};
use cmdr_core::expiry::{Expiry, ExpirySource};
use cmdr_core::input;
use cmdr_core::text::escape_controls;
use cmdr_core::{AcceptedToken, Account, OnChange, PendingIdentity, Seen, SeenTokens, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One account as stored. Never a secret: the accepted keys are not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAccount {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: StoredTarget,
    pub on_change: StoredOnChange,
    pub accepted_fingerprint: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    /// Absent in files written before the accepted expiry was kept.
    #[serde(default)]
    pub accepted_expiry: Option<StoredExpiry>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub invalid: Option<String>,
    #[serde(default)]
    pub misconfigured: Option<String>,
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default)]
    pub unreachable: bool,
    #[serde(default)]
    pub pending_identity: Option<StoredPendingIdentity>,
    #[serde(default)]
    pub portal: Option<String>,
    /// Left out while false, so files read and write as before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identity_accepted: bool,
    /// Left out while unset, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_renew: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredTarget {
    Aws,
    Localstack { endpoint: String },
    Endpoint { endpoint: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredOnChange {
    Ask,
    Auto,
}

/// `{"at": RFC 3339 or null, "source": label}`; `at` is null exactly for `never`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredExpiry {
    pub at: Option<DateTime<Utc>>,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPendingIdentity {
    pub fingerprint: Option<String>,
    pub account_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeen {
    pub fingerprint: String,
    pub first_seen: DateTime<Utc>,
}

/// Why a stored record is not a valid value: the file is treated as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("account `{account}`: unknown expiry source")]
    UnknownSource { account: String },
    #[error("account `{account}`: an expiry has a time unless its source is `never`")]
    ExpiryTime { account: String },
}

/// The rules `accounts add` applies, for a record that may have been edited by hand or
/// written by an older cmdrd with looser rules: a region that is not one is dropped (it
/// would be handed to tools), a name or endpoint that breaks the rules is kept, so that the
/// account can still be seen, edited and removed, with a warning saying what to fix.
fn checked(mut stored: StoredAccount) -> StoredAccount {
    let name = escape_controls(&stored.name).into_owned();
    if let Some(Err(err)) = stored.region.as_deref().map(input::check_region) {
        tracing::warn!(account = %name, error = %err, "the state file holds a region that is not one; dropping it");
        stored.region = None;
    }
    let endpoint = match &stored.target {
        StoredTarget::Aws => None,
        StoredTarget::Localstack { endpoint } | StoredTarget::Endpoint { endpoint } => {
            Some(endpoint.as_str())
        }
    };
    let broken = input::check_name(&stored.name)
        .and_then(|()| endpoint.map_or(Ok(()), input::check_endpoint));
    if let Err(err) = broken {
        tracing::warn!(account = %name, error = %err, "the state file holds an account `accounts add` would refuse; fix it with `cmdrctl accounts edit` or remove it");
    }
    stored
}

impl From<&Account> for StoredAccount {
    fn from(account: &Account) -> StoredAccount {
        StoredAccount {
            name: account.name.clone(),
            profile: account.profile.clone(),
            region: account.region.clone(),
            target: match &account.target {
                Target::Aws => StoredTarget::Aws,
                Target::Localstack { endpoint } => StoredTarget::Localstack {
                    endpoint: endpoint.clone(),
                },
                Target::Endpoint { endpoint } => StoredTarget::Endpoint {
                    endpoint: endpoint.clone(),
                },
            },
            on_change: match account.on_change {
                OnChange::Ask => StoredOnChange::Ask,
                OnChange::Auto => StoredOnChange::Auto,
            },
            accepted_fingerprint: account.accepted.fingerprint.clone(),
            accepted_at: account.accepted.at,
            accepted_expiry: account.accepted.expiry.as_ref().map(|e| StoredExpiry {
                at: e.when(),
                source: e.source().label(),
            }),
            account_id: account.account_id.clone(),
            invalid: account.invalid.clone(),
            misconfigured: account.misconfigured.clone(),
            confirmed: account.confirmed,
            unreachable: account.unreachable,
            pending_identity: account
                .pending_identity
                .as_ref()
                .map(|p| StoredPendingIdentity {
                    fingerprint: p.fingerprint.clone(),
                    account_id: p.account_id.clone(),
                }),
            portal: account.portal.clone(),
            identity_accepted: account.identity_accepted,
            auto_renew: account.auto_renew,
            sso_role: account.sso_role.clone(),
        }
    }
}

impl TryFrom<StoredAccount> for Account {
    type Error = RecordError;

    fn try_from(stored: StoredAccount) -> Result<Account, RecordError> {
        let stored = checked(stored);
        let expiry = match stored.accepted_expiry {
            None => None,
            Some(e) => Some(expiry(&stored.name, e)?),
        };
        Ok(Account {
            target: match stored.target {
                StoredTarget::Aws => Target::Aws,
                StoredTarget::Localstack { endpoint } => Target::Localstack { endpoint },
                StoredTarget::Endpoint { endpoint } => Target::Endpoint { endpoint },
            },
            on_change: match stored.on_change {
                StoredOnChange::Ask => OnChange::Ask,
                StoredOnChange::Auto => OnChange::Auto,
            },
            accepted: AcceptedToken {
                fingerprint: stored.accepted_fingerprint,
                at: stored.accepted_at,
                expiry,
                credentials: None,
            },
            pending_identity: stored.pending_identity.map(|p| PendingIdentity {
                fingerprint: p.fingerprint,
                account_id: p.account_id,
            }),
            name: stored.name,
            profile: stored.profile,
            region: stored.region,
            account_id: stored.account_id,
            invalid: stored.invalid,
            misconfigured: stored.misconfigured,
            confirmed: stored.confirmed,
            unreachable: stored.unreachable,
            portal: stored.portal,
            identity_accepted: stored.identity_accepted,
            auto_renew: stored.auto_renew,
            sso_role: stored.sso_role,
        })
    }
}

/// The state file cannot smuggle in an expiry without a time, or `never` with one.
fn expiry(account: &str, stored: StoredExpiry) -> Result<Expiry, RecordError> {
    let source =
        ExpirySource::from_label(&stored.source).ok_or_else(|| RecordError::UnknownSource {
            account: account.to_owned(),
        })?;
    match (stored.at, source) {
        (None, ExpirySource::Never) => Ok(Expiry::never()),
        (Some(at), source) if source != ExpirySource::Never => Ok(Expiry::at(at, source)),
        _ => Err(RecordError::ExpiryTime {
            account: account.to_owned(),
        }),
    }
}

pub fn stored_seen(seen: &SeenTokens) -> BTreeMap<String, StoredSeen> {
    seen.iter()
        .map(|(profile, s)| {
            let record = StoredSeen {
                fingerprint: s.fingerprint.clone(),
                first_seen: s.first_seen,
            };
            (profile.clone(), record)
        })
        .collect()
}

pub fn seen_tokens(stored: BTreeMap<String, StoredSeen>) -> SeenTokens {
    stored
        .into_iter()
        .map(|(profile, s)| {
            let seen = Seen {
                fingerprint: s.fingerprint,
                first_seen: s.first_seen,
            };
            (profile, seen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the state file said before it had types of its own, byte for byte: every
    /// field set, `never` and a missing fingerprint, and an account that has nothing.
    const GOLDEN: [&str; 3] = [
        r#"{"name":"acme","profile":"acme-sso","region":"eu-west-1","target":{"kind":"localstack","endpoint":"http://localhost:4566"},"on_change":"auto","accepted_fingerprint":"sha256:abc","accepted_at":"2026-12-02T10:00:00Z","accepted_expiry":{"at":"2026-12-02T22:00:00Z","source":"source_profile:base"},"account_id":"123456789012","invalid":"rejected","misconfigured":"no region","confirmed":true,"unreachable":true,"pending_identity":{"fingerprint":"sha256:def","account_id":"210987654321"},"portal":"https://acme.awsapps.com/start"}"#,
        r#"{"name":"acme","profile":"acme-sso","region":"eu-west-1","target":{"kind":"endpoint","endpoint":"https://sts.example"},"on_change":"auto","accepted_fingerprint":"sha256:abc","accepted_at":"2026-12-02T10:00:00Z","accepted_expiry":{"at":null,"source":"never"},"account_id":"123456789012","invalid":"rejected","misconfigured":"no region","confirmed":true,"unreachable":true,"pending_identity":{"fingerprint":null,"account_id":"1"},"portal":"https://acme.awsapps.com/start"}"#,
        r#"{"name":"acme","profile":"acme-sso","region":null,"target":{"kind":"aws"},"on_change":"ask","accepted_fingerprint":null,"accepted_at":null,"accepted_expiry":null,"account_id":null,"invalid":null,"misconfigured":null,"confirmed":false,"unreachable":false,"pending_identity":null,"portal":null}"#,
    ];

    fn round_trip(json: &str) -> (Account, String) {
        let stored: StoredAccount = serde_json::from_str(json).expect("stored");
        let account = Account::try_from(stored).expect("account");
        let again = serde_json::to_string(&StoredAccount::from(&account)).expect("json");
        (account, again)
    }

    #[test]
    fn the_file_reads_and_writes_as_before() {
        for json in GOLDEN {
            assert_eq!(round_trip(json).1, json);
        }
        let (account, _) = round_trip(GOLDEN[0]);
        assert_eq!(account.on_change, OnChange::Auto);
        assert_eq!(
            account.accepted.expiry.as_ref().map(|e| e.source().clone()),
            Some(ExpirySource::SourceProfile("base".into()))
        );
        assert!(account.accepted.credentials.is_none());
        let seen: BTreeMap<String, StoredSeen> = serde_json::from_str(
            r#"{"p":{"fingerprint":"f","first_seen":"2026-12-02T10:00:00Z"}}"#,
        )
        .expect("seen");
        let back = serde_json::to_string(&stored_seen(&seen_tokens(seen))).expect("json");
        assert_eq!(
            back,
            r#"{"p":{"fingerprint":"f","first_seen":"2026-12-02T10:00:00Z"}}"#
        );
    }

    /// A state file written before the accepted expiry existed still loads.
    #[test]
    fn an_older_record_without_later_fields_loads() {
        let old = r#"{"name":"a","profile":"p","region":null,"target":{"kind":"aws"},
            "on_change":"ask","accepted_fingerprint":"f","accepted_at":null}"#;
        let stored: StoredAccount = serde_json::from_str(old).expect("old state");
        let account = Account::try_from(stored).expect("account");
        assert_eq!(account.accepted.fingerprint.as_deref(), Some("f"));
        assert_eq!(account.accepted.expiry, None);
        assert!(!account.confirmed);
    }

    /// Regression (hostile round): a hand-edited state file could hold a region with
    /// control characters, which would be handed to tools; it is dropped on load. A name or
    /// endpoint `accounts add` refuses (an older cmdrd was looser) is kept, with a warning,
    /// so the account can still be edited or removed.
    #[test]
    fn a_record_with_a_value_accounts_add_refuses() {
        let record = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut json: serde_json::Value = serde_json::from_str(GOLDEN[0]).expect("json");
            edit(&mut json);
            let stored: StoredAccount = serde_json::from_value(json).expect("stored");
            Account::try_from(stored).expect("loads")
        };
        assert_eq!(record(&|_| {}).region.as_deref(), Some("eu-west-1"));
        assert_eq!(record(&|j| j["region"] = "eu\u{1b}[2J".into()).region, None);
        assert_eq!(
            record(&|j| j["name"] = "my account".into()).name,
            "my account"
        );
        let target = serde_json::json!({"kind": "endpoint", "endpoint": "file:///etc/passwd"});
        let kept = record(&|j| j["target"] = target.clone());
        assert_eq!(kept.target.endpoint(), Some("file:///etc/passwd"));
    }

    /// The state file cannot smuggle in an expiry without a time (or `never` with one).
    #[test]
    fn a_stored_expiry_has_a_time_unless_never() {
        let parse = |at: Option<&str>, source: &str| {
            expiry(
                "a",
                StoredExpiry {
                    at: at.map(|t| t.parse().expect("time")),
                    source: source.to_owned(),
                },
            )
        };
        assert_eq!(parse(None, "never"), Ok(Expiry::never()));
        assert!(parse(None, "comment").is_err());
        assert!(parse(Some("2030-01-01T00:00:00Z"), "never").is_err());
        assert!(parse(Some("2030-01-01T00:00:00Z"), "no such source").is_err());
        let at = parse(Some("2030-01-01T00:00:00Z"), "comment").expect("at");
        assert_eq!(at.source(), &ExpirySource::Comment);
        assert!(at.when().is_some());
    }
}
