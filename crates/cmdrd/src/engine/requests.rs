//! Client requests: dispatch, account operations and what they answer.

use super::*;

impl Engine {
    pub(super) fn handle(&mut self, request: Request, reply: oneshot::Sender<Outcome>) {
        let result = match request {
            Request::Validate { name } => return self.start_validation(&name, Some(reply)),
            Request::Status => Ok(Response::Status(self.status())),
            Request::Profiles => Ok(Response::Profiles(
                self.view
                    .profiles
                    .values()
                    .map(|p| wire::profile_info(p, self.expiry(p)))
                    .collect(),
            )),
            Request::ListAccounts => Ok(Response::Accounts(
                self.accounts.iter().map(|a| self.account_info(a)).collect(),
            )),
            Request::ProfilesPage(page) => Ok(Response::ProfilesPage(Page::fill(
                cmdr_core::values_after(&self.view.profiles, page.after.as_deref())
                    .map(|p| wire::profile_info(p, self.expiry(p))),
                page.limit,
                |p| &p.name,
            ))),
            Request::AccountsPage(page) => Ok(Response::AccountsPage(Page::fill(
                self.accounts
                    .iter_after(page.after.as_deref())
                    .map(|a| self.account_info(a)),
                page.limit,
                |a| &a.name,
            ))),
            Request::ShowAccount { name } => self.show(&name),
            Request::AddAccount(spec) => {
                let name = spec.name.clone();
                self.keep_secrets_of(&spec.profile);
                let parsed = target_from_spec(&spec.target).and_then(|target| {
                    Ok(NewAccount {
                        name: spec.name,
                        profile: spec.profile,
                        region: spec.region,
                        target,
                        on_change: on_change_from(spec.on_change)?,
                        portal: spec.portal,
                    })
                });
                let added = parsed.and_then(|new| {
                    let now = self.now();
                    self.mutate(&name, |accounts, view, expiry| {
                        accounts
                            .add(new, view, expiry, now)
                            .map_err(|e| error_reply(&e))
                    })
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
            Request::EditAccount { name, edit } => {
                // Another profile, target or region may answer otherwise: validate again.
                let revalidate = edit.profile.is_some()
                    || edit.target.is_some()
                    || edit.region.is_some()
                    || edit.clear_region;
                if let Some(profile) = &edit.profile {
                    self.keep_secrets_of(profile);
                }
                let patch = (|| {
                    Ok::<_, ErrorReply>(AccountPatch {
                        profile: edit.profile,
                        region: if edit.clear_region {
                            Some(None)
                        } else {
                            edit.region.map(Some)
                        },
                        target: edit.target.as_ref().map(target_from_spec).transpose()?,
                        on_change: edit.on_change.map(on_change_from).transpose()?,
                        portal: if edit.clear_portal {
                            Some(None)
                        } else {
                            edit.portal.map(Some)
                        },
                    })
                })();
                let edited = patch.and_then(|patch| {
                    let now = self.now();
                    self.mutate(&name, |accounts, view, expiry| {
                        accounts
                            .edit(&name, patch, view, expiry, now)
                            .map_err(|e| error_reply(&e))
                    })
                });
                if edited.as_ref().is_ok_and(|changes| !changes.is_empty()) && revalidate {
                    self.resolved.remove(&name);
                    self.revalidate.reset(&name);
                    if self.settings.validate_on_change {
                        self.start_validation(&name, None);
                    }
                }
                edited.and_then(|_| self.show(&name))
            }
            Request::RemoveAccount { name } => {
                self.revalidate.clear(&name);
                let removed = self.mutate(&name, |accounts, _, _| {
                    accounts.remove(&name).map_err(|e| error_reply(&e))
                });
                if removed.is_ok()
                    && let Some(endpoint) = &self.endpoint
                {
                    endpoint.tokens.revoke(&name);
                }
                removed.map(|_| Response::Done)
            }
            Request::AccountDetail { name } => self.detail(&name),
            Request::Accept { name } => self.accept(&name).and_then(|_| self.show(&name)),
            Request::AcceptToken { name } => self.accept(&name).and_then(|changed| {
                let account = self
                    .accounts
                    .get(&name)
                    .map(|a| self.account_info(a))
                    .map_err(|e| error_reply(&e))?;
                Ok(Response::Accepted(cmdr_proto::Accepted {
                    account,
                    changed,
                }))
            }),
            Request::ChildEnv { name } => {
                return match self.child_paths(&name) {
                    Ok(paths) => self.serve(&name, false, Waiter::child(reply, paths)),
                    Err(err) => {
                        let _ = reply.send(Outcome::Err(err));
                    }
                };
            }
            Request::ContainerEnv { name } => {
                return match self.container_paths(&name) {
                    Ok(paths) => self.serve(&name, false, Waiter::child(reply, paths)),
                    Err(err) => {
                        let _ = reply.send(Outcome::Err(err));
                    }
                };
            }
            Request::Credentials { name, force } => {
                return self.serve(&name, force, Waiter::legacy(reply));
            }
            Request::Serve { name, force } => {
                return self.serve(&name, force, Waiter::serve(reply));
            }
            Request::Subscribe | Request::Unsubscribe | Request::ConsoleUrl { .. } => {
                Err(bad_request("this request is handled by the session"))
            }
        };
        let _ = reply.send(match result {
            Ok(response) => Outcome::Ok(response),
            Err(err) => Outcome::Err(err),
        });
    }
    /// `accept`: whether the account took anything it did not have (the rule is
    /// cmdr-core's `Accounts::accept`).
    fn accept(&mut self, name: &str) -> Result<bool, ErrorReply> {
        let now = self.now();
        let accepted = self.mutate(name, |accounts, view, expiry| {
            accounts
                .accept(name, view, expiry, now)
                .map_err(|e| error_reply(&e))
        });
        self.resolved.remove(name);
        self.revalidate.reset(name);
        if accepted.is_ok() && self.settings.validate_on_change {
            self.start_validation(name, None);
        }
        accepted.map(|changes| !changes.is_empty())
    }

    /// `accounts show` with the reason for the state: a profile that looks renamed is
    /// named, with the edit that follows it.
    fn detail(&self, name: &str) -> Result<Response, ErrorReply> {
        let account = self.accounts.get(name).map_err(|e| error_reply(&e))?;
        let profile = self.view.get(&account.profile);
        let status = account.status(profile, self.now(), self.settings.warn_before);
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
        Ok(Response::AccountDetail(cmdr_proto::AccountDetail {
            info: wire::account_info(account, profile, status.state),
            reason,
        }))
    }

    /// Where a process started for `name` finds its credentials: the account's own
    /// token (issued now if it has none) and the AWS files without credentials.
    fn child_paths(&mut self, name: &str) -> Result<serve::ChildPaths, ErrorReply> {
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
        Ok(serve::ChildPaths {
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
    fn container_paths(&mut self, name: &str) -> Result<serve::ChildPaths, ErrorReply> {
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

    pub(super) fn show(&self, name: &str) -> Result<Response, ErrorReply> {
        self.accounts
            .get(name)
            .map(|a| Response::Account(self.account_info(a)))
            .map_err(|e| error_reply(&e))
    }
}
