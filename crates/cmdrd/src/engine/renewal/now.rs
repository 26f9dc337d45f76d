//! `cmdrctl renew NAME` (`Request::RenewNow`) and the write of a renewal's block.

use super::*;

/// A renewal this recent answers a `renew` request.
const JUST_RENEWED: chrono::Duration = chrono::Duration::seconds(30);

impl Engine {
    /// `cmdrctl renew NAME` (`Request::RenewNow`): a pasted account is renewed now (also
    /// with auto-renew off), written and accepted; an SSO account's role credentials are
    /// fetched anew through its keeper. Answered when done.
    pub(in crate::engine) fn renew_now(&mut self, name: &str, reply: Reply<RenewedNow>) {
        let account = match self.accounts.get(name) {
            Ok(account) => account,
            Err(err) => {
                let _ = reply.send(Err(error_reply(&err)));
                return;
            }
        };
        match self.renewal(account) {
            Renewal::Paste { .. } | Renewal::Off { .. } => {
                self.renew_waiters
                    .entry(name.to_owned())
                    .or_default()
                    .push(reply);
                // Renewed moments ago (by the sign-in `renew` just did, which starts the
                // renewals that had failed): that one is the answer, not a second one
                // (walkthrough of 2026-12-06: two renewals, two writes, two events).
                let now = self.now();
                if let Some((_, expires_at)) = self
                    .renewed
                    .get(name)
                    .filter(|(when, _)| now - *when < JUST_RENEWED)
                    .copied()
                {
                    self.answer_renew_waiters(name, Ok(expires_at));
                    return;
                }
                if !matches!(
                    self.renewing.get(name),
                    Some(Pending::InFlight | Pending::Written(_))
                ) {
                    // A failed renewal's count stays (`start_renewal` keeps it): a failure
                    // now is not the first, and gives no second alarm.
                    self.renew_at.remove(name);
                    self.start_renewal(name, true);
                }
            }
            Renewal::Portal(keeper) => {
                let Some(route) = self.portal_route(self.view.get(&account.profile)) else {
                    let _ =
                        reply.send(Err(bad_request("the account's profile has no portal role")));
                    return;
                };
                self.renew_waiters
                    .entry(name.to_owned())
                    .or_default()
                    .push(reply);
                let account = name.to_owned();
                self.tasks.spawn(async move {
                    let result = keeper
                        .role_credentials_for(&route.account_id, &route.role, FRESH)
                        .await
                        .map(|c| c.expires_at)
                        .map_err(|f| f.to_string());
                    Done::Refetched { account, result }
                });
            }
            Renewal::Cannot(why) => {
                let _ = reply.send(Err(ErrorReply {
                    code: ErrorCode::BadRequest,
                    message: format!("account `{name}` does not renew through a portal: {why}"),
                }));
            }
        }
    }

    /// An SSO account's role credentials fetched anew: the next hand-out resolves them
    /// through the keeper (which holds the new ones).
    pub(in crate::engine) fn finish_refetch(
        &mut self,
        name: &str,
        result: Result<DateTime<Utc>, String>,
    ) {
        if result.is_ok() {
            self.resolved.remove(name);
            // Asked for: the sign-in it took (a new SSO fingerprint: this portal, account
            // and role now signed in) is the token the person wants used.
            let now = self.now();
            let changed = self.accounts.get(name).is_ok_and(|a| {
                self.account_status(a, now).state == cmdr_core::AccountState::Changed
            });
            if changed && let Err(err) = self.accept(name) {
                tracing::warn!(account = name, error = %err.message, "cannot accept the renewed sign-in");
            }
            // A verdict from while the sign-in was over is stale now: check again.
            let stale = self
                .accounts
                .get(name)
                .is_ok_and(|a| a.misconfigured.is_some() || a.invalid.is_some());
            if stale {
                self.start_validation(name, None);
            }
        }
        self.answer_renew_waiters(name, result);
    }

    pub(super) fn answer_renew_waiters(
        &mut self,
        name: &str,
        result: Result<DateTime<Utc>, String>,
    ) {
        let waiters = self.renew_waiters.remove(name).unwrap_or_default();
        if waiters.is_empty() {
            return;
        }
        let answer = match result {
            Ok(at) => self.show(name).map(|account| RenewedNow {
                account,
                expires_at: Some(at),
            }),
            Err(why) => Err(ErrorReply {
                code: ErrorCode::Internal,
                message: format!("cannot renew `{name}`: {why}"),
            }),
        };
        for reply in waiters {
            let _ = reply.send(answer.clone());
        }
    }
}

/// Writes a renewal's role credentials into the credentials file as `profile` (paste's
/// write: locked, compare-and-swap, backup, mode kept).
pub(super) async fn write(
    creds: RoleCredentials,
    profile: &str,
    credentials_file: std::path::PathBuf,
    data_dir: std::path::PathBuf,
) -> Result<(), String> {
    let expires_at = creds.expires_at;
    let block = cmdr_core::paste::Block {
        profile: None,
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: creds.secret_access_key.clone(),
        session_token: Some(creds.session_token.clone()),
        expires: Some(expires_at),
    };
    let profile = profile.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        let path = cmdr_config::paste::resolve_symlinks(&credentials_file)?;
        let expires = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        cmdr_config::paste::write(&path, &data_dir, &profile, &block, Some(&expires))
    })
    .await
    .map_err(|e| format!("the write failed: {e}"))?;
    written.map(|_| ()).map_err(|e| format!("{e:#}"))
}
