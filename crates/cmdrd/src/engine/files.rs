//! The engine's files: the last good bytes of each, their health and retries, the
//! snapshots the watcher sends, first-seen tracking and the expiry the daemon knows.

use super::*;

pub(super) use crate::watch::FileProblem;

#[derive(Debug, Clone, Default)]
pub(super) struct FileHealth {
    pub(super) exists: bool,
    pub(super) error: Option<FileProblem>,
}

/// A profile's expiry as the daemon knows it: from the files, what its
/// `credential_process` said when last run, or estimated from when its token was first
/// seen.
pub(super) fn profile_expiry(
    profile: &Profile,
    seen: &SeenTokens,
    process_expiry: &BTreeMap<String, DateTime<Utc>>,
    session: chrono::Duration,
) -> Option<Expiry> {
    if profile.expiry.is_none()
        && profile.kind == ProfileKind::CredentialProcess
        && let Some(at) = process_expiry.get(&profile.name)
    {
        return Some(Expiry::at(*at, ExpirySource::CredentialProcess));
    }
    let seen = seen
        .get(&profile.name)
        .map(|s| (s.fingerprint.as_str(), s.first_seen));
    cmdr_core::expiry::effective(profile, seen, session)
}
/// A parse of large files allocates several copies of them (the SDK's profile sets) and
/// frees them again; glibc keeps freed memory mapped, so an idle daemon would stay at its
/// peak. Handing it back after each parse keeps idle RSS near the size of what we keep.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the engine keeps of each profile: no property copies (a digest tells changes), and
/// secrets only of the profiles accounts are bound to; those of a redacted last good file
/// come from `previous`, the view it was good in.
fn lean<'a>(bound: &'a BTreeSet<String>, previous: &'a ProfileView) -> Detail<'a> {
    Detail {
        properties: false,
        secrets_for: Some(bound),
        previous: Some(previous),
    }
}
impl Engine {
    /// Profiles some account is bound to: the only ones whose secrets the view keeps.
    pub(super) fn bound_profiles(&self) -> BTreeSet<String> {
        self.accounts.iter().map(|a| a.profile.clone()).collect()
    }

    /// Before an account binds `profile`, fetches its secrets: the view keeps only those of
    /// bound profiles, and the last good files are kept redacted, so this reads the files
    /// (a rare, user-initiated request; the state file is written the same way). Taken only
    /// if the token there is the one the view shows; otherwise the account gets its keys
    /// from the next view that has them (`Accounts::fill_credentials`).
    pub(super) fn keep_secrets_of(&mut self, profile: &str) {
        let Some(current) = self.view.profiles.get(profile) else {
            return;
        };
        if current.credentials.is_some() || current.masked_access_key_id.is_none() {
            return;
        }
        // Bounded as the watcher's reads are; unreadable means no keys yet.
        let read = |path: &std::path::Path| match crate::watch::read_file(path) {
            FileRead::Bytes(bytes) => bytes,
            FileRead::Missing | FileRead::Failed(_) => Vec::new(),
        };
        let (config, credentials) = (
            read(&self.settings.aws_config),
            read(&self.settings.aws_credentials),
        );
        let only = BTreeSet::from([profile.to_owned()]);
        let inputs = cmdr_core::Inputs {
            config: &config,
            credentials: &credentials,
            sso_cache: &self.sso_cache,
        };
        let Ok(mut fresh) = cmdr_core::parse_view_with(inputs, lean(&only, &self.view)) else {
            return;
        };
        let credentials = fresh
            .profiles
            .remove(profile)
            .filter(|p| p.fingerprint == current.fingerprint)
            .and_then(|p| p.credentials);
        if let Some(kept) = self.view.profiles.get_mut(profile) {
            kept.credentials = credentials;
        }
        release_free_memory();
    }
    pub(super) fn path_of(&self, kind: FileKind) -> &std::path::Path {
        match kind {
            FileKind::Config => &self.settings.aws_config,
            FileKind::Credentials => &self.settings.aws_credentials,
        }
    }

    /// Takes a new snapshot: each file that parses replaces its last good bytes; one that
    /// does not keeps them and reports `file_error` once, until `file_recovered`.
    pub(super) fn load_snapshot(&mut self, snapshot: Snapshot, publish: bool) {
        // One line per parse: `scripts/bench` counts them in a storm of writes.
        tracing::debug!("parsing snapshot");
        let mut recovered = Vec::new();
        let mut any_error = false;
        // Each file's new bytes, or why they cannot be used, and whether it exists.
        let read = PerFile::new(snapshot.config, snapshot.credentials).map(|_, read| match read {
            FileRead::Missing => (false, Ok(Vec::new())),
            FileRead::Bytes(bytes) => (true, Ok(bytes)),
            FileRead::Failed(message) => (true, Err((None, message))),
        });
        let exists = read.as_ref().map(|_, r| r.0);
        let mut candidates: PerFile<Result<Vec<u8>, FileProblem>> = read.map(|_, r| r.1);
        self.sso_cache = snapshot.sso_cache;
        self.note_sso_problems(snapshot.sso_problems, publish);
        // Parse the new bytes together (one SDK load when all is well); a broken file falls
        // back to its last good bytes, as does one that could not be read.
        let pick = |kind: FileKind| match &candidates[kind] {
            Ok(bytes) => bytes.as_slice(),
            Err(_) => self.good[kind].as_slice(),
        };
        let inputs = cmdr_core::Inputs {
            config: pick(FileKind::Config),
            credentials: pick(FileKind::Credentials),
            sso_cache: &self.sso_cache,
        };
        let bound = self.bound_profiles();
        let (view, errors) = cmdr_core::parse_view_or(
            inputs,
            [
                self.good.config.as_slice(),
                self.good.credentials.as_slice(),
            ],
            lean(&bound, &self.view),
        );
        if view.is_none() {
            tracing::warn!("the last good files do not parse together; keeping the last view");
        }
        for e in errors {
            candidates[e.file] = Err((e.line, e.message));
        }
        for (kind, candidate) in candidates.into_pairs() {
            let was_error = self.health[kind].error.is_some();
            self.health[kind].exists = exists[kind];
            match candidate {
                Ok(bytes) => {
                    self.good[kind] = cmdr_core::profile::redact_secrets(&bytes);
                    self.health[kind].error = None;
                    if was_error {
                        recovered.push(kind);
                    }
                }
                Err(error) => {
                    any_error = true;
                    if self.health[kind].error.as_ref() != Some(&error) {
                        let path = self.path_of(kind).display().to_string();
                        tracing::warn!(path = %path, line = ?error.0, message = %error.1, "file does not parse; keeping the last good view");
                        self.health[kind].error = Some(error.clone());
                        if publish {
                            self.emit(EventKind::FileError {
                                path,
                                line: error.0,
                                message: error.1,
                            });
                        }
                    }
                }
            }
        }
        if any_error {
            self.schedule_retry();
        } else {
            self.retries = 0;
        }
        let Some(view) = view else {
            self.sync_portals();
            return;
        };
        if publish {
            for kind in recovered {
                let path = self.path_of(kind).display().to_string();
                tracing::info!(path = %path, "file parses again");
                self.emit(EventKind::FileRecovered { path });
            }
        }
        let view = self.hold_half_pairs(view);
        // A file that failed at start has no good bytes yet: do not forget its tokens.
        self.adopt(view, publish, !any_error);
        self.sync_portals();
    }

    /// Makes `view` the current one: its changes update the accounts and, when `publish`,
    /// go out as events (and are saved). `record_seen`: first-seen times follow the view.
    pub(super) fn adopt(&mut self, view: ProfileView, publish: bool, record_seen: bool) {
        let changes = diff(&self.view, &view);
        for change in &changes {
            self.process_expiry.remove(change.profile());
        }
        self.view = view;
        self.write_child_files();
        let expiry_of = expiry_of!(self);
        if self.accounts.refresh_accepted(&self.view, &expiry_of) {
            self.dirty = true;
        }
        if record_seen {
            self.update_seen();
        }
        if publish {
            for change in &changes {
                self.emit(profile_event(change));
            }
            let now = self.now();
            let expiry_of = expiry_of!(self);
            let account_changes = self.accounts.apply(&changes, &self.view, &expiry_of, now);
            // A token cmdrd wrote itself when renewing an account is accepted at once
            // (`renewal.rs`), never offered.
            let account_changes: Vec<AccountChange> = account_changes
                .into_iter()
                .filter(|c| match c {
                    AccountChange::TokenChanged {
                        account,
                        new_fingerprint,
                        ..
                    } => !self.is_renewal(account, new_fingerprint.as_deref()),
                    _ => true,
                })
                .collect();
            let auto_accepted: Vec<String> = account_changes
                .iter()
                .filter_map(|c| match c {
                    AccountChange::TokenAccepted { account, .. } => Some(account.clone()),
                    _ => None,
                })
                .collect();
            let accepted = !auto_accepted.is_empty();
            let changed: Vec<String> = account_changes
                .iter()
                .filter_map(|c| match c {
                    AccountChange::TokenChanged { account, .. } => Some(account.clone()),
                    AccountChange::Added { .. }
                    | AccountChange::Removed { .. }
                    | AccountChange::Updated { .. }
                    | AccountChange::TokenAccepted { .. } => None,
                })
                .collect();
            self.emit_account_changes(account_changes);
            if self.settings.validate_on_change {
                for account in changed {
                    self.start_validation(&account, None);
                }
            }
            if accepted {
                self.dirty = true;
            }
            self.complete_renewals(&auto_accepted);
        }
        if publish && self.dirty {
            self.save();
        }
    }

    pub(super) fn schedule_retry(&mut self) {
        let Some(delay) = RETRY_DELAYS.get(self.retries).copied() else {
            return;
        };
        self.retries += 1;
        // A branch of the engine's loop, not a task: nothing outlives the engine.
        self.retry_at = Some(tokio::time::Instant::now() + delay);
    }

    /// SSO token files the config names that cannot be used: `file_error` once for each
    /// new or changed problem, `file_recovered` when one is gone.
    fn note_sso_problems(&mut self, problems: BTreeMap<String, FileProblem>, publish: bool) {
        let path = |name: &str| self.settings.sso_cache.join(name).display().to_string();
        for (name, problem) in &problems {
            if self.sso_problems.get(name) == Some(problem) {
                continue;
            }
            let (line, message) = problem;
            tracing::warn!(path = %path(name), ?line, %message, "SSO token file cannot be used");
            if publish {
                self.emit(EventKind::FileError {
                    path: path(name),
                    line: *line,
                    message: message.clone(),
                });
            }
        }
        for name in self.sso_problems.keys() {
            if !problems.contains_key(name) && publish {
                self.emit(EventKind::FileRecovered { path: path(name) });
            }
        }
        self.sso_problems = problems;
    }

    /// Records when each token was first seen; drops profiles that are gone.
    pub(super) fn update_seen(&mut self) {
        let now = self.now();
        self.dirty |= cmdr_core::seen::record(&mut self.seen, &self.view, now);
    }

    pub(super) fn report_changes_while_down(&mut self, before: &SeenTokens) {
        let broken = self.health.values().iter().any(|h| h.error.is_some());
        let notes = cmdr_core::seen::profile_changes(before, &self.view, broken);
        let now = self.now();
        let expiry_of = expiry_of!(self);
        let changes = self.accounts.reconcile(&self.view, &expiry_of, now);
        if changes
            .iter()
            .any(|c| matches!(c, AccountChange::TokenAccepted { .. }))
        {
            self.dirty = true;
        }
        let mut notes: Vec<(Option<String>, String)> =
            notes.into_iter().map(|note| (None, note)).collect();
        notes.extend(
            cmdr_core::seen::account_changes(&changes, before, &self.view)
                .into_iter()
                .map(|(account, note)| (Some(account), note)),
        );
        for (_, note) in &notes {
            tracing::info!("while cmdrd was not running: {note}");
        }
        self.changes_while_down = notes;
    }
    pub(super) fn expiry(&self, profile: &Profile) -> Option<Expiry> {
        profile_expiry(
            profile,
            &self.seen,
            &self.process_expiry,
            self.settings.default_session_duration,
        )
    }
}
