//! Accounts: user-chosen names bound to a profile, with a region, a target and a policy for
//! token changes; the fingerprint each has accepted; and the state machine that follows
//! from the current view.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::diff::ProfileChange;
use crate::expiry::Expiry;
use crate::profile::{Credentials, Profile, ProfileKind, ProfileView};

/// The LocalStack endpoint used when `--localstack` is given without a URL.
pub const DEFAULT_LOCALSTACK: &str = "http://localhost:4566";

/// Where an account's API calls go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    Aws,
    Localstack { endpoint: String },
    Endpoint { endpoint: String },
}

impl Target {
    pub fn label(&self) -> &'static str {
        match self {
            Target::Aws => "aws",
            Target::Localstack { .. } => "localstack",
            Target::Endpoint { .. } => "endpoint",
        }
    }

    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Target::Aws => None,
            Target::Localstack { endpoint } | Target::Endpoint { endpoint } => Some(endpoint),
        }
    }
}

/// What happens when the token in the file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// Wait for `cmdrctl accept` (the dialog's "Yes").
    #[default]
    Ask,
    /// Accept at once.
    Auto,
}

impl OnChange {
    pub fn label(self) -> &'static str {
        match self {
            OnChange::Ask => "ask",
            OnChange::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Ok,
    Changed,
    Expiring,
    Expired,
    Missing,
    Invalid,
    Misconfigured,
    Unvalidated,
}

impl AccountState {
    pub fn label(self) -> &'static str {
        match self {
            AccountState::Ok => "ok",
            AccountState::Changed => "changed",
            AccountState::Expiring => "expiring",
            AccountState::Expired => "expired",
            AccountState::Missing => "missing",
            AccountState::Invalid => "invalid",
            AccountState::Misconfigured => "misconfigured",
            AccountState::Unvalidated => "unvalidated",
        }
    }
}

/// An account's state with the one reason for it (none for `ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: AccountState,
    pub reason: Option<String>,
}

impl Status {
    fn new(state: AccountState, reason: impl Into<Option<String>>) -> Status {
        Status {
            state,
            reason: reason.into(),
        }
    }

    /// Why the accepted credentials are not handed out in this state, with the command
    /// that fixes it; `None` when they are. `expiring` and `unvalidated` still hand out:
    /// the token works (or may: an unreachable target says nothing against it).
    pub fn refusal(&self, account: &str) -> Option<String> {
        let reason = self.reason.as_deref().unwrap_or("");
        match self.state {
            AccountState::Ok | AccountState::Expiring | AccountState::Unvalidated => None,
            AccountState::Changed | AccountState::Missing | AccountState::Misconfigured => {
                Some(reason.to_owned())
            }
            AccountState::Expired => Some(format!(
                "{reason}: paste a new one (or run `cmdrctl renew {account}`), then run `cmdrctl accept {account}` if it does not switch by itself"
            )),
            AccountState::Invalid => Some(format!(
                "{reason}; after fixing it, run `cmdrctl accept {account}`"
            )),
        }
    }
}

/// The token an account hands to tools, as one value: its fingerprint, its keys (when the
/// files hold them) and *its* expiry. While the file holds a newer, unaccepted token,
/// everything handed out and every expiry shown belong to this one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedToken {
    #[serde(rename = "accepted_fingerprint")]
    pub fingerprint: Option<String>,
    #[serde(rename = "accepted_at")]
    pub at: Option<DateTime<Utc>>,
    /// When this token ends, with its source; `None` when not known.
    #[serde(rename = "accepted_expiry", default)]
    pub expiry: Option<Expiry>,
    /// The keys, accepted in this run: only these are handed out. Never persisted.
    #[serde(skip)]
    pub credentials: Option<Credentials>,
}

/// A bound account. Persisted as is, except the accepted keys (never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: Target,
    pub on_change: OnChange,
    #[serde(flatten)]
    pub accepted: AcceptedToken,
    /// The AWS account id STS reported last, to notice a different account pasted in.
    #[serde(default)]
    pub account_id: Option<String>,
    /// STS rejected the accepted token; cleared by `accept` or a later validation that
    /// does not reject it.
    #[serde(default)]
    pub invalid: Option<String>,
    /// The profile cannot give credentials as written (no keys, a role without a region,
    /// SSO not signed in), as resolving them said; cleared like `invalid`.
    #[serde(default)]
    pub misconfigured: Option<String>,
    /// STS has answered for the accepted token (since it was accepted).
    #[serde(default)]
    pub confirmed: bool,
    /// The last validation could not reach the target.
    #[serde(default)]
    pub unreachable: bool,
    /// Another AWS account id than `account_id`, as STS reported for a token; accepting
    /// that token makes it the account's `account_id`.
    #[serde(default)]
    pub pending_identity: Option<PendingIdentity>,
    /// Where its tokens come from (`--portal`); `None`: the profile's `sso_start_url`.
    #[serde(default)]
    pub portal: Option<String>,
}

/// A token whose credentials belong to another AWS account than the account's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingIdentity {
    pub fingerprint: Option<String>,
    pub account_id: String,
}

/// Why a profile cannot give credentials at all, seen from the files alone.
pub fn profile_problem(profile: &Profile) -> Option<String> {
    let name = &profile.name;
    match profile.kind {
        ProfileKind::Other => Some(format!(
            "profile `{name}` gives no credentials: it has no access keys, SSO settings, role or credential_process"
        )),
        ProfileKind::Sso if profile.fingerprint.is_none() => Some(format!(
            "profile `{name}` is not signed in to SSO: run `aws sso login --profile {name}`"
        )),
        _ => None,
    }
}

impl Account {
    /// The state that follows from the current profile at `now`, with its reason.
    pub fn status(
        &self,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
        warn_before: Duration,
    ) -> Status {
        let name = &self.name;
        let Some(profile) = profile else {
            return Status::new(
                AccountState::Missing,
                format!(
                    "profile `{}` of account `{name}` is gone from the AWS files: restore it",
                    self.profile
                ),
            );
        };
        if profile.fingerprint.is_none() && self.accepted.fingerprint.is_some() {
            // An SSO profile without a cache token is signed out, not gone.
            if profile.kind == ProfileKind::Sso
                && let Some(problem) = profile_problem(profile)
            {
                return Status::new(AccountState::Misconfigured, problem);
            }
            return Status::new(
                AccountState::Missing,
                format!(
                    "the token of account `{name}` is gone from profile `{}`: restore it or paste a new one",
                    self.profile
                ),
            );
        }
        if profile.fingerprint != self.accepted.fingerprint {
            return Status::new(
                AccountState::Changed,
                format!(
                    "the file holds a new token for `{name}` that it has not accepted: run `cmdrctl accept {name}` (or pass --force for the previously accepted one)"
                ),
            );
        }
        if let Some(new) = self
            .pending_identity
            .as_ref()
            .filter(|p| p.fingerprint == self.accepted.fingerprint)
            .map(|p| &p.account_id)
        {
            return Status::new(
                AccountState::Changed,
                format!(
                    "profile `{}` now holds credentials of AWS account {new}, not {}: run `cmdrctl accept {name}` if that is intended",
                    self.profile,
                    self.account_id.as_deref().unwrap_or("?")
                ),
            );
        }
        if let Some(reason) = &self.invalid {
            return Status::new(AccountState::Invalid, reason.clone());
        }
        if let Some(reason) = self
            .misconfigured
            .clone()
            .or_else(|| profile_problem(profile))
        {
            return Status::new(AccountState::Misconfigured, reason);
        }
        match self.accepted.expiry.as_ref().and_then(|e| e.at) {
            Some(at) if at <= now => {
                return Status::new(
                    AccountState::Expired,
                    format!(
                        "the accepted token of `{name}` expired at {}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                );
            }
            Some(at) if at - warn_before <= now => {
                return Status::new(AccountState::Expiring, None);
            }
            _ => {}
        }
        if self.unreachable && !self.confirmed {
            return Status::new(
                AccountState::Unvalidated,
                "not yet confirmed by STS: its target has been unreachable so far".to_owned(),
            );
        }
        Status::new(AccountState::Ok, None)
    }

    /// The state alone (see [`Account::status`]).
    pub fn state(
        &self,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
        warn_before: Duration,
    ) -> AccountState {
        self.status(profile, now, warn_before).state
    }

    /// The access portal to renew at: `--portal`, else the profile's `sso_start_url` if it
    /// is a URL that may be opened (the files are not checked when they are written).
    pub fn portal<'a>(&'a self, profile: Option<&'a Profile>) -> Option<&'a str> {
        self.portal.as_deref().or_else(|| {
            profile
                .and_then(|p| p.sso_start_url.as_deref())
                .filter(|url| check_portal(url).is_ok())
        })
    }

    fn accept(&mut self, profile: &Profile, expiry: Option<Expiry>, now: DateTime<Utc>) {
        self.accepted = AcceptedToken {
            fingerprint: profile.fingerprint.clone(),
            at: Some(now),
            expiry,
            credentials: profile.credentials.as_deref().cloned(),
        };
        self.invalid = None;
        self.misconfigured = None;
        self.confirmed = false;
        self.unreachable = false;
        if let Some(pending) = self.pending_identity.take()
            && pending.fingerprint == self.accepted.fingerprint
        {
            self.account_id = Some(pending.account_id);
        }
    }
}

/// How the engine tells a profile's expiry: it knows first-seen times and what
/// `credential_process`es said, which the files alone do not.
pub type ExpiryOf<'a> = &'a dyn Fn(&Profile) -> Option<Expiry>;

/// What a validation of an account's accepted token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// STS answered with this AWS account id.
    Confirmed { account_id: String },
    /// STS rejected the credentials.
    Rejected(String),
    /// The credentials could not be resolved as the profile is written.
    Misconfigured(String),
    /// The target did not answer: says nothing about the token.
    Unreachable,
    /// Anything else (access denied, an expired token, a server error): recorded nowhere.
    Other,
}

/// What `accounts add` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: Target,
    pub on_change: OnChange,
    pub portal: Option<String>,
}

/// What `accounts edit` may change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    pub profile: Option<String>,
    pub region: Option<Option<String>>,
    pub target: Option<Target>,
    pub on_change: Option<OnChange>,
    /// `Some(None)` drops the portal (back to the profile's `sso_start_url`).
    pub portal: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("no account named `{0}` (see `cmdrctl accounts list`)")]
    NotFound(String),
    #[error("an account named `{0}` already exists (use `cmdrctl accounts edit`)")]
    Exists(String),
    #[error("profile `{0}` is not in the AWS config or credentials file (see `cmdrctl profiles`)")]
    NoProfile(String),
    #[error("invalid account name `{0}`: use 1-64 letters, digits, `.`, `_` or `-`")]
    BadName(String),
    #[error("invalid endpoint `{0}`: expected an http:// or https:// URL")]
    BadEndpoint(String),
    /// Holds the rejected URL already escaped (it may hold control characters).
    #[error("invalid portal `{0}`: {PORTAL_RULE}")]
    BadPortal(String),
}

/// What a portal URL must be: it is handed to the browser (`xdg-open`, `open`, `start`).
pub const PORTAL_RULE: &str = "expected an http:// or https:// URL of at most 2048 printable ASCII characters (no spaces or control characters; internationalised names in punycode)";

/// Checks a portal URL against [`PORTAL_RULE`]; the error holds the URL escaped for display.
pub fn check_portal(url: &str) -> Result<(), AccountError> {
    let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && url.len() > scheme.len()
    });
    let chars_ok = url.bytes().all(|b| b.is_ascii_graphic());
    if scheme_ok && chars_ok && url.len() <= 2048 {
        Ok(())
    } else {
        let mut shown: String = url.chars().take(200).collect();
        if shown.len() < url.len() {
            shown.push('…');
        }
        Err(AccountError::BadPortal(shown.escape_debug().to_string()))
    }
}

/// What a successful STS validation means for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityCheck {
    /// The first validation: this account id is remembered.
    First,
    Same,
    /// A different AWS account: the account is `changed` until accepted.
    Changed {
        old: String,
    },
}

/// An account-level change, to be published as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    Added {
        account: String,
        profile: String,
    },
    Removed {
        account: String,
        profile: String,
    },
    Updated {
        account: String,
        profile: String,
    },
    TokenChanged {
        account: String,
        profile: String,
        old_fingerprint: Option<String>,
        new_fingerprint: Option<String>,
        expiry: Option<Expiry>,
    },
    TokenAccepted {
        account: String,
        profile: String,
    },
}

/// All accounts, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    map: BTreeMap<String, Account>,
}

impl Accounts {
    pub fn from_list(list: Vec<Account>) -> Self {
        Accounts {
            map: list.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.map.values()
    }

    pub fn get(&self, name: &str) -> Result<&Account, AccountError> {
        self.map
            .get(name)
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut Account, AccountError> {
        self.map
            .get_mut(name)
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Binds a new account and accepts the token in the file at this moment.
    pub fn add(
        &mut self,
        spec: NewAccount,
        view: &ProfileView,
        expiry: ExpiryOf<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccountChange>, AccountError> {
        validate_name(&spec.name)?;
        validate_target(&spec.target)?;
        if let Some(url) = &spec.portal {
            check_portal(url)?;
        }
        if self.map.contains_key(&spec.name) {
            return Err(AccountError::Exists(spec.name));
        }
        let profile = view
            .get(&spec.profile)
            .ok_or_else(|| AccountError::NoProfile(spec.profile.clone()))?;
        let mut account = Account {
            name: spec.name.clone(),
            profile: spec.profile.clone(),
            region: spec.region.or_else(|| profile.region.clone()),
            target: spec.target,
            on_change: spec.on_change,
            accepted: AcceptedToken::default(),
            account_id: None,
            invalid: None,
            misconfigured: None,
            confirmed: false,
            unreachable: false,
            pending_identity: None,
            portal: spec.portal,
        };
        account.accept(profile, expiry(profile), now);
        self.map.insert(spec.name.clone(), account);
        Ok(vec![AccountChange::Added {
            account: spec.name,
            profile: spec.profile,
        }])
    }

    /// Changes an account. Binding it to another profile accepts that profile's token.
    pub fn edit(
        &mut self,
        name: &str,
        patch: AccountPatch,
        view: &ProfileView,
        expiry: ExpiryOf<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccountChange>, AccountError> {
        if let Some(target) = &patch.target {
            validate_target(target)?;
        }
        if let Some(Some(url)) = &patch.portal {
            check_portal(url)?;
        }
        let new_profile = match &patch.profile {
            Some(p) => Some(
                view.get(p)
                    .ok_or_else(|| AccountError::NoProfile(p.clone()))?,
            ),
            None => None,
        };
        let account = self.get_mut(name)?;
        if let Some(profile) = new_profile
            && profile.name != account.profile
        {
            account.profile = profile.name.clone();
            account.account_id = None;
            account.pending_identity = None;
            account.accept(profile, expiry(profile), now);
        }
        if let Some(region) = patch.region {
            account.region = region;
        }
        if let Some(target) = patch.target {
            account.target = target;
        }
        if let Some(on_change) = patch.on_change {
            account.on_change = on_change;
        }
        if let Some(portal) = patch.portal {
            account.portal = portal;
        }
        Ok(vec![AccountChange::Updated {
            account: name.to_owned(),
            profile: account.profile.clone(),
        }])
    }

    pub fn remove(&mut self, name: &str) -> Result<Vec<AccountChange>, AccountError> {
        let account = self
            .map
            .remove(name)
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
        Ok(vec![AccountChange::Removed {
            account: account.name.clone(),
            profile: account.profile.clone(),
        }])
    }

    /// Uses the token now in the file (the dialog's "Yes").
    pub fn accept(
        &mut self,
        name: &str,
        view: &ProfileView,
        expiry: ExpiryOf<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AccountChange>, AccountError> {
        let account = self.get_mut(name)?;
        let profile = view
            .get(&account.profile)
            .ok_or_else(|| AccountError::NoProfile(account.profile.clone()))?;
        account.accept(profile, expiry(profile), now);
        Ok(vec![AccountChange::TokenAccepted {
            account: name.to_owned(),
            profile: account.profile.clone(),
        }])
    }

    /// Records what a validation found for the token with `fingerprint`. For the
    /// accepted token: a confirmation or an unreachable target clears a stale failure; a
    /// rejection or a profile that cannot give credentials is remembered until the next
    /// validation or `accept`. For another token (a new one, not accepted yet) only its
    /// AWS account id counts, so that accepting it needs no second confirmation.
    pub fn record_validation(
        &mut self,
        name: &str,
        fingerprint: Option<&str>,
        verdict: &Verdict,
    ) -> Result<Option<IdentityCheck>, AccountError> {
        let account = self.get_mut(name)?;
        let of_accepted = fingerprint == account.accepted.fingerprint.as_deref();
        if of_accepted {
            account.unreachable = false;
        }
        match verdict {
            Verdict::Confirmed { account_id } => {
                if of_accepted {
                    account.invalid = None;
                    account.misconfigured = None;
                    account.confirmed = true;
                }
                Ok(Some(match account.account_id.clone() {
                    None if of_accepted => {
                        account.account_id = Some(account_id.clone());
                        IdentityCheck::First
                    }
                    None => IdentityCheck::First,
                    Some(old) if old == *account_id => {
                        if of_accepted {
                            account.pending_identity = None;
                        }
                        IdentityCheck::Same
                    }
                    Some(old) => {
                        account.pending_identity = Some(PendingIdentity {
                            fingerprint: fingerprint.map(str::to_owned),
                            account_id: account_id.clone(),
                        });
                        IdentityCheck::Changed { old }
                    }
                }))
            }
            _ if !of_accepted => Ok(None),
            Verdict::Rejected(reason) => {
                account.invalid = Some(reason.clone());
                account.misconfigured = None;
                Ok(None)
            }
            Verdict::Misconfigured(reason) => {
                account.misconfigured = Some(reason.clone());
                account.invalid = None;
                Ok(None)
            }
            Verdict::Unreachable => {
                account.invalid = None;
                account.misconfigured = None;
                account.unreachable = true;
                Ok(None)
            }
            Verdict::Other => Ok(None),
        }
    }

    /// Follows a new view: a new token in a bound profile is a `TokenChanged`, and `auto`
    /// accounts accept it at once. A token that vanished is no new token (the account is
    /// `missing` until it is back); one that comes back as the accepted token is no change.
    pub fn apply(
        &mut self,
        changes: &[ProfileChange],
        view: &ProfileView,
        expiry: ExpiryOf<'_>,
        now: DateTime<Utc>,
    ) -> Vec<AccountChange> {
        let mut out = Vec::new();
        for change in changes {
            let (old_fingerprint, new_fingerprint) = match change {
                ProfileChange::Changed {
                    old_fingerprint,
                    new_fingerprint,
                    ..
                } if old_fingerprint != new_fingerprint => {
                    (old_fingerprint.clone(), new_fingerprint.clone())
                }
                // A profile that comes back may hold a new token.
                ProfileChange::Added { profile } => {
                    (None, view.get(profile).and_then(|p| p.fingerprint.clone()))
                }
                _ => continue,
            };
            if new_fingerprint.is_none() {
                continue;
            }
            let Some(profile) = view.get(change.profile()) else {
                continue;
            };
            for account in self.map.values_mut().filter(|a| a.profile == profile.name) {
                if account.accepted.fingerprint == new_fingerprint {
                    // The accepted token is back (deleted and recreated, or the file was
                    // broken at start): nothing to accept.
                    continue;
                }
                let old = old_fingerprint
                    .clone()
                    .or_else(|| account.accepted.fingerprint.clone());
                out.extend(token_changed(
                    account,
                    profile,
                    old,
                    new_fingerprint.clone(),
                    expiry,
                    now,
                ));
            }
        }
        out
    }

    /// Brings each accepted token up to date with a view whose profile holds that very
    /// token: its keys (a view may not have had them when the account accepted) and its
    /// expiry (an expiry key added beside it, what a `credential_process` said). Returns
    /// whether anything that is persisted changed.
    pub fn refresh_accepted(&mut self, view: &ProfileView, expiry: ExpiryOf<'_>) -> bool {
        let mut changed = false;
        for account in self.map.values_mut() {
            let Some(profile) = view.get(&account.profile) else {
                continue;
            };
            if profile.fingerprint != account.accepted.fingerprint {
                continue;
            }
            if account.accepted.credentials.is_none() {
                account.accepted.credentials = profile.credentials.as_deref().cloned();
            }
            let now_known = expiry(profile);
            // A profile without a token in the files (credential_process, a role) has
            // nothing to pin an expiry to: it is whatever is known now.
            let follows = now_known.is_some() || profile.fingerprint.is_none();
            if follows && now_known != account.accepted.expiry {
                account.accepted.expiry = now_known;
                changed = true;
            }
        }
        changed
    }

    /// Compares every account with the view, e.g. at start-up after the daemon was down:
    /// a profile holding a token other than the accepted one is a `TokenChanged`.
    pub fn reconcile(
        &mut self,
        view: &ProfileView,
        expiry: ExpiryOf<'_>,
        now: DateTime<Utc>,
    ) -> Vec<AccountChange> {
        let mut out = Vec::new();
        for account in self.map.values_mut() {
            let Some(profile) = view.get(&account.profile) else {
                continue;
            };
            if profile.fingerprint.is_none() || profile.fingerprint == account.accepted.fingerprint
            {
                continue;
            }
            let old = account.accepted.fingerprint.clone();
            let new = profile.fingerprint.clone();
            out.extend(token_changed(account, profile, old, new, expiry, now));
        }
        self.refresh_accepted(view, expiry);
        out
    }
}

fn token_changed(
    account: &mut Account,
    profile: &Profile,
    old_fingerprint: Option<String>,
    new_fingerprint: Option<String>,
    expiry: ExpiryOf<'_>,
    now: DateTime<Utc>,
) -> Vec<AccountChange> {
    let profile_expiry = expiry(profile);
    let mut out = vec![AccountChange::TokenChanged {
        account: account.name.clone(),
        profile: profile.name.clone(),
        old_fingerprint,
        new_fingerprint,
        expiry: profile_expiry.clone(),
    }];
    if account.on_change == OnChange::Auto {
        account.accept(profile, profile_expiry, now);
        out.push(AccountChange::TokenAccepted {
            account: account.name.clone(),
            profile: profile.name.clone(),
        });
    }
    out
}

fn validate_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::BadName(name.to_owned()))
    }
}

fn validate_target(target: &Target) -> Result<(), AccountError> {
    match target.endpoint() {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Err(AccountError::BadEndpoint(url.to_owned()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::diff;
    use crate::expiry::ExpirySource;
    use crate::profile::{Inputs, parse_view};

    fn parse(credentials: &str) -> ProfileView {
        let cache = BTreeMap::new();
        parse_view(Inputs {
            config: b"[profile p]\nregion = eu-west-1\n",
            credentials: credentials.as_bytes(),
            sso_cache: &cache,
        })
        .expect("parses")
    }

    fn view(token: &str) -> ProfileView {
        parse(&format!(
            "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
             aws_session_token = {token}\n"
        ))
    }

    /// No expiry known beyond the files (the engine adds estimates and process expiries).
    fn files_only(p: &Profile) -> Option<Expiry> {
        p.expiry.clone()
    }

    fn spec(name: &str, on_change: OnChange) -> NewAccount {
        NewAccount {
            name: name.to_owned(),
            profile: "p".to_owned(),
            region: None,
            target: Target::Aws,
            on_change,
            portal: None,
        }
    }

    fn state(accounts: &Accounts, name: &str, view: &ProfileView) -> AccountState {
        let a = accounts.get(name).expect("account");
        a.state(view.get(&a.profile), Utc::now(), Duration::minutes(15))
    }

    fn kinds(changes: &[AccountChange]) -> Vec<(&str, &str)> {
        changes
            .iter()
            .map(|c| match c {
                AccountChange::TokenChanged { account, .. } => (account.as_str(), "changed"),
                AccountChange::TokenAccepted { account, .. } => (account.as_str(), "accepted"),
                _ => ("?", "?"),
            })
            .collect()
    }

    #[test]
    fn ask_changes_until_accepted_and_auto_accepts() {
        let now = Utc::now();
        let (v1, v2) = (view("one"), view("two"));
        let mut accounts = Accounts::default();
        for (name, policy) in [("ask", OnChange::Ask), ("auto", OnChange::Auto)] {
            accounts
                .add(spec(name, policy), &v1, &files_only, now)
                .expect("add");
        }
        assert_eq!(
            accounts.get("ask").expect("a").region.as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(state(&accounts, "ask", &v1), AccountState::Ok);

        let changes = accounts.apply(&diff(&v1, &v2), &v2, &files_only, now);
        assert_eq!(
            kinds(&changes),
            [
                ("ask", "changed"),
                ("auto", "changed"),
                ("auto", "accepted")
            ]
        );
        assert_eq!(state(&accounts, "ask", &v2), AccountState::Changed);
        assert_eq!(state(&accounts, "auto", &v2), AccountState::Ok);
        // Still the first token's keys while `changed`.
        let token = |a: &Accounts| {
            a.get("ask")
                .expect("a")
                .accepted
                .credentials
                .clone()
                .and_then(|c| c.session_token.clone())
        };
        assert_eq!(token(&accounts).as_deref(), Some("one"));

        accounts
            .accept("ask", &v2, &files_only, now)
            .expect("accept");
        assert_eq!(state(&accounts, "ask", &v2), AccountState::Ok);
        assert_eq!(token(&accounts).as_deref(), Some("two"));
    }

    #[test]
    fn the_accepted_token_keeps_its_own_expiry() {
        let now = Utc::now();
        let short = parse(&format!(
            "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
             aws_session_token = one\nx_security_token_expires = {}\n",
            (now + Duration::minutes(20)).to_rfc3339()
        ));
        let long = parse(&format!(
            "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
             aws_session_token = two\nx_security_token_expires = {}\n",
            (now + Duration::hours(8)).to_rfc3339()
        ));
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &short, &files_only, now)
            .expect("add");
        accounts.apply(&diff(&short, &long), &long, &files_only, now);
        let a = accounts.get("a").expect("a");
        let expiry = a.accepted.expiry.clone().expect("expiry");
        assert_eq!(expiry.source, ExpirySource::Key("x_security_token_expires"));
        assert!(expiry.at.expect("at") < now + Duration::minutes(21));
        // Changed outranks expiring; once accepted, the long one counts.
        let later = now + Duration::minutes(10);
        let m = Duration::minutes(15);
        assert_eq!(a.state(long.get("p"), later, m), AccountState::Changed);
        assert_eq!(a.state(short.get("p"), later, m), AccountState::Expiring);
        accounts
            .accept("a", &long, &files_only, now)
            .expect("accept");
        let a = accounts.get("a").expect("a");
        assert_eq!(a.state(long.get("p"), later, m), AccountState::Ok);
    }

    #[test]
    fn states() {
        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &v, &files_only, now)
            .expect("add");
        let m = Duration::minutes(15);
        let p = v.get("p");
        let check = |exp: Option<DateTime<Utc>>, want: AccountState| {
            let mut a = accounts.get("a").expect("a").clone();
            a.accepted.expiry = exp.map(|at| Expiry::at(at, ExpirySource::Estimated));
            assert_eq!(a.state(p, now, m), want, "{exp:?}");
        };
        check(None, AccountState::Ok);
        check(Some(now + Duration::hours(1)), AccountState::Ok);
        check(Some(now + Duration::minutes(10)), AccountState::Expiring);
        check(Some(now - Duration::seconds(1)), AccountState::Expired);
        let a = accounts.get("a").expect("a");
        assert_eq!(a.state(None, now, m), AccountState::Missing);
        assert_eq!(a.state(view("two").get("p"), now, m), AccountState::Changed);
        // The token vanished from the profile (credentials file deleted).
        let bare = parse("");
        assert_eq!(a.state(bare.get("p"), now, m), AccountState::Missing);
    }

    #[test]
    fn a_vanished_token_is_missing_and_coming_back_is_no_change() {
        let now = Utc::now();
        let (v, gone) = (view("one"), parse(""));
        let mut accounts = Accounts::default();
        accounts
            .add(spec("auto", OnChange::Auto), &v, &files_only, now)
            .expect("add");
        assert!(
            accounts
                .apply(&diff(&v, &gone), &gone, &files_only, now)
                .is_empty()
        );
        assert_eq!(state(&accounts, "auto", &gone), AccountState::Missing);
        assert!(
            accounts
                .apply(&diff(&gone, &v), &v, &files_only, now)
                .is_empty()
        );
        assert_eq!(state(&accounts, "auto", &v), AccountState::Ok);
        assert!(accounts.reconcile(&gone, &files_only, now).is_empty());
        // Coming back with another token is a change (from the accepted one).
        let two = view("two");
        let changes = accounts.apply(&diff(&gone, &two), &two, &files_only, now);
        assert_eq!(kinds(&changes), [("auto", "changed"), ("auto", "accepted")]);
        assert!(matches!(
            &changes[0],
            AccountChange::TokenChanged {
                old_fingerprint: Some(_),
                new_fingerprint: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn validations_set_and_clear_one_reason() {
        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &v, &files_only, now)
            .expect("add");
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        assert_eq!(record(Verdict::Unreachable), None);
        let status = |accounts: &Accounts| {
            accounts
                .get("a")
                .expect("a")
                .status(v.get("p"), now, Duration::minutes(15))
        };
        assert_eq!(status(&accounts).state, AccountState::Unvalidated);
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        assert_eq!(
            record(Verdict::Misconfigured("Missing Region".into())),
            None
        );
        assert_eq!(status(&accounts).state, AccountState::Misconfigured);
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        // An unreachable target clears a stale failure.
        record(Verdict::Unreachable);
        assert_eq!(status(&accounts).state, AccountState::Unvalidated);
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        record(Verdict::Rejected("rejected".into()));
        assert_eq!(status(&accounts).state, AccountState::Invalid);
        assert!(
            status(&accounts)
                .refusal("a")
                .is_some_and(|r| r.contains("cmdrctl accept a"))
        );
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        let confirmed = |id: &str| Verdict::Confirmed {
            account_id: id.into(),
        };
        assert_eq!(record(confirmed("111")), Some(IdentityCheck::First));
        assert_eq!(record(confirmed("111")), Some(IdentityCheck::Same));
        assert_eq!(status(&accounts).state, AccountState::Ok);
        // Once confirmed, an unreachable target is no reason to doubt the token.
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        record(Verdict::Unreachable);
        assert_eq!(status(&accounts).state, AccountState::Ok);
        let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
        let mut record = |verdict: Verdict| {
            accounts
                .record_validation("a", fp.as_deref(), &verdict)
                .expect("a")
        };
        assert_eq!(
            record(confirmed("222")),
            Some(IdentityCheck::Changed { old: "111".into() })
        );
        let s = status(&accounts);
        assert_eq!(s.state, AccountState::Changed);
        let reason = s.refusal("a").expect("refused");
        assert_eq!(reason.matches("cmdrctl accept a").count(), 1, "{reason}");
        accounts.accept("a", &v, &files_only, now).expect("accept");
        assert_eq!(status(&accounts).state, AccountState::Ok);
        assert_eq!(
            accounts.get("a").expect("a").account_id.as_deref(),
            Some("222")
        );
    }

    #[test]
    fn profiles_that_cannot_give_credentials_are_misconfigured() {
        let now = Utc::now();
        let bare = parse("");
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &bare, &files_only, now)
            .expect("add");
        let s = accounts
            .get("a")
            .expect("a")
            .status(bare.get("p"), now, Duration::minutes(15));
        assert_eq!(s.state, AccountState::Misconfigured);
        assert!(s.reason.is_some_and(|r| r.contains("no access keys")));
    }

    #[test]
    fn portals() {
        let check = |url: &str, ok: bool| {
            assert_eq!(check_portal(url).is_ok(), ok, "{url:?}");
        };
        check("https://acme.awsapps.com/start", true);
        check("HTTP://localhost:8080/x?a=1&b=2#f", true);
        check("https://", false);
        check("ftp://acme", false);
        check("file:///etc/passwd", false);
        check("-https://x", false);
        check("https://a b", false);
        check("https://a\u{1b}[31m", false);
        check("https://a\u{202e}b", false);
        check("https://\u{e9}.example", false);
        check(&format!("https://{}", "a".repeat(2048)), false);
        let err = check_portal("https://a\u{1b}[31m").expect_err("bad");
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
        assert!(err.to_string().contains(PORTAL_RULE), "{err}");

        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        let mut bad = spec("a", OnChange::Ask);
        bad.portal = Some("javascript:alert(1)".into());
        assert!(matches!(
            accounts.add(bad, &v, &files_only, now),
            Err(AccountError::BadPortal(_))
        ));
        let mut with = spec("a", OnChange::Ask);
        with.portal = Some("https://acme.awsapps.com/start".into());
        accounts.add(with, &v, &files_only, now).expect("add");
        let a = accounts.get("a").expect("a");
        assert_eq!(a.portal(v.get("p")), Some("https://acme.awsapps.com/start"));
        let patch = |portal| AccountPatch {
            portal: Some(portal),
            ..AccountPatch::default()
        };
        assert!(matches!(
            accounts.edit("a", patch(Some("ssh://x".into())), &v, &files_only, now),
            Err(AccountError::BadPortal(_))
        ));
        accounts
            .edit("a", patch(None), &v, &files_only, now)
            .expect("edit");
        // The profile in `view` has no sso_start_url: no portal at all.
        assert_eq!(accounts.get("a").expect("a").portal(v.get("p")), None);
    }

    #[test]
    fn errors_and_reconcile() {
        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        let bad = |name: &str| NewAccount {
            name: name.to_owned(),
            ..spec("x", OnChange::Ask)
        };
        for name in ["a b", ""] {
            assert!(matches!(
                accounts.add(bad(name), &v, &files_only, now),
                Err(AccountError::BadName(_))
            ));
        }
        let mut nope = spec("n", OnChange::Ask);
        nope.profile = "nope".into();
        assert!(matches!(
            accounts.add(nope, &v, &files_only, now),
            Err(AccountError::NoProfile(_))
        ));
        let mut ep = spec("e", OnChange::Ask);
        ep.target = Target::Endpoint {
            endpoint: "ftp://x".into(),
        };
        assert!(matches!(
            accounts.add(ep, &v, &files_only, now),
            Err(AccountError::BadEndpoint(_))
        ));
        accounts
            .add(spec("a", OnChange::Ask), &v, &files_only, now)
            .expect("add");
        assert!(matches!(
            accounts.add(spec("a", OnChange::Ask), &v, &files_only, now),
            Err(AccountError::Exists(_))
        ));
        assert!(accounts.reconcile(&v, &files_only, now).is_empty());
        let changes = accounts.reconcile(&view("two"), &files_only, now);
        assert!(matches!(
            changes.as_slice(),
            [AccountChange::TokenChanged { .. }]
        ));
        assert!(matches!(
            accounts.remove("zz"),
            Err(AccountError::NotFound(_))
        ));
        accounts.remove("a").expect("remove");
        assert!(accounts.is_empty());
    }

    #[test]
    fn state_file_shape() {
        let now = Utc::now();
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &view("one"), &files_only, now)
            .expect("add");
        let a = accounts.get("a").expect("a");
        let json = serde_json::to_value(a).expect("json");
        assert!(
            json.get("accepted_fingerprint")
                .is_some_and(|v| v.is_string())
        );
        assert!(json.get("credentials").is_none() && !json.to_string().contains("AKIA"));
        let back: Account = serde_json::from_value(json).expect("back");
        assert_eq!(back.accepted.fingerprint, a.accepted.fingerprint);
        // A state file written before the accepted expiry existed still loads.
        let old = r#"{"name":"a","profile":"p","region":null,"target":{"kind":"aws"},
            "on_change":"ask","accepted_fingerprint":"f","accepted_at":null}"#;
        let old: Account = serde_json::from_str(old).expect("old state");
        assert_eq!(old.accepted.fingerprint.as_deref(), Some("f"));
    }
}
