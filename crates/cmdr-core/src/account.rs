//! Accounts: user-chosen names bound to a profile, with a region, a target and a policy for
//! token changes; the fingerprint each has accepted; and the state machine that follows
//! from the current view.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::diff::ProfileChange;
use crate::expiry::Expiry;
use crate::profile::{Credentials, Profile, ProfileView};

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
            AccountState::Unvalidated => "unvalidated",
        }
    }
}

/// A bound account. Persisted as is, except the accepted credentials (never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: Target,
    pub on_change: OnChange,
    pub accepted_fingerprint: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    /// The AWS account id STS reported last, to notice a different account pasted in.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Set when STS rejected the credentials or named another AWS account; cleared by
    /// `accept`.
    #[serde(default)]
    pub invalid: Option<String>,
    /// The other AWS account id STS reported; becomes `account_id` on `accept`.
    #[serde(default)]
    pub identity_pending: Option<String>,
    /// The secrets accepted in this run: only these are handed out. Never persisted.
    #[serde(skip)]
    pub accepted_credentials: Option<Credentials>,
    /// Where its tokens come from (`--portal`); `None`: the profile's `sso_start_url`.
    #[serde(default)]
    pub portal: Option<String>,
}

impl Account {
    /// The state that follows from the current profile and expiry at `now`.
    pub fn state(
        &self,
        profile: Option<&Profile>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        warn_before: Duration,
    ) -> AccountState {
        let Some(profile) = profile else {
            return AccountState::Missing;
        };
        if self.invalid.is_some() {
            return AccountState::Invalid;
        }
        if profile.fingerprint != self.accepted_fingerprint {
            return AccountState::Changed;
        }
        match expires_at {
            Some(at) if at <= now => AccountState::Expired,
            Some(at) if at - warn_before <= now => AccountState::Expiring,
            _ => AccountState::Ok,
        }
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

    fn accept(&mut self, profile: &Profile, now: DateTime<Utc>) {
        self.accepted_fingerprint = profile.fingerprint.clone();
        self.accepted_credentials = profile.credentials.as_deref().cloned();
        self.accepted_at = Some(now);
        self.invalid = None;
        if let Some(new) = self.identity_pending.take() {
            self.account_id = Some(new);
        }
    }
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
    /// A different AWS account: the account is `invalid` until accepted.
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
            accepted_fingerprint: None,
            accepted_at: None,
            account_id: None,
            invalid: None,
            identity_pending: None,
            accepted_credentials: None,
            portal: spec.portal,
        };
        account.accept(profile, now);
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
            account.accept(profile, now);
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
        now: DateTime<Utc>,
    ) -> Result<Vec<AccountChange>, AccountError> {
        let account = self.get_mut(name)?;
        let profile = view
            .get(&account.profile)
            .ok_or_else(|| AccountError::NoProfile(account.profile.clone()))?;
        account.accept(profile, now);
        Ok(vec![AccountChange::TokenAccepted {
            account: name.to_owned(),
            profile: account.profile.clone(),
        }])
    }

    /// Records the AWS account id STS reported for this account's credentials.
    pub fn record_identity(
        &mut self,
        name: &str,
        account_id: &str,
    ) -> Result<IdentityCheck, AccountError> {
        let account = self.get_mut(name)?;
        match account.account_id.clone() {
            None => {
                account.account_id = Some(account_id.to_owned());
                Ok(IdentityCheck::First)
            }
            Some(old) if old == account_id => {
                account.identity_pending = None;
                Ok(IdentityCheck::Same)
            }
            Some(old) => {
                account.invalid = Some(format!(
                    "profile `{}` now holds credentials of AWS account {account_id}, not {old}; run `cmdrctl accept {name}` if that is intended",
                    account.profile
                ));
                account.identity_pending = Some(account_id.to_owned());
                Ok(IdentityCheck::Changed { old })
            }
        }
    }

    /// STS rejected the credentials: the account is `invalid` until accepted again.
    pub fn mark_invalid(&mut self, name: &str, reason: &str) -> Result<(), AccountError> {
        self.get_mut(name)?.invalid = Some(reason.to_owned());
        Ok(())
    }

    /// Follows a new view: a changed fingerprint of a bound profile is a `TokenChanged`;
    /// `auto` accounts accept it at once.
    pub fn apply(
        &mut self,
        changes: &[ProfileChange],
        view: &ProfileView,
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
            let Some(profile) = view.get(change.profile()) else {
                continue;
            };
            for account in self.map.values_mut().filter(|a| a.profile == profile.name) {
                if matches!(change, ProfileChange::Added { .. })
                    && account.accepted_fingerprint == new_fingerprint
                {
                    // The accepted token is back (e.g. the file was broken at start).
                    if account.accepted_credentials.is_none() {
                        account.accepted_credentials = profile.credentials.as_deref().cloned();
                    }
                    continue;
                }
                out.extend(token_changed(
                    account,
                    profile,
                    old_fingerprint.clone(),
                    new_fingerprint.clone(),
                    now,
                ));
            }
        }
        out
    }

    /// Gives an account that has accepted the token a profile holds the keys of that
    /// token, once a view has them (it may not have had them when the account accepted).
    pub fn fill_credentials(&mut self, view: &ProfileView) {
        for account in self.map.values_mut() {
            if account.accepted_credentials.is_some() {
                continue;
            }
            if let Some(profile) = view.get(&account.profile)
                && profile.fingerprint.is_some()
                && profile.fingerprint == account.accepted_fingerprint
            {
                account.accepted_credentials = profile.credentials.as_deref().cloned();
            }
        }
    }

    /// Compares every account with the view, e.g. at start-up after the daemon was down:
    /// a profile whose token differs from the accepted one is a `TokenChanged`.
    pub fn reconcile(&mut self, view: &ProfileView, now: DateTime<Utc>) -> Vec<AccountChange> {
        let mut out = Vec::new();
        for account in self.map.values_mut() {
            let Some(profile) = view.get(&account.profile) else {
                continue;
            };
            if profile.fingerprint == account.accepted_fingerprint {
                // Same token as accepted: hand it out again after a restart.
                account.accepted_credentials = profile.credentials.as_deref().cloned();
                continue;
            }
            let old = account.accepted_fingerprint.clone();
            let new = profile.fingerprint.clone();
            out.extend(token_changed(account, profile, old, new, now));
        }
        out
    }
}

fn token_changed(
    account: &mut Account,
    profile: &Profile,
    old_fingerprint: Option<String>,
    new_fingerprint: Option<String>,
    now: DateTime<Utc>,
) -> Vec<AccountChange> {
    let mut out = vec![AccountChange::TokenChanged {
        account: account.name.clone(),
        profile: profile.name.clone(),
        old_fingerprint,
        new_fingerprint,
        expiry: profile.expiry.clone(),
    }];
    if account.on_change == OnChange::Auto {
        account.accept(profile, now);
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
    use crate::profile::{Inputs, parse_view};

    fn view(token: &str) -> ProfileView {
        let cache = BTreeMap::new();
        let text = format!(
            "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
             aws_session_token = {token}\nregion = eu-west-1\n"
        );
        parse_view(Inputs {
            config: b"",
            credentials: text.as_bytes(),
            sso_cache: &cache,
        })
        .expect("parses")
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
        a.state(
            view.get(&a.profile),
            None,
            Utc::now(),
            Duration::minutes(15),
        )
    }

    #[test]
    fn ask_changes_until_accepted_and_auto_accepts() {
        let now = Utc::now();
        let (v1, v2) = (view("one"), view("two"));
        let mut accounts = Accounts::default();
        accounts
            .add(spec("ask", OnChange::Ask), &v1, now)
            .expect("add");
        accounts
            .add(spec("auto", OnChange::Auto), &v1, now)
            .expect("add");
        assert_eq!(
            accounts.get("ask").expect("a").region.as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(state(&accounts, "ask", &v1), AccountState::Ok);

        let changes = accounts.apply(&diff(&v1, &v2), &v2, now);
        let kinds: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| match c {
                AccountChange::TokenChanged { account, .. } => (account.as_str(), "changed"),
                AccountChange::TokenAccepted { account, .. } => (account.as_str(), "accepted"),
                _ => ("?", "?"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ask", "changed"),
                ("auto", "changed"),
                ("auto", "accepted")
            ]
        );
        assert_eq!(state(&accounts, "ask", &v2), AccountState::Changed);
        assert_eq!(state(&accounts, "auto", &v2), AccountState::Ok);

        accounts.accept("ask", &v2, now).expect("accept");
        assert_eq!(state(&accounts, "ask", &v2), AccountState::Ok);
        let creds = accounts.get("ask").expect("a").accepted_credentials.clone();
        assert_eq!(
            creds.and_then(|c| c.session_token.clone()).as_deref(),
            Some("two")
        );
    }

    #[test]
    fn states() {
        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &v, now)
            .expect("add");
        let a = accounts.get("a").expect("a");
        let p = v.get("p");
        let m = Duration::minutes(15);
        let check = |exp: Option<DateTime<Utc>>, want: AccountState| {
            assert_eq!(a.state(p, exp, now, m), want, "{exp:?}");
        };
        check(None, AccountState::Ok);
        check(Some(now + Duration::hours(1)), AccountState::Ok);
        check(Some(now + Duration::minutes(10)), AccountState::Expiring);
        check(Some(now - Duration::seconds(1)), AccountState::Expired);
        assert_eq!(a.state(None, None, now, m), AccountState::Missing);
        assert_eq!(
            a.state(view("two").get("p"), None, now, m),
            AccountState::Changed
        );
    }

    #[test]
    fn identity_changes_until_accepted() {
        let now = Utc::now();
        let v = view("one");
        let mut accounts = Accounts::default();
        accounts
            .add(spec("a", OnChange::Ask), &v, now)
            .expect("add");
        assert_eq!(
            accounts.record_identity("a", "111"),
            Ok(IdentityCheck::First)
        );
        assert_eq!(
            accounts.record_identity("a", "111"),
            Ok(IdentityCheck::Same)
        );
        assert_eq!(
            accounts.record_identity("a", "222"),
            Ok(IdentityCheck::Changed { old: "111".into() })
        );
        assert_eq!(state(&accounts, "a", &v), AccountState::Invalid);
        accounts.accept("a", &v, now).expect("accept");
        assert_eq!(state(&accounts, "a", &v), AccountState::Ok);
        assert_eq!(
            accounts.get("a").expect("a").account_id.as_deref(),
            Some("222")
        );
        assert_eq!(
            accounts.record_identity("a", "222"),
            Ok(IdentityCheck::Same)
        );
        accounts.mark_invalid("a", "rejected").expect("mark");
        assert_eq!(state(&accounts, "a", &v), AccountState::Invalid);
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
            accounts.add(bad, &v, now),
            Err(AccountError::BadPortal(_))
        ));
        let mut with = spec("a", OnChange::Ask);
        with.portal = Some("https://acme.awsapps.com/start".into());
        accounts.add(with, &v, now).expect("add");
        let a = accounts.get("a").expect("a");
        assert_eq!(a.portal(v.get("p")), Some("https://acme.awsapps.com/start"));
        let patch = |portal| AccountPatch {
            portal: Some(portal),
            ..AccountPatch::default()
        };
        assert!(matches!(
            accounts.edit("a", patch(Some("ssh://x".into())), &v, now),
            Err(AccountError::BadPortal(_))
        ));
        accounts.edit("a", patch(None), &v, now).expect("edit");
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
        assert!(matches!(
            accounts.add(bad("a b"), &v, now),
            Err(AccountError::BadName(_))
        ));
        assert!(matches!(
            accounts.add(bad(""), &v, now),
            Err(AccountError::BadName(_))
        ));
        let mut nope = spec("n", OnChange::Ask);
        nope.profile = "nope".into();
        assert!(matches!(
            accounts.add(nope, &v, now),
            Err(AccountError::NoProfile(_))
        ));
        let mut ep = spec("e", OnChange::Ask);
        ep.target = Target::Endpoint {
            endpoint: "ftp://x".into(),
        };
        assert!(matches!(
            accounts.add(ep, &v, now),
            Err(AccountError::BadEndpoint(_))
        ));
        accounts
            .add(spec("a", OnChange::Ask), &v, now)
            .expect("add");
        assert!(matches!(
            accounts.add(spec("a", OnChange::Ask), &v, now),
            Err(AccountError::Exists(_))
        ));
        assert!(accounts.reconcile(&v, now).is_empty());
        let changes = accounts.reconcile(&view("two"), now);
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
}
