//! Validation with STS and hand-out: one validation and one resolution in flight per
//! account, with the clients waiting for each.

use super::*;

impl Engine {
    /// Starts an STS validation of the account's current credentials, unless one is
    /// already running for it.
    pub(super) fn start_validation(
        &mut self,
        name: &str,
        waiter: Option<oneshot::Sender<Outcome>>,
    ) {
        let Ok(account) = self.accounts.get(name) else {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Outcome::Err(error_reply(
                    &cmdr_core::AccountError::NotFound(name.to_owned()),
                )));
            }
            return;
        };
        let in_flight = self.validations.contains_key(name);
        let waiters = self.validations.entry(name.to_owned()).or_default();
        waiters.extend(waiter);
        if in_flight {
            return;
        }
        let job = self.job(account);
        let account = name.to_owned();
        let fingerprint = job.fingerprint.clone();
        self.tasks.spawn(async move {
            let result = validate::validate(job).await;
            Command::Validated {
                account,
                fingerprint,
                result,
            }
        });
    }

    /// What an STS call or a resolution for `account` needs: the file's current token.
    pub(super) fn job(&self, account: &cmdr_core::Account) -> Job {
        let profile = self.view.get(&account.profile);
        Job {
            profile: account.profile.clone(),
            region: account.region.clone(),
            endpoint: account.target.endpoint().map(str::to_owned),
            credentials: profile.and_then(|p| p.credentials.as_deref().cloned()),
            fingerprint: profile.and_then(|p| p.fingerprint.clone()),
            config_file: self.settings.aws_config.clone(),
            credentials_file: self.settings.aws_credentials.clone(),
            timeout: self.settings.validate_timeout,
        }
    }

    pub(super) fn finish_validation(
        &mut self,
        name: &str,
        fingerprint: Option<&str>,
        result: Result<Identity, Failure>,
    ) {
        let waiters = self.validations.remove(name).unwrap_or_default();
        let profile = match self.accounts.get(name) {
            Ok(a) => a.profile.clone(),
            Err(err) => {
                for waiter in waiters {
                    let _ = waiter.send(Outcome::Err(error_reply(&err)));
                }
                return;
            }
        };
        let verdict = match &result {
            Ok(identity) => cmdr_core::Verdict::Confirmed {
                account_id: identity.account_id.clone(),
            },
            Err(failure) => failure.verdict(),
        };
        let check = self
            .accounts
            .record_validation(name, fingerprint, &verdict)
            .ok()
            .flatten();
        let outcome = match result {
            Ok(identity) => {
                if let Some(at) = identity.expires_at
                    && self
                        .view
                        .get(&profile)
                        .is_some_and(|p| p.kind == ProfileKind::CredentialProcess)
                {
                    self.process_expiry.insert(profile.clone(), at);
                    let expiry_of = expiry_of!(self);
                    self.accounts.refresh_accepted(&self.view, &expiry_of);
                }
                self.emit(EventKind::Validated {
                    account: name.to_owned(),
                    profile: profile.clone(),
                    account_id: identity.account_id.clone(),
                    arn: identity.arn.clone(),
                });
                if let Some(IdentityCheck::Changed { old }) = check {
                    tracing::warn!(account = name, old_account_id = %old, new_account_id = %identity.account_id, "a different AWS account was pasted into the profile");
                    self.emit(EventKind::IdentityChanged {
                        account: name.to_owned(),
                        profile,
                        old_account_id: old,
                        new_account_id: identity.account_id.clone(),
                    });
                }
                Outcome::Ok(Response::Validated(cmdr_proto::Identity {
                    account_id: identity.account_id,
                    arn: identity.arn,
                    user_id: identity.user_id,
                }))
            }
            Err(failure) => {
                let error = failure.to_string();
                tracing::info!(account = name, %error, "validation failed");
                self.emit(EventKind::ValidationFailed {
                    account: name.to_owned(),
                    profile,
                    error: error.clone(),
                });
                Outcome::Err(ErrorReply {
                    code: ErrorCode::ValidationFailed,
                    message: format!("validation of `{name}` failed: {error}"),
                })
            }
        };
        self.persist(name);
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
    /// Hands out an account's accepted credentials, refused in states where they would be
    /// the wrong ones unless `force`; those of SDK-provider profiles are resolved (once per
    /// account at a time) and cached until shortly before they end. Never logged.
    pub(super) fn serve(&mut self, name: &str, force: bool, waiter: Waiter) {
        let now = self.now();
        let account = match self.accounts.get(name) {
            Ok(a) => a,
            Err(err) => return waiter.refuse(error_reply(&err)),
        };
        let profile = self.view.get(&account.profile);
        let status = account.status(profile, now, self.settings.warn_before);
        let key = serve::CacheKey {
            fingerprint: account.accepted.fingerprint.clone(),
            digest: profile.map_or(0, |p| p.digest),
        };
        let cached = self.resolved.get(name).filter(|c| c.fresh(&key, now));
        // While the file holds a newer token, tools keep getting the accepted one if it is
        // still at hand (not after a restart, nor for a profile resolved from files that
        // now hold the new token).
        let at_hand = account.accepted.credentials.is_some() || cached.is_some();
        if let Some(why) = cmdr_core::handout::refusal(account, &status, at_hand, force) {
            return waiter.refuse(ErrorReply {
                code: serve::refusal_code(status.state),
                message: why,
            });
        }
        let expiry_source = wire::expiry_source(account.accepted.expiry.as_ref());
        let served = serve::Served {
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
            return waiter.answer(&served, credentials, expires_at.map(timestamp));
        }
        let resolvable = profile.is_some_and(|p| serve::resolvable(p.kind));
        if !resolvable {
            let kind = profile.map_or("missing", |p| wire::profile_kind(p.kind).label());
            return waiter.refuse(ErrorReply {
                code: if force {
                    ErrorCode::NotAccepted
                } else {
                    ErrorCode::Misconfigured
                },
                message: format!(
                    "no accepted keys for `{name}`: profile `{}` (kind {kind}) has no access keys in the files, or its accepted token is no longer there; run `cmdrctl accept {name}` once it has",
                    account.profile
                ),
            });
        }
        if let Some(cached) = cached {
            tracing::debug!(
                account = name,
                "handed out resolved credentials to a client"
            );
            return waiter.answer(
                &served,
                &cached.credentials,
                cached.expires_at.map(timestamp),
            );
        }
        let in_flight = self.resolving.contains_key(name);
        self.resolving
            .entry(name.to_owned())
            .or_default()
            .push(waiter.with(served));
        if in_flight {
            return;
        }
        let job = self.job(account);
        let account = name.to_owned();
        self.tasks.spawn(async move {
            let result = validate::resolve(&job).await;
            Command::Resolved {
                account,
                key,
                result,
            }
        });
    }

    pub(super) fn finish_resolution(
        &mut self,
        name: &str,
        key: serve::CacheKey,
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
                for waiter in waiters {
                    waiter.answer_pending(&cached.credentials, cached.expires_at.map(timestamp));
                }
                self.resolved.insert(name.to_owned(), cached);
            }
            Err(failure) => {
                let code = match failure {
                    Failure::Unreachable(_) => ErrorCode::Internal,
                    _ => ErrorCode::Misconfigured,
                };
                let message = format!(
                    "cannot get credentials for `{name}` from its profile: {failure}{}",
                    match self
                        .accounts
                        .get(name)
                        .ok()
                        .and_then(|a| self.view.get(&a.profile))
                        .map(|p| p.kind)
                    {
                        Some(ProfileKind::Sso) =>
                            format!(" (sign in again: `cmdrctl renew {name}` or `aws sso login`)"),
                        _ => String::new(),
                    }
                );
                for waiter in waiters {
                    waiter.refuse(ErrorReply {
                        code,
                        message: message.clone(),
                    });
                }
            }
        }
    }
}
