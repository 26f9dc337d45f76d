//! The engine's files: the last good bytes of each, their health and retries, the
//! snapshots the watcher sends, first-seen tracking and the expiry the daemon knows.
//!
//! A snapshot is taken in by steps that update the engine's own state and return what
//! else is to happen ([`Effects`]: events, validations, a save, a retry): `parse_files`
//! (the one parse of a change), `take_files` (health, SSO token problems, the text the
//! SDK's providers get), `hold_half_pairs` (`settle.rs`), `adopt` (the view) and `follow`
//! (the accounts). [`Engine::apply`] carries the effects out, in one
//! place; the start-up path (`Engine::start`) drops the events instead: nobody listens
//! yet, and `report_changes_while_down` says what changed.

use super::*;

use crate::validate::FileText;
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

/// A snapshot's files parsed, not yet taken in ([`Engine::parse_files`]).
pub(super) struct Parsed {
    view: Option<ProfileView>,
    /// Each file's bytes, or why they cannot be used (unreadable, or did not parse).
    candidates: PerFile<Result<Vec<u8>, FileProblem>>,
    exists: PerFile<bool>,
    /// The token files the files name.
    named: BTreeSet<String>,
    sso_cache: BTreeMap<String, Vec<u8>>,
    sso_unreadable: BTreeMap<String, String>,
    /// The files name a token file the watcher did not look up: it read only part of a
    /// large cache, with names told before this change named the file.
    pub(super) lacking: bool,
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
    /// adopted and followed by the accounts. `None`: laid aside, as it lacks a token file
    /// its own parse names (see [`Parsed::lacking`]); a fresh read was asked for, and the
    /// delivery answering it is taken in instead.
    pub(super) fn on_snapshot(&mut self, snapshot: Snapshot) -> Option<Effects> {
        let parsed = self.parse_files(snapshot);
        // Laid aside once at most: if the next snapshot lacks one too (the files keep
        // naming new token files), it is taken in as it is, and the read `take_files`
        // asks for brings the rest; so a stream of changes cannot stall the engine.
        if parsed.lacking && !self.laid_aside && self.reread.fresh().is_some() {
            self.laid_aside = true;
            return None;
        }
        self.laid_aside = false;
        let Taken {
            view,
            healthy,
            mut effects,
        } = self.take_files(parsed);
        if let Some(view) = view {
            let view = self.hold_half_pairs(view);
            effects.extend(self.follow(view, healthy));
        }
        self.sync_portals();
        Some(effects)
    }

    /// Parses a snapshot's files together (one `parse_view_or`, the only parse of a
    /// change), each broken or unreadable file falling back to its last good bytes, and
    /// tells the watcher which token files the files name (`Reread::name`). The engine's
    /// state is not touched: [`Engine::take_files`] takes the result in.
    pub(super) fn parse_files(&self, snapshot: Snapshot) -> Parsed {
        // One line per parse: `scripts/bench` counts them in a storm of writes.
        tracing::debug!("parsing snapshot");
        let Snapshot {
            config,
            credentials,
            sso_cache,
            sso_unreadable,
            sso_partial,
        } = snapshot;
        // Each file's new bytes, or why they cannot be used, and whether it exists.
        let read = PerFile::new(config, credentials).map(|_, read| match read {
            FileRead::Missing => (false, Ok(Vec::new())),
            FileRead::Bytes(bytes) => (true, Ok(bytes)),
            FileRead::Failed(message) => (true, Err((None, message))),
        });
        let exists = read.as_ref().map(|_, r| r.0);
        let mut candidates: PerFile<Result<Vec<u8>, FileProblem>> = read.map(|_, r| r.1);
        // Parse the new bytes together (one SDK load when all is well); a broken file falls
        // back to its last good bytes, as does one that could not be read.
        let pick = |kind: FileKind| match &candidates[kind] {
            Ok(bytes) => bytes.as_slice(),
            Err(_) => self.good[kind].as_slice(),
        };
        let inputs = cmdr_core::Inputs {
            config: pick(FileKind::Config),
            credentials: pick(FileKind::Credentials),
            sso_cache: &sso_cache,
        };
        let (view, errors) = cmdr_core::parse_view_or(
            inputs,
            [
                self.good.config.as_slice(),
                self.good.credentials.as_slice(),
            ],
            lean(&self.keeps_secrets(), &self.view),
        );
        for e in errors {
            candidates[e.file] = Err((e.line, e.message));
        }
        // The token files the AWS files name, as this parse (or the last view) says: every
        // read the watcher starts from now on looks them up first.
        let named = view.as_ref().unwrap_or(&self.view).sso_cache_files.clone();
        self.reread.name(&named);
        let lacking = sso_partial.is_some_and(|read| !named.is_subset(&read));
        Parsed {
            view,
            candidates,
            exists,
            named,
            sso_cache,
            sso_unreadable,
            lacking,
        }
    }

    /// Profiles whose secrets the view keeps: the bound ones, and the one a request waits
    /// to bind (`Awaiting`).
    fn keeps_secrets(&self) -> BTreeSet<String> {
        let mut bound = self.bound_profiles();
        bound.extend(self.awaiting.as_ref().map(|a| a.profile.clone()));
        bound
    }

    /// Takes in parsed files: each file that parsed replaces its last good bytes; one that
    /// did not keeps them and reports `file_error` once, until `file_recovered`. Returns the
    /// view the files give; the engine's view is not touched yet.
    pub(super) fn take_files(&mut self, parsed: Parsed) -> Taken {
        let Parsed {
            view,
            candidates,
            exists,
            named,
            sso_cache,
            sso_unreadable,
            lacking,
        } = parsed;
        if lacking {
            // Taken in all the same (see `on_snapshot`): the next read, asked for after
            // the names were told, looks the missing ones up.
            self.reread.rescan();
        }
        if view.is_none() {
            tracing::warn!("the last good files do not parse together; keeping the last view");
        }
        self.sso_cache = sso_cache;
        let mut effects = Effects {
            events: self.note_sso_problems(&named, &sso_unreadable),
            ..Effects::default()
        };
        let for_sdk = self.sdk_needs_files(view.as_ref().unwrap_or(&self.view));
        let mut recovered = Vec::new();
        let mut healthy = true;
        for (kind, candidate) in candidates.into_pairs() {
            let was_error = self.health[kind].error.is_some();
            self.health[kind].exists = exists[kind];
            match candidate {
                Ok(bytes) => {
                    self.good[kind] = cmdr_core::profile::redact_secrets(&bytes);
                    self.sdk_files[kind] = if for_sdk { FileText::new(bytes) } else { None };
                    self.health[kind].error = None;
                    if was_error {
                        recovered.push(kind);
                    }
                }
                Err(error) => {
                    healthy = false;
                    // The SDK keeps the bytes the view keeps: the last good ones.
                    if !for_sdk {
                        self.sdk_files[kind] = None;
                    }
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

    /// True when an account (or a request waiting to bind one) is on a profile in `view`
    /// that the SDK's providers resolve from the files: only then does the engine keep the
    /// files' text, secrets and all, for them ([`Job::files`](crate::validate::Job)).
    /// Otherwise the lean view's rule holds: no secrets but those of bound profiles.
    pub(super) fn sdk_needs_files(&self, view: &ProfileView) -> bool {
        self.keeps_secrets().iter().any(|name| {
            view.get(name)
                .is_some_and(|p| crate::handout::resolvable(p.kind))
        })
    }

    /// True when binding `profile` needs the files' text the engine does not keep (see
    /// [`Engine::sdk_needs_files`]): a fresh read brings it.
    pub(super) fn lacks_sdk_files(&self, profile: &str) -> bool {
        self.view
            .get(profile)
            .is_some_and(|p| crate::handout::resolvable(p.kind))
            && self.sdk_files.values().iter().all(|f| f.is_none())
    }

    /// Forgets the files' text once no account needs it (after a `remove` or an `edit`).
    pub(super) fn forget_sdk_files(&mut self) {
        if !self.sdk_needs_files(&self.view) {
            self.sdk_files = PerFile::default();
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
