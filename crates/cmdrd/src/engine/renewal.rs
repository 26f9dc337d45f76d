//! Accounts that renew themselves through their portal (PRODUCT.md, "Sign-in and
//! renewal"): an SSO profile on a kept sso-session gets its role credentials through the
//! portal's keeper; a pasted "Option 2" profile (named `ACCOUNTID_ROLE` as the portal
//! names it, or validated as an `AWSReservedSSO_ROLE_…` role) whose portal is known is
//! renewed `renew_before` its token ends: GetRoleCredentials through the keeper, the block
//! written into the credentials file with `paste`'s safe write, accepted, `token_renewed`.
//! Also what the engine does with the keepers' news, and the portals' sync with the files.

use super::*;
use crate::engine::api::RenewedNow;
use crate::portal::{KeeperHandle, News, Portals};
use cmdr_signin::keep::RoleCredentials;

/// A renewal that failed is tried again after 1 minute, then 2, 4, … up to this.
const RETRY_CAP: chrono::Duration = chrono::Duration::minutes(16);

/// When a renewal that failed `failures` times in a row goes again: 1, 2, 4, … minutes
/// after now, at most [`RETRY_CAP`].
pub(super) fn retry_delay(failures: u32) -> chrono::Duration {
    let minutes = 1i64 << failures.saturating_sub(1).min(10);
    chrono::Duration::minutes(minutes).min(RETRY_CAP)
}

/// Role credentials asked with this much life left are fetched anew: none last this long.
const FRESH: chrono::Duration = chrono::Duration::hours(13);

/// How an account renews itself, or why it does not.
pub(super) enum Renewal {
    /// An SSO profile on a kept portal: its role credentials come through the keeper.
    Portal(KeeperHandle),
    /// A pasted block, renewed with GetRoleCredentials of this account and role.
    Paste {
        keeper: KeeperHandle,
        account_id: String,
        role: String,
    },
    /// It could, but `--auto-renew off` (`cmdrctl renew` still can).
    Off {
        keeper: KeeperHandle,
        account_id: String,
        role: String,
    },
    Cannot(String),
}

/// A renewal under way.
pub(super) enum Pending {
    /// Its role credentials are being fetched.
    InFlight,
    /// Being written into the file, or written: the view should now show this
    /// fingerprint. Registered *before* the write starts, so the watcher can never deliver
    /// the renewed file before the engine knows it is its own renewal.
    Written(Written),
    Failed {
        retry_at: DateTime<Utc>,
        /// Failures in a row: the next retry waits 1, 2, 4, … minutes.
        failures: u32,
    },
}

/// What a renewal wrote.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) fingerprint: String,
    pub(super) expires_at: DateTime<Utc>,
}

impl Renewal {
    /// The portal's keeper the account renews through, also with auto-renew off (then
    /// only when asked: `cmdrctl renew`).
    pub(super) fn keeper(&self) -> Option<&KeeperHandle> {
        match self {
            Renewal::Portal(k)
            | Renewal::Paste { keeper: k, .. }
            | Renewal::Off { keeper: k, .. } => Some(k),
            Renewal::Cannot(_) => None,
        }
    }

    /// Whether it renews itself.
    pub(super) fn renews(&self) -> bool {
        matches!(self, Renewal::Portal(_) | Renewal::Paste { .. })
    }
}

/// The fingerprint role credentials have once written into the credentials file.
fn fingerprint_of(creds: &RoleCredentials) -> String {
    cmdr_core::profile::keys_fingerprint(
        &creds.access_key_id,
        &creds.secret_access_key,
        Some(&creds.session_token),
    )
}

/// The account id and role of a profile named as the portal names it: `123456789012_Role`.
fn portal_name(profile: &str) -> Option<(String, String)> {
    let (id, role) = profile.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) && !role.is_empty())
        .then(|| (id.to_owned(), role.to_owned()))
}

/// The permission set of an `AWSReservedSSO_<NAME>_<hex>` role in an assumed-role ARN.
pub(super) fn reserved_sso_role(arn: &str) -> Option<String> {
    let role = arn.split('/').nth(1)?;
    let rest = role.strip_prefix("AWSReservedSSO_")?;
    let (name, hex) = rest.rsplit_once('_')?;
    (!name.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_owned())
}

impl Engine {
    /// Starts, stops and tells the keepers as the files' sso-sessions and tokens change.
    pub(super) fn sync_portals(&mut self) {
        if let Some(portals) = &mut self.portals {
            portals.sync(Portals::specs(&self.view), &self.sso_cache);
        }
    }

    pub(super) fn portal_news_arrived(&mut self, news: News) {
        match news {
            News::SignedIn { session, portal } => {
                // The SSO accounts of this portal that a check found signed out or refused
                // while the session was over are checked again: their verdict is stale.
                let stale: Vec<String> = self
                    .accounts
                    .iter()
                    .filter(|a| {
                        self.view
                            .get(&a.profile)
                            .and_then(|p| p.sso.as_ref())
                            .is_some_and(|sso| sso.session == session)
                            && (a.misconfigured.is_some() || a.invalid.is_some())
                    })
                    .map(|a| a.name.clone())
                    .collect();
                self.emit(EventKind::SignedIn { portal, session });
                for name in stale {
                    self.resolved.remove(&name);
                    self.start_validation(&name, None);
                }
                // Renewals that failed for want of a sign-in go again now.
                for pending in self.renewing.values_mut() {
                    if let Pending::Failed { retry_at, .. } = pending {
                        *retry_at = self.clock.now();
                    }
                }
                self.schedule_renewals();
            }
            News::SigninRequired {
                session,
                portal,
                reason,
            } => self.emit(EventKind::SigninRequired {
                portal,
                session,
                reason,
            }),
        }
    }

    /// How `account` renews itself, or why it does not.
    pub(super) fn renewal(&self, account: &cmdr_core::Account) -> Renewal {
        let name = &account.name;
        let Some(profile) = self.view.get(&account.profile) else {
            return Renewal::Cannot(format!("profile `{}` is missing", account.profile));
        };
        let Some(portals) = &self.portals else {
            return Renewal::Cannot("the daemon keeps no portals".into());
        };
        match profile.kind {
            ProfileKind::Sso => match &profile.sso {
                Some(sso) if !sso.own_endpoints => match portals.get(&sso.session) {
                    Some(keeper) => Renewal::Portal(keeper),
                    None => Renewal::Cannot(format!(
                        "sso-session {} has no sso_start_url or sso_region",
                        sso.session
                    )),
                },
                Some(_) => Renewal::Cannot(
                    "its profile names a [services] section: the AWS SDK's own provider gets its credentials".into(),
                ),
                None => Renewal::Cannot(
                    "its SSO profile has no sso_session (a legacy profile): the AWS SDK's own provider gets its credentials".into(),
                ),
            },
            ProfileKind::Session => {
                let role = portal_name(&profile.name).or_else(|| {
                    Some((account.account_id.clone()?, account.sso_role.clone()?))
                });
                // Without a portal nothing can renew it: say that first (most pasted
                // accounts have none), then what else is missing.
                let portal = account.portal(Some(profile));
                let Some((account_id, role)) = role.filter(|_| portal.is_some()) else {
                    return Renewal::Cannot(match portal {
                        None => format!(
                            "no portal known: `cmdrctl accounts edit {name} --portal URL --sso-region R` with its start URL and region (adds its sso-session; then `cmdrctl login {name}`)"
                        ),
                        Some(_) => format!(
                            "profile `{}` does not say which portal role it is: name it ACCOUNTID_ROLE as the portal does, or validate it (`cmdrctl validate {name}`: STS names its AWSReservedSSO role)",
                            profile.name
                        ),
                    });
                };
                let keeper = match portal {
                    None => {
                        return Renewal::Cannot(format!(
                            "no portal known: `cmdrctl accounts edit {name} --portal URL --sso-region R` with its start URL and region (adds its sso-session; then `cmdrctl login {name}`)"
                        ));
                    }
                    Some(url) => match portals.by_url(url) {
                        Some(keeper) => keeper,
                        None => {
                            return Renewal::Cannot(format!(
                                "no [sso-session] has the start URL {url}: `cmdrctl accounts edit {name} --portal {url} --sso-region R` adds one (or `cmdrctl login --portal {url} --sso-region R`, which also signs in)"
                            ));
                        }
                    },
                };
                if account.auto_renew == Some(false) {
                    return Renewal::Off {
                        keeper,
                        account_id,
                        role,
                    };
                }
                Renewal::Paste {
                    keeper,
                    account_id,
                    role,
                }
            }
            _ => Renewal::Cannot(format!(
                "a {} profile is not renewed through a portal",
                wire::profile_kind(profile.kind).label()
            )),
        }
    }

    /// Where an SSO profile's role credentials come from: its portal's keeper.
    pub(super) fn portal_route(&self, profile: Option<&Profile>) -> Option<crate::validate::Route> {
        let sso = profile?.sso.as_ref().filter(|s| !s.own_endpoints)?;
        let keeper = self.portals.as_ref()?.get(&sso.session)?;
        Some(crate::validate::Route {
            keeper,
            account_id: sso.account_id.clone(),
            role: sso.role_name.clone(),
        })
    }

    /// When each pasted account that renews itself is due, from its accepted token's end.
    pub(super) fn schedule_renewals(&mut self) {
        let names: Vec<String> = self.accounts.iter().map(|a| a.name.clone()).collect();
        self.renew_at.clear();
        for name in names {
            self.schedule_renewal(&name);
        }
    }

    pub(super) fn schedule_renewal(&mut self, name: &str) {
        self.renew_at.remove(name);
        let Ok(account) = self.accounts.get(name) else {
            self.renewing.remove(name);
            self.renewed.remove(name);
            return;
        };
        if !matches!(self.renewal(account), Renewal::Paste { .. }) {
            return;
        }
        let at = match self.renewing.get(name) {
            Some(Pending::InFlight | Pending::Written(_)) => return,
            Some(Pending::Failed { retry_at, .. }) => *retry_at,
            // The portal's "Option 2" block says nothing of its end, so its expiry is only
            // estimated (first seen + the default session length, 12 h) while the real one
            // may be an hour away: renew it now, and the written block carries the real end.
            None if account
                .accepted
                .expiry
                .as_ref()
                .is_some_and(|e| *e.source() == cmdr_core::ExpirySource::Estimated) =>
            {
                self.clock.now()
            }
            None => {
                let Some(end) = account.accepted.expiry.as_ref().and_then(|e| e.when()) else {
                    return;
                };
                // Never sooner than halfway through the token's life: a token shorter
                // than `renew_before` is not renewed the moment it arrives.
                let since = account.accepted.at.unwrap_or(end);
                let before = self
                    .settings
                    .renew_before
                    .min((end - since) / 2)
                    .max(chrono::Duration::zero());
                end - before
            }
        };
        self.renew_at.insert(name.to_owned(), at);
    }

    pub(super) fn next_renewal(&self) -> Option<DateTime<Utc>> {
        self.renew_at.values().min().copied()
    }

    /// Starts the renewals that are due.
    pub(super) fn renew_due(&mut self) {
        let now = self.now();
        let due: Vec<String> = self
            .renew_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.renew_at.remove(&name);
            self.start_renewal(&name, false);
        }
    }

    fn start_renewal(&mut self, name: &str, fresh: bool) {
        let Ok(account) = self.accounts.get(name) else {
            return;
        };
        let (keeper, account_id, role) = match self.renewal(account) {
            Renewal::Paste {
                keeper,
                account_id,
                role,
            } => (keeper, account_id, role),
            // Asked for (`cmdrctl renew`): also with auto-renew off.
            Renewal::Off {
                keeper,
                account_id,
                role,
            } if fresh => (keeper, account_id, role),
            _ => return,
        };
        tracing::info!(
            account = name,
            "renewing the account's token through its portal"
        );
        // A retry keeps its count of failures until it is done.
        if let Some(Pending::Failed { failures, .. }) = self.renewing.get(name) {
            self.renew_failures.insert(name.to_owned(), *failures);
        }
        self.renewing.insert(name.to_owned(), Pending::InFlight);
        let min_valid = if fresh {
            FRESH
        } else {
            self.settings.renew_before + chrono::Duration::seconds(30)
        };
        let account = name.to_owned();
        self.tasks.spawn(async move {
            let result = keeper
                .role_credentials_for(&account_id, &role, min_valid)
                .await
                .map_err(|f| f.to_string());
            Done::Fetched { account, result }
        });
    }

    /// The role credentials of a renewal arrived: what will be written is registered
    /// first, then written (`begin_write`).
    pub(super) fn finish_fetch(&mut self, name: &str, result: Result<RoleCredentials, String>) {
        if !matches!(self.renewing.get(name), Some(Pending::InFlight)) {
            return;
        }
        match result {
            // Nothing newer (the portal's session ended, only what is in use is cached):
            // written again, it would be "renewed" at once, and again.
            Ok(creds) if self.in_use(name, &creds) => self.renewal_failed(
                name,
                "the portal gave the credentials already in use, nothing newer".into(),
            ),
            Ok(creds) => match self.begin_write(name, creds) {
                Some(write) => {
                    self.tasks.spawn(write);
                }
                None => self.renewal_failed(name, "the account is gone".into()),
            },
            Err(why) => self.renewal_failed(name, why),
        }
    }

    /// Whether `creds` are the account's accepted token already.
    fn in_use(&self, name: &str, creds: &RoleCredentials) -> bool {
        let fingerprint = fingerprint_of(creds);
        self.accounts
            .get(name)
            .is_ok_and(|a| a.accepted.fingerprint.as_deref() == Some(fingerprint.as_str()))
    }

    /// Registers the fingerprint a renewal is about to write into the credentials file as
    /// the account's own renewal, then returns the write (paste's: locked,
    /// compare-and-swap, backup, mode kept) to run. Whatever order the watcher's delivery
    /// of the written file and the write's report then arrive in, the new token is the
    /// renewal: accepted with `token_renewed`, never offered with `token_changed`.
    pub(super) fn begin_write(
        &mut self,
        name: &str,
        creds: RoleCredentials,
    ) -> Option<impl Future<Output = Done> + Send + 'static> {
        let profile = self.accounts.get(name).ok()?.profile.clone();
        let fingerprint = fingerprint_of(&creds);
        let expires_at = creds.expires_at;
        self.renewing.insert(
            name.to_owned(),
            Pending::Written(Written {
                fingerprint,
                expires_at,
            }),
        );
        let credentials_file = self.settings.aws_credentials.clone();
        let data_dir = self.settings.data_dir.clone();
        let account = name.to_owned();
        Some(async move {
            let result = now::write(creds, &profile, credentials_file, data_dir).await;
            Done::Renewed { account, result }
        })
    }

    /// A renewal's write finished: the watcher may have brought the new file already (then
    /// the renewal is complete and this finds nothing to do).
    pub(super) fn finish_renewal(&mut self, name: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if let Some(Pending::Written(w)) = self.renewing.get(name) {
                    tracing::info!(account = name, expires_at = %w.expires_at, "renewed token written into the credentials file");
                }
                self.complete_renewals(&[]);
            }
            // Only while the write is still awaited: a file that shows the fingerprint
            // completed the renewal whatever the write then said.
            Err(why) if matches!(self.renewing.get(name), Some(Pending::Written(_))) => {
                self.renewal_failed(name, why);
            }
            Err(why) => {
                tracing::warn!(account = name, error = %why, "the renewal's write reported an error after the file showed the new token");
            }
        }
    }

    /// A renewal failed: it is retried after 1, 2, 4, … minutes; whoever asked is told.
    fn renewal_failed(&mut self, name: &str, why: String) {
        let failures = self.renew_failures.remove(name).unwrap_or(0) + 1;
        let delay = retry_delay(failures);
        tracing::warn!(account = name, error = %why, retry_in_min = delay.num_minutes(), "cannot renew the account's token");
        let retry_at = self.now() + delay;
        self.renewing
            .insert(name.to_owned(), Pending::Failed { retry_at, failures });
        // Its `expiring_soon`, if given, was no alarm since cmdrd was to renew it; now it
        // is one: given again (once, not at every retry), at the engine's next tick.
        if failures == 1 {
            self.timers.warn_again(name);
        }
        self.schedule_renewal(name);
        for reply in self.renew_waiters.remove(name).unwrap_or_default() {
            let _ = reply.send(Err(ErrorReply {
                code: ErrorCode::Internal,
                message: format!("cannot renew `{name}`: {why}"),
            }));
        }
    }

    /// Whether a `token_changed` of `account` to `fingerprint` is the renewal cmdrd wrote
    /// (then it is accepted at once, with `token_renewed`, not offered).
    pub(super) fn is_renewal(&self, account: &str, fingerprint: Option<&str>) -> bool {
        matches!(
            self.renewing.get(account),
            Some(Pending::Written(w)) if Some(w.fingerprint.as_str()) == fingerprint
        )
    }

    /// Accepts the renewals whose token the view now holds and says so; `accepted`: those
    /// the account's `auto` policy accepted already.
    pub(super) fn complete_renewals(&mut self, accepted: &[String]) {
        let done: Vec<(String, DateTime<Utc>)> = self
            .renewing
            .iter()
            .filter_map(|(name, pending)| {
                let Pending::Written(w) = pending else {
                    return None;
                };
                let account = self.accounts.get(name).ok()?;
                let profile = self.view.get(&account.profile)?;
                (profile.fingerprint.as_deref() == Some(w.fingerprint.as_str()))
                    .then(|| (name.clone(), w.expires_at))
            })
            .collect();
        for (name, expires_at) in done {
            self.renewing.remove(&name);
            if !accepted.contains(&name)
                && let Err(err) = self.accept(&name)
            {
                tracing::warn!(account = %name, error = %err.message, "cannot accept the renewed token");
                continue;
            }
            let profile = self
                .accounts
                .get(&name)
                .map(|a| a.profile.clone())
                .unwrap_or_default();
            self.emit(EventKind::TokenRenewed {
                account: name.clone(),
                profile,
                expires_at: Some(timestamp(expires_at)),
            });
            self.renew_failures.remove(&name);
            self.renewed.insert(name.clone(), (self.now(), expires_at));
            self.schedule_renewal(&name);
            self.answer_renew_waiters(&name, Ok(expires_at));
        }
    }
}

mod now;
mod said;
#[cfg(test)]
mod tests;
