//! Validation with STS: one validation in flight per account, with the clients waiting
//! for it.

use super::*;

impl Engine {
    /// Starts an STS validation of the account's current credentials, unless one is
    /// already running for it.
    pub(super) fn start_validation(&mut self, name: &str, waiter: Option<Reply<Identity>>) {
        let Ok(account) = self.accounts.get(name) else {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(error_reply(&cmdr_core::AccountError::NotFound(
                    name.to_owned(),
                ))));
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
            Done::Validated {
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
            files: self.sdk_files.clone(),
            unresolvable: profile
                .filter(|p| p.credentials.is_none() && !crate::handout::resolvable(p.kind))
                .and_then(|p| cmdr_core::account::profile_problem(p, &account.name)),
            timeout: self.settings.validate_timeout,
            portal: self.portal_route(profile),
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
                    let _ = waiter.send(Err(error_reply(&err)));
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
                // The role a pasted portal token belongs to, for renewing it.
                if !matches!(check, Some(IdentityCheck::Changed { .. })) {
                    let role = renewal::reserved_sso_role(&identity.arn);
                    if role.is_some() {
                        self.accounts.set_sso_role(name, role);
                    }
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
                Ok(identity)
            }
            Err(failure) => {
                let error = failure.to_string();
                tracing::info!(account = name, %error, "validation failed");
                self.emit(EventKind::ValidationFailed {
                    account: name.to_owned(),
                    profile,
                    error: error.clone(),
                });
                Err(ErrorReply {
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
}
