//! Hand-out: an account's accepted credentials, or those the SDK's providers resolve for
//! it (one resolution in flight per account, with the clients waiting for it).

use super::*;
use cmdr_core::AccountState;

/// Where a hand-out goes: to the client that asked, in the shape it asked for.
pub(super) type Deliver = Box<dyn FnOnce(Result<HandOut, ErrorReply>) + Send>;

impl Engine {
    /// Hands out an account's accepted credentials, refused in states where they would be
    /// the wrong ones unless `force`; those of SDK-provider profiles are resolved (once per
    /// account at a time) and cached until shortly before they end. Never logged.
    pub(super) fn hand_out(&mut self, name: &str, force: bool, deliver: Deliver) {
        let now = self.now();
        let account = match self.accounts.get(name) {
            Ok(a) => a,
            Err(err) => return deliver(Err(error_reply(&err))),
        };
        let profile = self.view.get(&account.profile);
        let status = self.account_status(account, now);
        let key = crate::handout::CacheKey {
            fingerprint: account.accepted.fingerprint.clone(),
            digest: profile.map_or(0, |p| p.digest),
        };
        let cached = self.resolved.get(name).filter(|c| c.fresh(&key, now));
        // While the file holds a newer token, tools keep getting the accepted one if it is
        // still at hand (not after a restart, nor for a profile resolved from files that
        // now hold the new token).
        let at_hand = account.accepted.credentials.is_some() || cached.is_some();
        if let Some(why) = cmdr_core::handout::refusal(account, &status, at_hand, force) {
            // Ended while its portal needs a sign-in: the sign-in is the fix, not a paste.
            let message = match (status.state, self.signin_reason(account)) {
                (AccountState::Expired, Some(signin)) => format!(
                    "{}; {signin}",
                    status.reason.as_deref().unwrap_or("its credentials ended")
                ),
                _ => why,
            };
            return deliver(Err(ErrorReply {
                code: crate::handout::refusal_code(status.state),
                message,
            }));
        }
        let expiry_source = wire::expiry_source(account.accepted.expiry.as_ref());
        let grant = Grant {
            account: name.to_owned(),
            profile: account.profile.clone(),
            region: account.region.clone(),
            endpoint: account.target.endpoint().map(str::to_owned),
            account_id: account.account_id.clone(),
            expiry_source,
        };
        if let Some(credentials) = &account.accepted.credentials {
            let expires_at = account.accepted.expiry.as_ref().and_then(|e| e.when());
            tracing::debug!(account = name, "handed out credentials to a client");
            return deliver(Ok(HandOut {
                grant,
                credentials: credentials.clone(),
                expires_at,
            }));
        }
        let resolvable = profile.is_some_and(|p| crate::handout::resolvable(p.kind));
        if !resolvable {
            let kind = profile.map_or("missing", |p| wire::profile_kind(p.kind).label());
            return deliver(Err(ErrorReply {
                code: if force {
                    ErrorCode::NotAccepted
                } else {
                    ErrorCode::Misconfigured
                },
                message: format!(
                    "no accepted keys for `{name}`: profile `{}` (kind {kind}) has no access keys in the files, or its accepted token is no longer there; run `cmdrctl accept {name}` once it has",
                    account.profile
                ),
            }));
        }
        if let Some(cached) = cached {
            tracing::debug!(
                account = name,
                "handed out resolved credentials to a client"
            );
            return deliver(Ok(HandOut {
                grant,
                credentials: cached.credentials.clone(),
                expires_at: cached.expires_at,
            }));
        }
        let in_flight = self.resolving.contains_key(name);
        self.resolving
            .entry(name.to_owned())
            .or_default()
            .push((deliver, grant));
        if in_flight {
            return;
        }
        let job = self.job(account);
        let account = name.to_owned();
        self.tasks.spawn(async move {
            let result = validate::resolve(&job).await;
            Done::Resolved {
                account,
                key,
                result,
            }
        });
    }

    pub(super) fn finish_resolution(
        &mut self,
        name: &str,
        key: crate::handout::CacheKey,
        result: Result<Resolved, Failure>,
    ) {
        let waiters = self.resolving.remove(name).unwrap_or_default();
        match result {
            Ok(resolved) => {
                let cached = Cached {
                    key,
                    credentials: resolved.credentials,
                    expires_at: resolved.expires_at,
                    resolved_at: self.now(),
                };
                for (deliver, grant) in waiters {
                    deliver(Ok(HandOut {
                        grant,
                        credentials: cached.credentials.clone(),
                        expires_at: cached.expires_at,
                    }));
                }
                self.resolved.insert(name.to_owned(), cached);
            }
            Err(failure) => {
                let code = match failure {
                    Failure::Unreachable(_) => ErrorCode::Internal,
                    _ => ErrorCode::Misconfigured,
                };
                let signin = self
                    .accounts
                    .get(name)
                    .ok()
                    .and_then(|a| self.signin_reason(a));
                let message = signin.unwrap_or_else(|| {
                    format!(
                        "cannot get credentials for `{name}` from its profile: {failure}{}",
                        match self
                            .accounts
                            .get(name)
                            .ok()
                            .and_then(|a| self.view.get(&a.profile))
                            .map(|p| p.kind)
                        {
                            Some(ProfileKind::Sso) => format!(
                                " (sign in again: `cmdrctl renew {name}` or `aws sso login`)"
                            ),
                            _ => String::new(),
                        }
                    )
                });
                for (deliver, _) in waiters {
                    deliver(Err(ErrorReply {
                        code,
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}
