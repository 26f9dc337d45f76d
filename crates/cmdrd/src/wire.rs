//! Conversions from core values to wire (cmdr-proto) types. Only the daemon knows both.

use chrono::{DateTime, SecondsFormat, Utc};
use cmdr_core::{AccountChange, AccountError, OnChange, ProfileChange, Target};
use cmdr_proto::{ErrorCode, ErrorReply, EventKind, TargetSpec};

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn profile_event(change: &ProfileChange) -> EventKind {
    match change {
        ProfileChange::Added { profile } => EventKind::ProfileAdded {
            profile: profile.clone(),
        },
        ProfileChange::Removed { profile } => EventKind::ProfileRemoved {
            profile: profile.clone(),
        },
        ProfileChange::Changed { profile, .. } => EventKind::ProfileChanged {
            profile: profile.clone(),
        },
    }
}

pub fn account_event(change: AccountChange) -> EventKind {
    match change {
        AccountChange::Added { account, profile } => EventKind::AccountAdded { account, profile },
        AccountChange::Removed { account, profile } => {
            EventKind::AccountRemoved { account, profile }
        }
        AccountChange::Updated { account, profile } => {
            EventKind::AccountUpdated { account, profile }
        }
        AccountChange::TokenChanged {
            account,
            profile,
            old_fingerprint,
            new_fingerprint,
            expiry,
        } => EventKind::TokenChanged {
            account,
            profile,
            old_fingerprint,
            new_fingerprint,
            expires_at: expiry.as_ref().and_then(|e| e.at).map(timestamp),
            expiry_source: expiry.map(|e| e.source.label()),
        },
        AccountChange::TokenAccepted { account, profile } => {
            EventKind::TokenAccepted { account, profile }
        }
    }
}

pub fn error_reply(err: &AccountError) -> ErrorReply {
    let code = match err {
        AccountError::NotFound(_) => ErrorCode::NotFound,
        AccountError::Exists(_) => ErrorCode::Exists,
        AccountError::NoProfile(_) => ErrorCode::NoProfile,
        AccountError::BadName(_) | AccountError::BadEndpoint(_) | AccountError::BadPortal(_) => {
            ErrorCode::BadRequest
        }
    };
    ErrorReply {
        code,
        message: err.to_string(),
    }
}

pub fn bad_request(message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::BadRequest,
        message: message.into(),
    }
}

pub fn target_from_spec(spec: &TargetSpec) -> Result<Target, ErrorReply> {
    match (spec.target.as_str(), &spec.endpoint) {
        ("aws", None) => Ok(Target::Aws),
        ("aws", Some(_)) => Err(bad_request("target `aws` takes no endpoint")),
        ("localstack", endpoint) => Ok(Target::Localstack {
            endpoint: endpoint
                .clone()
                .unwrap_or_else(|| cmdr_core::account::DEFAULT_LOCALSTACK.to_owned()),
        }),
        ("endpoint", Some(endpoint)) => Ok(Target::Endpoint {
            endpoint: endpoint.clone(),
        }),
        ("endpoint", None) => Err(bad_request("target `endpoint` needs a URL")),
        (other, _) => Err(bad_request(format!(
            "unknown target `{other}` (expected aws, localstack or endpoint)"
        ))),
    }
}

pub fn on_change_from(text: &str) -> Result<OnChange, ErrorReply> {
    match text {
        "ask" => Ok(OnChange::Ask),
        "auto" => Ok(OnChange::Auto),
        other => Err(bad_request(format!(
            "unknown on-change policy `{other}` (expected ask or auto)"
        ))),
    }
}
