//! The accounts as a collection: adding, editing, accepting, reconciling them with each
//! new view, and recording what STS said.

use super::*;

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

    /// The accounts whose names sort after `after`, in name order (a page's cursor).
    pub fn iter_after(&self, after: Option<&str>) -> impl Iterator<Item = &Account> {
        crate::values_after(&self.map, after)
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

    /// Puts `name` back as it was (`None`: absent), undoing an operation on it.
    pub fn restore(&mut self, name: &str, account: Option<Account>) {
        match account {
            Some(account) => self.map.insert(name.to_owned(), account),
            None => self.map.remove(name),
        };
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
        validate_region(spec.region.as_deref())?;
        if self.map.contains_key(&spec.name) {
            return Err(AccountError::Exists(spec.name));
        }
        let profile = view
            .get(&spec.profile)
            .ok_or_else(|| AccountError::NoProfile(spec.profile.clone()))?;
        let (name, profile_name) = (spec.name.clone(), spec.profile.clone());
        // The profile's region only if it is one: a file may say anything.
        let region = spec.region.clone().or_else(|| {
            (profile.region.as_deref())
                .filter(|r| crate::input::check_region(r).is_ok())
                .map(str::to_owned)
        });
        let mut account = Account::fresh(NewAccount { region, ..spec });
        account.accept(profile, expiry(profile), now);
        self.map.insert(name.clone(), account);
        Ok(vec![AccountChange::Added {
            account: name,
            profile: profile_name,
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
        if let Some(region) = &patch.region {
            validate_region(region.as_deref())?;
        }
        let new_profile = match &patch.profile {
            Some(p) => Some(
                view.get(p)
                    .ok_or_else(|| AccountError::NoProfile(p.clone()))?,
            ),
            None => None,
        };
        let account = self.get_mut(name)?;
        let before = account.clone();
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
        if let Some(target) = patch.target
            && target != account.target
        {
            // Another target may be another AWS account: what STS said no longer holds,
            // nor whether it could be reached.
            account.target = target;
            account.account_id = None;
            account.pending_identity = None;
            account.invalid = None;
            account.misconfigured = None;
            account.confirmed = false;
            account.unreachable = false;
        }
        if let Some(on_change) = patch.on_change {
            account.on_change = on_change;
        }
        if let Some(portal) = patch.portal {
            account.portal = portal;
        }
        if let Some(auto_renew) = patch.auto_renew {
            account.auto_renew = Some(auto_renew);
        }
        if *account == before {
            return Ok(Vec::new());
        }
        Ok(vec![AccountChange::Updated {
            account: name.to_owned(),
            profile: account.profile.clone(),
        }])
    }

    /// Records the portal permission set STS named for the account's token (an
    /// `AWSReservedSSO_<NAME>_<hex>` role); whether it changed.
    pub fn set_sso_role(&mut self, name: &str, role: Option<String>) -> bool {
        match self.get_mut(name) {
            Ok(account) if account.sso_role != role => {
                account.sso_role = role;
                true
            }
            _ => false,
        }
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
        if account.accepted.fingerprint == profile.fingerprint
            && account.invalid.is_none()
            && account.misconfigured.is_none()
            && account.pending_identity.is_none()
            && (account.accepted.credentials.is_some() || profile.credentials.is_none())
        {
            // Nothing new to accept: no event, and the accepted time keeps its meaning.
            return Ok(Vec::new());
        }
        account.accept(profile, expiry(profile), now);
        // The user chose this token: whichever AWS account it is, accepting it once is
        // enough (an identity learnt after this is the account's, see `record_validation`).
        account.identity_accepted = account.account_id.is_some();
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
                            account.identity_accepted = false;
                        }
                        IdentityCheck::Same
                    }
                    Some(old) if of_accepted && account.identity_accepted => {
                        // Accepted with `cmdrctl accept` before STS had said whose it is.
                        account.account_id = Some(account_id.clone());
                        account.pending_identity = None;
                        account.identity_accepted = false;
                        IdentityCheck::Changed { old }
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
    // The first sign-in of an SSO profile that names its account and role: the identity is
    // the config's, not the token's, and signing in (`login`, `aws sso login`) was the
    // person's doing; there is nothing to ask.
    let first_sign_in =
        old_fingerprint.is_none() && profile.kind == ProfileKind::Sso && profile.sso.is_some();
    let mut out = vec![AccountChange::TokenChanged {
        account: account.name.clone(),
        profile: profile.name.clone(),
        old_fingerprint,
        new_fingerprint,
        expiry: profile_expiry.clone(),
    }];
    if account.on_change == OnChange::Auto || first_sign_in {
        account.accept(profile, profile_expiry, now);
        out.push(AccountChange::TokenAccepted {
            account: account.name.clone(),
            profile: profile.name.clone(),
        });
    }
    out
}

fn validate_name(name: &str) -> Result<(), AccountError> {
    Ok(crate::input::check_name(name)?)
}

fn validate_target(target: &Target) -> Result<(), AccountError> {
    Ok(target
        .endpoint()
        .map_or(Ok(()), crate::input::check_endpoint)?)
}

fn validate_region(region: Option<&str>) -> Result<(), AccountError> {
    Ok(region.map_or(Ok(()), crate::input::check_region)?)
}
