//! What the engine tells about itself and its accounts: `status` (files, counts,
//! portals, warnings) and one account's state with its reason (an account cmdrd renews by
//! itself before its token ends is not `expiring`: `renewal/said.rs`, `renews_at`).

use super::*;

impl Engine {
    pub(super) fn status(&self) -> StatusInfo {
        let now = self.now();
        let mut files: Vec<FileStatus> = PerFile::<()>::KINDS
            .into_iter()
            .map(|kind| {
                let health = &self.health[kind];
                wire::file_status(
                    wire::file_kind(kind),
                    self.path_of(kind),
                    health.exists,
                    health.error.as_ref(),
                )
            })
            .collect();
        let sso_problem = self
            .sso_problems
            .iter()
            .next()
            .map(|(name, (line, message))| (*line, format!("{name}: {message}")));
        files.push(wire::file_status(
            cmdr_proto::FileKind::SsoCache,
            &self.settings.sso_cache,
            self.settings.sso_cache.is_dir(),
            sso_problem.as_ref(),
        ));
        // The state file: an error while it cannot be written (the daemon serves on,
        // read-only: account changes are refused and rolled back until it can).
        let state = self.store.path();
        let unsaved = self.save_error.as_ref().map(|err| {
            (
                None,
                format!("{err}; serving read-only until it can be written"),
            )
        });
        files.push(wire::file_status(
            cmdr_proto::FileKind::State,
            state,
            state.exists(),
            unsaved.as_ref(),
        ));
        // inotify exhausted (or no watcher at all): each directory rescanned instead.
        let polled = self.polling.as_ref().map(|p| p.borrow().clone());
        for dir in polled.unwrap_or_default() {
            let why = (
                None,
                "cannot be watched (inotify watches exhausted?); falling back to rescans every 2 s"
                    .to_owned(),
            );
            files.push(wire::file_status(
                cmdr_proto::FileKind::Watch,
                &dir,
                dir.exists(),
                Some(&why),
            ));
        }
        StatusInfo {
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            started_at: timestamp(self.started_at),
            uptime_secs: u64::try_from((now - self.started_at).num_seconds()).unwrap_or(0),
            socket: self.settings.socket.path.display().to_string(),
            socket_note: self.settings.socket.note.clone(),
            files,
            profiles: u32::try_from(self.view.profiles.len()).unwrap_or(u32::MAX),
            accounts: wire::state_counts(self.accounts.iter().map(|a| {
                a.state_renewing(
                    self.view.get(&a.profile),
                    now,
                    self.settings.warn_before,
                    self.renews_at(a),
                )
            })),
            changes_while_down: self
                .changes_while_down
                .iter()
                .map(|(_, note)| note.clone())
                .collect(),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            endpoint: self.endpoint.as_ref().map(|e| e.info.clone()),
            warnings: self.warnings(),
            portals: self
                .portals
                .as_ref()
                .map(crate::portal::Portals::infos)
                .unwrap_or_default(),
        }
    }

    pub(super) fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = [FileKind::Config, FileKind::Credentials]
            .into_iter()
            .filter_map(|kind| {
                cmdr_core::profile::default_credentials_warning(kind, &self.good[kind])
            })
            .collect();
        out.extend(cmdr_config::userfile::exposed_warning(
            self.path_of(FileKind::Credentials),
        ));
        out.extend(
            self.endpoint
                .as_ref()
                .and_then(|e| e.gateway_problem.clone()),
        );
        if let Some(old) = self
            .endpoint
            .as_ref()
            .and_then(|e| e.info.moved_from.as_ref())
        {
            out.push(format!(
                "the credentials endpoint moved: another program held {old} at start (a `cmdr-sentinel` of a cmdrd with another socket would: `pgrep -a cmdr-sentinel`); processes started before with `cmdrctl exec` or `env --serve` fail until started again"
            ));
        }
        out
    }

    /// An account's state with its reason. A profile missing while an AWS file does not
    /// parse is not called gone: a file broken since cmdrd started has no last good
    /// version, so the reason names the file's error, and the fix is the file.
    pub(super) fn account_status(
        &self,
        account: &cmdr_core::Account,
        now: DateTime<Utc>,
    ) -> cmdr_core::account::Status {
        let mut status = account.status_renewing(
            self.view.get(&account.profile),
            now,
            self.settings.warn_before,
            self.renews_at(account),
        );
        // Misconfigured for want of a sign-in to its kept portal: the sign-in is the fix.
        if status.state == cmdr_core::AccountState::Misconfigured
            && let Some(why) = self.signin_reason(account)
        {
            status.reason = Some(why);
        }
        if status.state != cmdr_core::AccountState::Missing {
            return status;
        }
        let broken = [FileKind::Config, FileKind::Credentials]
            .into_iter()
            .find_map(|kind| Some((kind, self.health[kind].error.as_ref()?)));
        if let Some((kind, (line, message))) = broken {
            let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
            status.reason = Some(format!(
                "profile `{}` of account `{}` is not in the AWS files as cmdrd could read them: {}{at}: {} (fix the file, `cmdrctl doctor` shows where; the account comes back by itself)",
                account.profile,
                account.name,
                self.path_of(kind).display(),
                cmdr_core::text::escape_controls(message),
            ));
        }
        status
    }

    pub(super) fn account_info(&self, account: &cmdr_core::Account) -> AccountInfo {
        let profile = self.view.get(&account.profile);
        let state = account.state_renewing(
            profile,
            self.now(),
            self.settings.warn_before,
            self.renews_at(account),
        );
        wire::account_info(account, profile, state)
    }
}
