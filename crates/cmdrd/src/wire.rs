//! Conversions from core values to wire (cmdr-proto) types. Only the daemon knows both.

use chrono::{DateTime, SecondsFormat, Utc};
use cmdr_core::{
    Account, AccountChange, AccountError, Expiry, OnChange, Profile, ProfileChange, Target,
};
use cmdr_proto as wire;
use cmdr_proto::{
    AccountInfo, ErrorCode, ErrorReply, EventKind, FileHealth, FileStatus, ProfileInfo, StateCount,
    TargetSpec,
};

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
            expires_at: expiry.as_ref().and_then(|e| e.when()).map(timestamp),
            expiry_source: expiry.map(|e| e.source().label()),
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
        AccountError::Invalid(_) => ErrorCode::BadRequest,
        AccountError::BadPortal(_) => ErrorCode::BadRequest,
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
    match (spec.target, &spec.endpoint) {
        (wire::TargetKind::Aws, None) => Ok(Target::Aws),
        (wire::TargetKind::Aws, Some(_)) => Err(bad_request("target `aws` takes no endpoint")),
        (wire::TargetKind::Localstack, endpoint) => Ok(Target::Localstack {
            endpoint: endpoint
                .clone()
                .unwrap_or_else(|| cmdr_core::account::DEFAULT_LOCALSTACK.to_owned()),
        }),
        (wire::TargetKind::Endpoint, Some(endpoint)) => Ok(Target::Endpoint {
            endpoint: endpoint.clone(),
        }),
        (wire::TargetKind::Endpoint, None) => Err(bad_request("target `endpoint` needs a URL")),
        (wire::TargetKind::Unknown, _) => Err(bad_request(
            "unknown target (expected aws, localstack or endpoint)",
        )),
    }
}

pub fn on_change_from(policy: wire::OnChange) -> Result<OnChange, ErrorReply> {
    match policy {
        wire::OnChange::Ask => Ok(OnChange::Ask),
        wire::OnChange::Auto => Ok(OnChange::Auto),
        wire::OnChange::Unknown => Err(bad_request(
            "unknown on-change policy (expected ask or auto)",
        )),
    }
}

pub fn on_change(policy: OnChange) -> wire::OnChange {
    match policy {
        OnChange::Ask => wire::OnChange::Ask,
        OnChange::Auto => wire::OnChange::Auto,
    }
}

pub fn target_kind(target: &Target) -> wire::TargetKind {
    match target {
        Target::Aws => wire::TargetKind::Aws,
        Target::Localstack { .. } => wire::TargetKind::Localstack,
        Target::Endpoint { .. } => wire::TargetKind::Endpoint,
    }
}

pub fn state(state: cmdr_core::AccountState) -> wire::AccountState {
    use cmdr_core::AccountState as S;
    match state {
        S::Ok => wire::AccountState::Ok,
        S::Changed => wire::AccountState::Changed,
        S::Expiring => wire::AccountState::Expiring,
        S::Expired => wire::AccountState::Expired,
        S::Missing => wire::AccountState::Missing,
        S::Invalid => wire::AccountState::Invalid,
        S::Misconfigured => wire::AccountState::Misconfigured,
        S::Unvalidated => wire::AccountState::Unvalidated,
    }
}

pub fn profile_kind(kind: cmdr_core::ProfileKind) -> wire::ProfileKind {
    use cmdr_core::ProfileKind as K;
    match kind {
        K::Static => wire::ProfileKind::Static,
        K::Session => wire::ProfileKind::Session,
        K::Sso => wire::ProfileKind::Sso,
        K::AssumeRole => wire::ProfileKind::AssumeRole,
        K::CredentialProcess => wire::ProfileKind::CredentialProcess,
        K::WebIdentity => wire::ProfileKind::WebIdentity,
        K::Other => wire::ProfileKind::Other,
        K::Login => wire::ProfileKind::Login,
    }
}

pub fn file_kind(kind: cmdr_core::FileKind) -> wire::FileKind {
    match kind {
        cmdr_core::FileKind::Config => wire::FileKind::Config,
        cmdr_core::FileKind::Credentials => wire::FileKind::Credentials,
    }
}

/// `expiry_source` in `--json`: the source's label, `unknown` without an expiry.
pub fn expiry_source(expiry: Option<&Expiry>) -> String {
    expiry.map_or_else(|| "unknown".to_owned(), |e| e.source().label())
}

/// One profile for `profiles --json`, with its expiry as the daemon knows it.
pub fn profile_info(profile: &Profile, expiry: Option<Expiry>) -> ProfileInfo {
    ProfileInfo {
        name: profile.name.clone(),
        kind: profile_kind(profile.kind),
        region: profile.region.clone(),
        sources: profile
            .sources
            .iter()
            .map(|s| s.label().to_owned())
            .collect(),
        access_key_id: profile.masked_access_key_id.clone(),
        fingerprint: profile.fingerprint.clone(),
        expires_at: expiry.as_ref().and_then(|e| e.when()).map(timestamp),
        expiry_source: Some(expiry_source(expiry.as_ref())),
    }
}

/// One account for `accounts list --json`, in `state`, bound to `profile` (`None` while
/// it is missing). Expiry and source are the accepted token's: that is what tools use.
pub fn account_info(
    account: &Account,
    profile: Option<&Profile>,
    state: cmdr_core::AccountState,
) -> AccountInfo {
    let expiry = account.accepted.expiry.as_ref();
    AccountInfo {
        name: account.name.clone(),
        profile: account.profile.clone(),
        region: account.region.clone(),
        target: target_kind(&account.target),
        endpoint: account.target.endpoint().map(str::to_owned),
        on_change: on_change(account.on_change),
        state: self::state(state),
        fingerprint: profile.and_then(|p| p.fingerprint.clone()),
        accepted_fingerprint: account.accepted.fingerprint.clone(),
        accepted_at: account.accepted.at.map(timestamp),
        expires_at: expiry.and_then(|e| e.when()).map(timestamp),
        expiry_source: Some(expiry_source(expiry)),
        account_id: account.account_id.clone(),
        portal: account.portal(profile).map(str::to_owned),
        profile_kind: profile.map(|p| profile_kind(p.kind)),
    }
}

/// A watched file for `status`: `error` is the line (if known) and message of why it
/// cannot be used.
pub fn file_status(
    kind: wire::FileKind,
    path: &std::path::Path,
    exists: bool,
    error: Option<&crate::watch::FileProblem>,
) -> FileStatus {
    FileStatus {
        kind,
        path: path.display().to_string(),
        exists,
        health: if error.is_some() {
            FileHealth::Error
        } else {
            FileHealth::Ok
        },
        error_line: error.and_then(|e| e.0),
        error: error.map(|e| e.1.clone()),
    }
}

/// How many accounts are in each state, in the order of the states' names.
pub fn state_counts(states: impl IntoIterator<Item = cmdr_core::AccountState>) -> Vec<StateCount> {
    let mut counts: std::collections::BTreeMap<&'static str, (wire::AccountState, u32)> =
        std::collections::BTreeMap::new();
    for state in states {
        let state = self::state(state);
        counts.entry(state.label()).or_insert((state, 0)).1 += 1;
    }
    counts
        .into_values()
        .map(|(state, count)| StateCount { state, count })
        .collect()
}
