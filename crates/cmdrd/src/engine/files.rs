//! The engine's files: the last good bytes of each, their health and retries, the
//! snapshots the watcher sends, first-seen tracking and the expiry the daemon knows.
//!
//! A snapshot is taken in by steps that update the engine's own state and return what
//! else is to happen ([`Effects`]: events, validations, a save, a retry): `take_files`
//! (parse, health, SSO token problems), `hold_half_pairs` (`settle.rs`), `adopt` (the
//! view) and `follow` (the accounts). [`Engine::apply`] carries the effects out, in one
//! place; the start-up path (`Engine::start`) drops the events instead: nobody listens
//! yet, and `report_changes_while_down` says what changed.

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
/// What taking in files (a snapshot, or held keys believed at last) asks of the engine
/// besides the state the steps update: applied in one place, [`Engine::apply`].
#[derive(Default)]
pub(super) struct Effects {
    /// Events to publish, in order.
    events: Vec<EventKind>,
    /// Accounts whose token changed, to validate when `validate_on_change`.
    validate: Vec<String>,
    /// The state changed: save it.
    save: bool,
    /// A file did not parse (`Some(true)`: read again shortly, in case it was caught
    /// mid-write) or every file did (`Some(false)`: the retries start afresh).
    pub(super) retry: Option<bool>,
    /// Accounts the `auto` policy accepted: renewals cmdrd wrote whose token the view now
    /// holds are completed after the events (`renewal.rs`), these without a second accept.
    renewals: Option<Vec<String>>,
}

impl Effects {
    /// `later` after these.
    fn extend(&mut self, later: Effects) {
        self.events.extend(later.events);
        self.validate.extend(later.validate);
        self.save |= later.save;
        self.retry = later.retry.or(self.retry);
        if let Some(accepted) = later.renewals {
            self.renewals.get_or_insert_default().extend(accepted);
        }
    }
}

/// The files of one snapshot taken in: the view they give (`None`: even the last good
/// files do not parse together), whether every file parsed, and what to publish.
pub(super) struct Taken {
    pub(super) view: Option<ProfileView>,
    pub(super) healthy: bool,
    pub(super) effects: Effects,
}

impl Engine {
    /// Profiles some account is bound to: the only ones whose secrets the view keeps.
    pub(super) fn bound_profiles(&self) -> BTreeSet<String> {
        self.accounts.iter().map(|a| a.profile.clone()).collect()
    }

    /// True when binding `profile` needs its secrets read from the files: the view keeps
    /// only those of bound profiles, and the last good files are kept redacted.
    pub(super) fn lacks_secrets(&self, profile: &str) -> bool {
        self.view
            .profiles
            .get(profile)
            .is_some_and(|p| p.credentials.is_none() && p.masked_access_key_id.is_some())
    }

    pub(super) fn path_of(&self, kind: FileKind) -> &std::path::Path {
        match kind {
            FileKind::Config => &self.settings.aws_config,
            FileKind::Credentials => &self.settings.aws_credentials,
        }
    }

    /// A new snapshot while running: its files taken in, half-changed keys held, the view
    /// adopted and followed by the accounts.
    pub(super) fn on_snapshot(&mut self, snapshot: Snapshot) -> Effects {
        let Taken {
            view,
            healthy,
            mut effects,
        } = self.take_files(snapshot);
        if let Some(view) = view {
            let view = self.hold_half_pairs(view);
            effects.extend(self.follow(view, healthy));
        }
        self.sync_portals();
        effects
    }

    /// Takes in a snapshot's files: each file that parses replaces its last good bytes; one
    /// that does not keeps them and reports `file_error` once, until `file_recovered`.
    /// Returns the view the files give; the engine's view is not touched yet.
    pub(super) fn take_files(&mut self, snapshot: Snapshot) -> Taken {
        // One line per parse: `scripts/bench` counts them in a storm of writes.
        tracing::debug!("parsing snapshot");
        // Each file's new bytes, or why they cannot be used, and whether it exists.
        let read = PerFile::new(snapshot.config, snapshot.credentials).map(|_, read| match read {
            FileRead::Missing => (false, Ok(Vec::new())),
            FileRead::Bytes(bytes) => (true, Ok(bytes)),
            FileRead::Failed(message) => (true, Err((None, message))),
        });
        let exists = read.as_ref().map(|_, r| r.0);
        let mut candidates: PerFile<Result<Vec<u8>, FileProblem>> = read.map(|_, r| r.1);
        self.sso_cache = snapshot.sso_cache;
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
        // A profile a request waits to bind keeps its secrets too (`Awaiting`).
        let mut bound = self.bound_profiles();
        bound.extend(self.awaiting.as_ref().map(|a| a.profile.clone()));
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
        // The token files the AWS files name, as this parse (or the last view) says.
        let named = view.as_ref().unwrap_or(&self.view).sso_cache_files.clone();
        let mut effects = Effects {
            events: self.note_sso_problems(&named, &snapshot.sso_unreadable),
            ..Effects::default()
        };
        for e in errors {
            candidates[e.file] = Err((e.line, e.message));
        }
        let mut recovered = Vec::new();
        let mut healthy = true;
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
                    healthy = false;
                    if self.health[kind].error.as_ref() != Some(&error) {
                        let path = self.path_of(kind).display().to_string();
                        tracing::warn!(path = %path, line = ?error.0, message = %error.1, "file does not parse; keeping the last good view");
                        self.health[kind].error = Some(error.clone());
                        effects.events.push(EventKind::FileError {
                            path,
                            line: error.0,
                            message: error.1,
                        });
                    }
                }
            }
        }
        effects.retry = Some(!healthy);
        if view.is_some() {
            for kind in recovered {
                let path = self.path_of(kind).display().to_string();
                tracing::info!(path = %path, "file parses again");
                effects.events.push(EventKind::FileRecovered { path });
            }
        }
        Taken {
            view,
            healthy,
            effects,
        }
    }

    /// Makes `view` the current one and updates what follows it without telling anyone
    /// (the start-up path; `follow` tells): the profile changes, and whether the state
    /// changed. `record_seen`: first-seen times follow the view (not while a file is
    /// broken: a file that failed at start has no good bytes yet, and its tokens are not
    /// to be forgotten).
    pub(super) fn adopt(
        &mut self,
        view: ProfileView,
        record_seen: bool,
    ) -> (Vec<cmdr_core::ProfileChange>, bool) {
        let changes = diff(&self.view, &view);
        for change in &changes {
            self.process_expiry.remove(change.profile());
        }
        self.view = view;
        self.write_child_files();
        let expiry_of = expiry_of!(self);
        let mut dirty = self.accounts.refresh_accepted(&self.view, &expiry_of);
        if record_seen {
            let now = self.now();
            dirty |= cmdr_core::seen::record(&mut self.seen, &self.view, now);
        }
        (changes, dirty)
    }

    /// [`Engine::adopt`], then the accounts follow the changes: the events to publish, the
    /// validations to start, whether to save.
    pub(super) fn follow(&mut self, view: ProfileView, record_seen: bool) -> Effects {
        let (changes, dirty) = self.adopt(view, record_seen);
        let mut effects = Effects {
            events: changes.iter().map(profile_event).collect(),
            save: dirty,
            ..Effects::default()
        };
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
        let mut accepted = Vec::new();
        for change in &account_changes {
            match change {
                AccountChange::TokenChanged { account, .. } => {
                    effects.validate.push(account.clone());
                }
                AccountChange::TokenAccepted { account, .. } => {
                    effects.save = true;
                    accepted.push(account.clone());
                }
                AccountChange::Added { .. }
                | AccountChange::Removed { .. }
                | AccountChange::Updated { .. } => {}
            }
        }
        effects.events.extend(self.account_events(account_changes));
        effects.renewals = Some(accepted);
        effects
    }

    /// Applies what taking in files asked for: publishes the events, starts the
    /// validations, schedules the retry, saves.
    pub(super) fn apply(&mut self, effects: Effects) {
        let Effects {
            events,
            validate,
            save,
            retry,
            renewals,
        } = effects;
        for event in events {
            self.emit(event);
        }
        if let Some(accepted) = renewals {
            self.complete_renewals(&accepted);
        }
        if self.settings.validate_on_change {
            for account in validate {
                self.start_validation(&account, None);
            }
        }
        self.retry(retry);
        self.dirty |= save;
        if self.dirty {
            self.save();
        }
    }

    /// Reads the files again shortly after one did not parse (at most
    /// `RETRY_DELAYS.len()` times in a row), or starts the count afresh.
    pub(super) fn retry(&mut self, retry: Option<bool>) {
        match retry {
            Some(true) => {
                let Some(delay) = RETRY_DELAYS.get(self.retries).copied() else {
                    return;
                };
                self.retries += 1;
                // A branch of the engine's loop, not a task: nothing outlives the engine.
                self.retry_at = Some(tokio::time::Instant::now() + delay);
            }
            Some(false) => self.retries = 0,
            None => {}
        }
    }

    /// The problems of the SSO token files the AWS files name (`named`): unreadable, or
    /// not a token. Returns `file_error` for each new or changed problem, `file_recovered`
    /// for each one gone.
    fn note_sso_problems(
        &mut self,
        named: &BTreeSet<String>,
        unreadable: &BTreeMap<String, String>,
    ) -> Vec<EventKind> {
        let problems: BTreeMap<String, FileProblem> = named
            .iter()
            .filter_map(|name| {
                let problem = match (unreadable.get(name), self.sso_cache.get(name)) {
                    (Some(err), _) => Some((None, format!("cannot be read: {err}"))),
                    (None, Some(bytes)) => cmdr_core::profile::sso_token_problem(bytes),
                    (None, None) => None,
                };
                problem.map(|p| (name.clone(), p))
            })
            .collect();
        let path = |name: &str| self.settings.sso_cache.join(name).display().to_string();
        let mut events = Vec::new();
        for (name, problem) in &problems {
            if self.sso_problems.get(name) == Some(problem) {
                continue;
            }
            let (line, message) = problem;
            tracing::warn!(path = %path(name), ?line, %message, "SSO token file cannot be used");
            events.push(EventKind::FileError {
                path: path(name),
                line: *line,
                message: message.clone(),
            });
        }
        for name in self.sso_problems.keys() {
            if !problems.contains_key(name) {
                events.push(EventKind::FileRecovered { path: path(name) });
            }
        }
        self.sso_problems = problems;
        events
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
