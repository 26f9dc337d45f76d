//! The operations clients ask for ([`Command`]): dispatch, account operations and what
//! they answer.

use super::*;

/// How long a request that binds a profile waits for the files to be read: longer than
/// the watcher holds a maybe half-written file (`watch::HALF_WRITTEN_MAX`).
const FILES_WAIT: Duration = Duration::from_secs(3);

/// A request that binds a profile whose secrets the view does not keep (only bound
/// profiles' are), waiting for the fresh read of the files it asked the watcher for
/// ([`Reread::fresh`]); the next snapshot keeps `profile`'s secrets too.
pub(super) struct Awaiting {
    asked: u64,
    pub(super) profile: String,
    command: Command,
    pub(super) until: tokio::time::Instant,
}

/// The profile a command binds an account to, if any.
fn binds(command: &Command) -> Option<&str> {
    match command {
        Command::Add { account, .. } => Some(&account.profile),
        Command::Edit { patch, .. } => patch.profile.as_deref(),
        _ => None,
    }
}

impl Engine {
    /// Runs a client's command, unless it binds a profile whose secrets (or, for a profile
    /// the SDK resolves, the files' text) must first be read from the files, or one the view
    /// does not have yet: then it waits for the watcher's fresh read (`resume`), so that
    /// `accounts add X --profile P` followed at once by `exec X` hands out P's keys (or
    /// what the SDK resolves for P from the files as read), and `paste` followed at once by
    /// `accounts add` finds the pasted profile (before the watcher's own read of that change
    /// has come).
    pub(super) fn handle(&mut self, command: Command) {
        if let Some(profile) = binds(&command)
            && (self.lacks_secrets(profile)
                || self.lacks_sdk_files(profile)
                || !self.view.profiles.contains_key(profile))
            && let Some(asked) = self.reread.fresh()
        {
            self.awaiting = Some(Awaiting {
                asked,
                profile: profile.to_owned(),
                command,
                until: tokio::time::Instant::now() + FILES_WAIT,
            });
            return;
        }
        self.run_command(command);
    }

    /// A snapshot answering the fresh reads up to `answers` was taken in: the waiting
    /// command runs now (if the files still hold the token the view showed, its secrets
    /// are in the view; if not, the account gets its keys from the next view that has
    /// them, `Accounts::refresh_accepted`).
    pub(super) fn resume(&mut self, answers: u64) {
        if self.awaiting.as_ref().is_some_and(|a| a.asked <= answers)
            && let Some(awaiting) = self.awaiting.take()
        {
            // Not a client's turn of the loop (`touched` stays unset): the full tick after
            // the snapshot covers the accounts this command changes.
            self.run_command(awaiting.command);
        }
    }

    /// One page of accounts after the cursor `after`, each as `item` describes it.
    fn accounts_page<T: serde::Serialize>(
        &self,
        after: Option<&str>,
        limit: u32,
        item: impl Fn(&Self, &cmdr_core::Account) -> T,
        name: impl Fn(&T) -> &str,
    ) -> Page<T> {
        Page::fill(
            self.accounts.iter_after(after).map(|a| item(self, a)),
            limit,
            name,
        )
    }

    fn run_command(&mut self, command: Command) {
        match command {
            Command::Validate { name, reply } => self.start_validation(&name, Some(reply)),
            Command::HandOut { name, force, reply } => {
                self.hand_out(&name, force, Box::new(move |r| answer(reply, r)));
            }
            Command::Status(reply) => answer(reply, Ok(self.status())),
            Command::Profiles(reply) => answer(
                reply,
                Ok(self
                    .view
                    .profiles
                    .values()
                    .map(|p| wire::profile_info(p, self.expiry(p)))
                    .collect()),
            ),
            Command::Accounts(reply) => answer(
                reply,
                Ok(self.accounts.iter().map(|a| self.account_info(a)).collect()),
            ),
            Command::ProfilesPage {
                after,
                limit,
                reply,
            } => answer(
                reply,
                Ok(Page::fill(
                    cmdr_core::values_after(&self.view.profiles, after.as_deref())
                        .map(|p| wire::profile_info(p, self.expiry(p))),
                    limit,
                    |p| &p.name,
                )),
            ),
            Command::AccountsPage {
                after,
                limit,
                reply,
            } => answer(
                reply,
                Ok(self.accounts_page(after.as_deref(), limit, Self::account_info, |a| &a.name)),
            ),
            Command::Show { name, reply } => answer(reply, self.show(&name)),
            Command::Detail { name, reply } => answer(reply, self.detail(&name)),
            Command::Add { account, reply } => {
                let added = self.add(account);
                answer(reply, added);
            }
            Command::Edit { name, patch, reply } => {
                let edited = self.edit(&name, patch);
                answer(reply, edited);
            }
            Command::Remove { name, reply } => {
                let removed = self.remove(&name);
                answer(reply, removed);
            }
            Command::Accept { name, reply } => {
                let accepted = self.accept(&name).and_then(|changed| {
                    Ok(Accepted {
                        account: self.show(&name)?,
                        changed,
                    })
                });
                answer(reply, accepted);
            }
            Command::ChildEnv { name, reply } => {
                let paths = self.child_paths(&name);
                self.child_env(&name, paths, reply);
            }
            Command::ContainerEnv { name, reply } => {
                let paths = self.container_paths(&name);
                self.child_env(&name, paths, reply);
            }
            Command::RenewalsPage {
                after,
                limit,
                reply,
            } => answer(
                reply,
                Ok(self.accounts_page(after.as_deref(), limit, Self::renewal_plan, |f| &f.account)),
            ),
            Command::RenewNow { name, reply } => self.renew_now(&name, reply),
        }
    }

    /// How `account` renews and when, as `accounts list --json` shows it.
    fn renewal_plan(&self, account: &cmdr_core::Account) -> cmdr_proto::RenewalPlan {
        let renewal = self.renewal(account);
        let info = renewal.keeper().map(|k| k.info());
        cmdr_proto::RenewalPlan {
            account: account.name.clone(),
            auto_renew: renewal.renews(),
            session: info.as_ref().map(|i| i.session.clone()),
            signin_expires_at: info.and_then(signed_in_until),
            renews_at: self.renews_at(account).map(timestamp),
        }
    }

    /// A child's (or container's) environment: where it finds its credentials, after the
    /// hand-out's checks.
    fn child_env(
        &mut self,
        name: &str,
        paths: Result<crate::handout::ChildPaths, ErrorReply>,
        reply: Reply<ChildEnv>,
    ) {
        match paths {
            Ok(paths) => self.hand_out(
                name,
                false,
                Box::new(move |r| answer(reply, r.map(|handout| ChildEnv { paths, handout }))),
            ),
            Err(err) => answer(reply, Err(err)),
        }
    }

    pub(super) fn add(&mut self, new: NewAccount) -> Result<AccountInfo, ErrorReply> {
        let name = new.name.clone();
        let now = self.now();
        let added = self.mutate(&name, |accounts, view, expiry| {
            accounts
                .add(new, view, expiry, now)
                .map_err(|e| error_reply(&e))
        });
        // Adding accepts the token in the file: learn whose it is.
        self.revalidate.clear(&name);
        if added.is_ok() && self.settings.validate_on_change {
            self.start_validation(&name, None);
        }
        if added.is_ok()
            && let Some(endpoint) = &self.endpoint
            && let Err(err) = endpoint.tokens.issue(&name)
        {
            tracing::warn!(account = %name, error = %err, "cannot write the account's endpoint token");
        }
        added.and_then(|_| self.show(&name))
    }

    fn edit(&mut self, name: &str, patch: AccountPatch) -> Result<AccountInfo, ErrorReply> {
        // Another profile, target or region may answer otherwise: validate again.
        let revalidate =
            patch.profile.is_some() || patch.target.is_some() || patch.region.is_some();
        let now = self.now();
        let edited = self.mutate(name, |accounts, view, expiry| {
            accounts
                .edit(name, patch, view, expiry, now)
                .map_err(|e| error_reply(&e))
        });
        self.forget_sdk_files();
        if edited.as_ref().is_ok_and(|changes| !changes.is_empty()) && revalidate {
            self.resolved.remove(name);
            self.revalidate.reset(name);
            if self.settings.validate_on_change {
                self.start_validation(name, None);
            }
        }
        edited.and_then(|_| self.show(name))
    }

    fn remove(&mut self, name: &str) -> Result<(), ErrorReply> {
        self.revalidate.clear(name);
        let removed = self.mutate(name, |accounts, _, _| {
            accounts.remove(name).map_err(|e| error_reply(&e))
        });
        self.forget_sdk_files();
        if removed.is_ok()
            && let Some(endpoint) = &self.endpoint
        {
            endpoint.tokens.revoke(name);
        }
        removed.map(|_| ())
    }

    /// `accept`: whether the account took anything it did not have (the rule is
    /// cmdr-core's `Accounts::accept`).
    pub(super) fn accept(&mut self, name: &str) -> Result<bool, ErrorReply> {
        let now = self.now();
        let accepted = self.mutate(name, |accounts, view, expiry| {
            accounts
                .accept(name, view, expiry, now)
                .map_err(|e| error_reply(&e))
        });
        self.resolved.remove(name);
        self.revalidate.reset(name);
        if accepted.is_ok() {
            // Past news once the person has acted on it.
            self.changes_while_down
                .retain(|(account, _)| account.as_deref() != Some(name));
        }
        if accepted.is_ok() && self.settings.validate_on_change {
            self.start_validation(name, None);
        }
        accepted.map(|changes| !changes.is_empty())
    }

    /// `accounts show` with the reason for the state: a profile that looks renamed is
    /// named, with the edit that follows it.
    fn detail(&self, name: &str) -> Result<AccountDetail, ErrorReply> {
        let account = self.accounts.get(name).map_err(|e| error_reply(&e))?;
        let status = self.account_status(account, self.now());
        // With the command that fixes it, as a refusal to hand out says it.
        let mut reason = status
            .refusal(&account.name, account.on_change)
            .or_else(|| status.reason.clone());
        if status.state == cmdr_core::AccountState::Missing
            && let Some(new) = account.renamed_to(&self.view)
        {
            reason = Some(format!(
                "profile `{}` of account `{name}` is gone, and profile `{new}` holds its accepted token: if it was renamed, run `cmdrctl accounts edit {name} --profile {new}`",
                account.profile
            ));
        }
        let renewal = self.renewal(account);
        Ok(AccountDetail {
            info: self.account_info(account),
            reason,
            renewal: Some(renewal.describe(
                name,
                self.settings.renew_before,
                self.renew_at.get(name).copied(),
            )),
            signin_expires_at: renewal.keeper().and_then(|k| signed_in_until(k.info())),
            auto_renew: renewal.renews(),
        })
    }

    /// Where a process started for `name` finds its credentials: the account's own
    /// token (issued now if it has none) and the AWS files without credentials.
    fn child_paths(&mut self, name: &str) -> Result<crate::handout::ChildPaths, ErrorReply> {
        self.accounts.get(name).map_err(|e| error_reply(&e))?;
        let (Some(endpoint), Some(files)) = (&self.endpoint, &self.child_files) else {
            return Err(bad_request(
                "the credentials endpoint is disabled (endpoint.enabled in cmdr's config.toml): use --static",
            ));
        };
        let token_file = endpoint.tokens.issue(name).map_err(|err| ErrorReply {
            code: ErrorCode::Internal,
            message: format!("cannot write the endpoint token of `{name}`: {err}"),
        })?;
        Ok(crate::handout::ChildPaths {
            url: crate::endpoint::account_url(&endpoint.info.url, name),
            token_file,
            config_file: files.path(FileKind::Config),
            credentials_file: files.path(FileKind::Credentials),
            boto_config: files.boto_path(),
            user_config_file: self.settings.aws_config.clone(),
            user_credentials_file: self.settings.aws_credentials.clone(),
        })
    }

    /// Where a container on the `cmdr` network finds its credentials: the gateway URL and
    /// the account's token in the directory its containers mount (`endpoint/container.rs`).
    fn container_paths(&mut self, name: &str) -> Result<crate::handout::ChildPaths, ErrorReply> {
        let mut paths = self.child_paths(name)?;
        let Some(endpoint) = &self.endpoint else {
            return Err(bad_request("the credentials endpoint is disabled"));
        };
        let Some(gateway) = &endpoint.info.gateway_url else {
            return Err(ErrorReply {
                code: ErrorCode::Internal,
                message: format!(
                    "cmdrd does not listen on {} for containers: {}",
                    crate::endpoint::container::GATEWAY,
                    if cfg!(target_os = "linux") {
                        "its port there was taken at start (see cmdrd's log); restart cmdrd"
                    } else {
                        "containers are served on Linux only (Docker Desktop: see README, Containers)"
                    }
                ),
            });
        };
        paths.url = crate::endpoint::account_url(gateway, name);
        paths.token_file = endpoint
            .tokens
            .issue_container(name)
            .map_err(|err| ErrorReply {
                code: ErrorCode::Internal,
                message: format!("cannot write the container token of `{name}`: {err}"),
            })?;
        Ok(paths)
    }

    pub(super) fn show(&self, name: &str) -> Result<AccountInfo, ErrorReply> {
        self.accounts
            .get(name)
            .map(|a| self.account_info(a))
            .map_err(|e| error_reply(&e))
    }
}

/// Sends an answer; a client that went away meanwhile does not need it.
pub(super) fn answer<T>(reply: Reply<T>, result: Result<T, ErrorReply>) {
    let _ = reply.send(result);
}

/// When the portal's sign-in ends, while it is signed in (not after a refused refresh).
fn signed_in_until(info: cmdr_proto::PortalInfo) -> Option<String> {
    (info.state == "signed_in")
        .then_some(info.signed_in_until)
        .flatten()
}
