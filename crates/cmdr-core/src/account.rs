//! Accounts: user-chosen names bound to a profile, with a region, a target and a policy for
//! token changes; the fingerprint each has accepted; and the state machine that follows
//! from the current view.

use std::collections::BTreeMap;

use crate::diff::ProfileChange;
use crate::expiry::Expiry;
use crate::profile::{Credentials, Profile, ProfileKind, ProfileView};
use chrono::{DateTime, Duration, Utc};

/// The LocalStack endpoint used when `--localstack` is given without a URL.
pub const DEFAULT_LOCALSTACK: &str = "http://localhost:4566";

/// Where an account's API calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Aws,
    Localstack { endpoint: String },
    Endpoint { endpoint: String },
}

impl Target {
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Target::Aws => None,
            Target::Localstack { endpoint } | Target::Endpoint { endpoint } => Some(endpoint),
        }
    }
}

/// What happens when the token in the file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnChange {
    /// Wait for `cmdrctl accept` (the dialog's "Yes").
    #[default]
    Ask,
    /// Accept at once.
    Auto,
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

/// An account's state with the one reason for it (none for `ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: AccountState,
    pub reason: Option<String>,
    /// `cmdrctl renew` has a way to get a new token: a portal to open, or an SSO profile
    /// to sign in to. Without one, nothing suggests it (it would only fail).
    pub renewable: bool,
}

impl Status {
    fn new(state: AccountState, reason: impl Into<Option<String>>) -> Status {
        Status {
            state,
            reason: reason.into(),
            renewable: false,
        }
    }

    /// Why the accepted credentials are not handed out in this state, with the command
    /// that fixes it; `None` when they are. `expiring` and `unvalidated` still hand out:
    /// the token works (or may: an unreachable target says nothing against it).
    /// An `auto` account switches to a pasted token by itself: it is never told to accept.
    pub fn refusal(&self, account: &str, on_change: OnChange) -> Option<String> {
        let reason = self.reason.as_deref().unwrap_or("");
        match self.state {
            AccountState::Ok | AccountState::Expiring | AccountState::Unvalidated => None,
            AccountState::Changed | AccountState::Missing | AccountState::Misconfigured => {
                Some(reason.to_owned())
            }
            // `renew` accepts what it fetches: no `accept` after it.
            AccountState::Expired => Some(match (self.renewable, on_change) {
                (true, OnChange::Ask) => format!(
                    "{reason}: run `cmdrctl renew {account}`, or paste a new one and run `cmdrctl accept {account}`"
                ),
                (true, OnChange::Auto) => format!(
                    "{reason}: run `cmdrctl renew {account}`, or paste a new one (`{account}` switches to it by itself)"
                ),
                (false, OnChange::Ask) => format!(
                    "{reason}: paste a new one (`cmdrctl paste`), then run `cmdrctl accept {account}`"
                ),
                (false, OnChange::Auto) => format!(
                    "{reason}: paste a new one (`cmdrctl paste`); `{account}` switches to it by itself"
                ),
            }),
            AccountState::Invalid => Some(format!(
                "{reason}; after fixing it, run `cmdrctl accept {account}`"
            )),
        }
    }
}

/// The token an account hands to tools, as one value: its fingerprint, its keys (when the
/// files hold them) and *its* expiry. While the file holds a newer, unaccepted token,
/// everything handed out and every expiry shown belong to this one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptedToken {
    pub fingerprint: Option<String>,
    pub at: Option<DateTime<Utc>>,
    /// When this token ends, with its source; `None` when not known.
    pub expiry: Option<Expiry>,
    /// The keys, accepted in this run: only these are handed out. Never persisted.
    pub credentials: Option<Credentials>,
}

/// A bound account. The daemon persists it as its own record (cmdrd's `store/record.rs`),
/// without the accepted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: Target,
    pub on_change: OnChange,
    pub accepted: AcceptedToken,
    /// The AWS account id STS reported last, to notice a different account pasted in.
    pub account_id: Option<String>,
    /// STS rejected the accepted token; cleared by `accept` or a later validation that
    /// does not reject it.
    pub invalid: Option<String>,
    /// The profile cannot give credentials as written (no keys, a role without a region,
    /// SSO not signed in), as resolving them said; cleared like `invalid`.
    pub misconfigured: Option<String>,
    /// STS has answered for the accepted token (since it was accepted).
    pub confirmed: bool,
    /// The last validation could not reach the target.
    pub unreachable: bool,
    /// Another AWS account id than `account_id`, as STS reported for a token; accepting
    /// that token makes it the account's `account_id`.
    pub pending_identity: Option<PendingIdentity>,
    /// The user accepted the accepted token with `cmdrctl accept` (not `auto`), whatever
    /// AWS account it turns out to belong to: its first confirmation by STS becomes the
    /// account's `account_id` (reported as `identity_changed`) instead of holding it back
    /// as `changed` for a second `accept`.
    pub identity_accepted: bool,
    /// Where its tokens come from (`--portal`); `None`: the profile's `sso_start_url`.
    pub portal: Option<String>,
    /// `accounts edit --auto-renew on|off`; `None`: on where the account can renew itself.
    pub auto_renew: Option<bool>,
    /// The permission set STS named for its token (`AWSReservedSSO_<NAME>_<hex>` roles):
    /// what a pasted "Option 2" token is renewed as when its profile name does not say.
    pub sso_role: Option<String>,
}

/// A token whose credentials belong to another AWS account than the account's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIdentity {
    pub fingerprint: Option<String>,
    pub account_id: String,
}

/// Why a profile cannot give credentials at all, seen from the files alone; `account` is
/// the account bound to it (an SSO sign-in goes through `cmdrctl renew`, which knows what
/// works here: `aws sso login` needs the AWS CLI v2).
pub fn profile_problem(profile: &Profile, account: &str) -> Option<String> {
    let name = &profile.name;
    match profile.kind {
        ProfileKind::Other => Some(format!(
            "profile `{name}` gives no credentials: it has no access keys, SSO settings, role or credential_process"
        )),
        // aws-config 1.8 has the provider behind its `credentials-login` feature, which
        // cmdrd is not built with (it needs aws-sdk-signin).
        ProfileKind::Login => Some(format!(
            "profile `{name}` uses an `aws login` session (login_session), which cmdrd cannot resolve yet: bind a profile with keys, SSO, a role or a credential_process"
        )),
        ProfileKind::Sso if profile.fingerprint.is_none() => Some(match &profile.sso {
            Some(sso) => format!(
                "profile `{name}` is not signed in to its portal: run `cmdrctl login {}` (or `cmdrctl renew {account}`, which signs in and fetches the credentials at once)",
                sso.session
            ),
            None => format!(
                "profile `{name}` is not signed in to SSO: run `cmdrctl renew {account}` (a legacy SSO profile without sso_session: it runs `aws sso login --profile {name}`, which needs the AWS CLI v2, or opens the portal)"
            ),
        }),
        _ => None,
    }
}

impl Account {
    /// An account as `accounts add` makes it, before it accepts a token or learns anything.
    pub fn fresh(spec: NewAccount) -> Account {
        Account {
            name: spec.name,
            profile: spec.profile,
            region: spec.region,
            target: spec.target,
            on_change: spec.on_change,
            accepted: AcceptedToken::default(),
            account_id: None,
            invalid: None,
            misconfigured: None,
            confirmed: false,
            unreachable: false,
            pending_identity: None,
            identity_accepted: false,
            portal: spec.portal,
            auto_renew: None,
            sso_role: None,
        }
    }

    /// The state that follows from the current profile at `now`, with its reason.
    pub fn status(
        &self,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
        warn_before: Duration,
    ) -> Status {
        self.status_renewing(profile, now, warn_before, None)
    }

    /// [`Account::status`] of an account whose token is renewed at `renews_at` by the
    /// daemon itself, with nobody's help: a renewal before the token ends means that
    /// nearing that end is no alarm, so it stays `ok` inside `warn_before` (the renewal
    /// comes first). Past its end it is `expired` all the same.
    pub fn status_renewing(
        &self,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
        warn_before: Duration,
        renews_at: Option<DateTime<Utc>>,
    ) -> Status {
        let name = &self.name;
        let Some(profile) = profile else {
            return Status::new(
                AccountState::Missing,
                format!(
                    "profile `{}` of account `{name}` is gone from the AWS files: restore it, or if it was renamed, run `cmdrctl accounts edit {name} --profile NEW`",
                    self.profile
                ),
            );
        };
        if profile.fingerprint.is_none() && self.accepted.fingerprint.is_some() {
            // An SSO profile without a cache token is signed out, not gone.
            if profile.kind == ProfileKind::Sso
                && let Some(problem) = profile_problem(profile, name)
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
                    "the file holds a new token for `{name}` that it has not accepted: run `cmdrctl accept {name}`"
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
        if let Some(reason) = &self.misconfigured {
            let name = &self.name;
            return Status::new(
                AccountState::Misconfigured,
                format!(
                    "{reason}: fix the profile (an SSO profile: sign in again with `cmdrctl renew {name}`), then run `cmdrctl validate {name}`"
                ),
            );
        }
        if let Some(reason) = profile_problem(profile, name) {
            return Status::new(AccountState::Misconfigured, reason);
        }
        match self.accepted.expiry.as_ref().and_then(|e| e.when()) {
            Some(at) if at <= now => {
                let mut status = Status::new(
                    AccountState::Expired,
                    format!(
                        "the accepted token of `{name}` expired at {}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                );
                status.renewable = self.renewable(Some(profile));
                return status;
            }
            Some(at) if at - warn_before <= now && renews_at.is_none_or(|r| r >= at) => {
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

    /// The state alone (see [`Account::status_renewing`]).
    pub fn state_renewing(
        &self,
        profile: Option<&Profile>,
        now: DateTime<Utc>,
        warn_before: Duration,
        renews_at: Option<DateTime<Utc>>,
    ) -> AccountState {
        self.status_renewing(profile, now, warn_before, renews_at)
            .state
    }

    /// Whether `cmdrctl renew` has a way to get a new token for this account: a portal to
    /// open, or an SSO profile to sign in to (as `cmdr_config::renew::plan` decides).
    pub fn renewable(&self, profile: Option<&Profile>) -> bool {
        self.portal(profile).is_some() || profile.is_some_and(|p| p.kind == ProfileKind::Sso)
    }

    /// The profile the accepted token has moved to, when the bound profile is gone (or
    /// holds no token any more) and exactly one other profile holds that very token (a
    /// renamed section).
    pub fn renamed_to<'a>(&self, view: &'a ProfileView) -> Option<&'a str> {
        let accepted = self.accepted.fingerprint.as_deref()?;
        if view
            .get(&self.profile)
            .is_some_and(|p| p.fingerprint.is_some())
        {
            return None;
        }
        let mut holders = view
            .profiles
            .values()
            .filter(|p| p.fingerprint.as_deref() == Some(accepted));
        let first = holders.next()?;
        holders.next().is_none().then_some(first.name.as_str())
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
        self.identity_accepted = false;
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
    pub auto_renew: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("no account named `{0}` (see `cmdrctl accounts list`)")]
    NotFound(String),
    #[error("an account named `{0}` already exists (use `cmdrctl accounts edit`)")]
    Exists(String),
    #[error("profile `{0}` is not in the AWS config or credentials file (see `cmdrctl profiles`)")]
    NoProfile(String),
    /// A malformed name, region or endpoint (the rule is in the message).
    #[error(transparent)]
    Invalid(#[from] crate::input::InputError),
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

mod accounts;
#[cfg(test)]
mod tests;

pub use accounts::Accounts;
