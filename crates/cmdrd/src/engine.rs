//! The engine: the one task that owns the current view, the accounts and the state file.
//! File snapshots and client requests arrive as commands; changes leave as events on a
//! bounded broadcast channel (a slow subscriber lags; it never slows the others).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cmdr_core::{
    AccountChange, AccountPatch, AccountState, Accounts, Detail, Expiry, ExpirySource, FileKind,
    IdentityCheck, NewAccount, Profile, ProfileKind, ProfileView, diff,
};
use cmdr_proto::{
    AccountInfo, EndpointInfo, ErrorCode, ErrorReply, Event, EventKind, FileStatus, Outcome,
    PROTOCOL_VERSION, ProfileInfo, Request, Response, StateCount, StatusInfo,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::expiry::{self, Clock, Deadline, Timers};
use crate::serve::{self, Cached, Waiter};
use crate::store::{Seen, Store, StoredState};
use crate::validate::{self, Failure, Identity, Job, Resolved};
use crate::watch::{FileRead, Snapshot};
use crate::wire::{
    account_event, bad_request, error_reply, on_change_from, profile_event, target_from_spec,
    timestamp,
};

/// Retries of a file that failed to parse, in case it was caught mid-write.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

pub enum Command {
    Request(Request, oneshot::Sender<Outcome>),
    /// A validation task finished (sent by the engine's own tasks).
    Validated {
        account: String,
        fingerprint: Option<String>,
        result: Result<Identity, Failure>,
    },
    /// Credentials of an SDK-provider profile were resolved (sent by the engine's tasks).
    Resolved {
        account: String,
        key: serve::CacheKey,
        result: Result<Resolved, Failure>,
    },
}

/// A cheap handle to the engine for sessions.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
}

impl EngineHandle {
    pub async fn request(&self, request: Request) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let stopped = || {
            Outcome::Err(ErrorReply {
                code: ErrorCode::Internal,
                message: "cmdrd is stopping".to_owned(),
            })
        };
        if self
            .commands
            .send(Command::Request(request, tx))
            .await
            .is_err()
        {
            return stopped();
        }
        rx.await.unwrap_or_else(|_| stopped())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Why a file cannot be used: the line (if known) and the message.
type FileProblem = (Option<u32>, String);

#[derive(Debug, Clone, Default)]
struct FileHealth {
    exists: bool,
    error: Option<FileProblem>,
}

pub struct Engine {
    settings: Arc<Settings>,
    store: Store,
    view: ProfileView,
    /// The last bytes of each file that parsed, secrets redacted: a broken file keeps
    /// these (with the secrets the view had), so no token is held twice.
    good: [Vec<u8>; 2],
    /// When the credentials of `credential_process` profiles end, as the process said when
    /// last validated; forgotten when the profile changes.
    process_expiry: BTreeMap<String, DateTime<Utc>>,
    sso_cache: BTreeMap<String, Vec<u8>>,
    health: [FileHealth; 2],
    accounts: Accounts,
    seen: BTreeMap<String, Seen>,
    events: broadcast::Sender<Event>,
    rescan: mpsc::Sender<()>,
    retries: usize,
    started_at: DateTime<Utc>,
    changes_while_down: Vec<String>,
    /// A failed save is retried with the next change.
    dirty: bool,
    clock: Arc<dyn Clock>,
    timers: Timers,
    next_deadline: Option<DateTime<Utc>>,
    /// Validations in flight, with the clients waiting for each: at most one per account.
    validations: HashMap<String, Vec<oneshot::Sender<Outcome>>>,
    /// For the engine's own tasks to report back; weak so the channel can still close.
    own_commands: mpsc::WeakSender<Command>,
    /// Where the credentials endpoint listens, for `status`.
    endpoint: Option<EndpointInfo>,
    /// Credentials resolved for accounts on SDK-provider profiles, until shortly before
    /// they end or the account's token or profile changes.
    resolved: HashMap<String, Cached>,
    /// Resolutions in flight, with the clients waiting for each: at most one per account.
    resolving: HashMap<String, Vec<Waiter>>,
}

/// A profile's expiry as the daemon knows it: from the files, what its
/// `credential_process` said when last run, or estimated from when its token was first
/// seen.
fn profile_expiry(
    profile: &Profile,
    seen: &BTreeMap<String, Seen>,
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

/// `profile_expiry` over the engine's fields, as a closure that borrows only them (so the
/// accounts can be borrowed mutably beside it).
macro_rules! expiry_of {
    ($engine:expr) => {{
        let (seen, process, session) = (
            &$engine.seen,
            &$engine.process_expiry,
            $engine.settings.default_session_duration,
        );
        move |p: &Profile| profile_expiry(p, seen, process, session)
    }};
}

/// A parse of large files allocates several copies of them (the SDK's profile sets) and
/// frees them again; glibc keeps freed memory mapped, so an idle daemon would stay at its
/// peak. Handing it back after each parse keeps idle RSS near the size of what we keep.
fn release_free_memory() {
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
    fn bound_profiles(&self) -> BTreeSet<String> {
        self.accounts.iter().map(|a| a.profile.clone()).collect()
    }

    /// Before an account binds `profile`, fetches its secrets: the view keeps only those of
    /// bound profiles, and the last good files are kept redacted, so this reads the files
    /// (a rare, user-initiated request; the state file is written the same way). Taken only
    /// if the token there is the one the view shows; otherwise the account gets its keys
    /// from the next view that has them (`Accounts::fill_credentials`).
    fn keep_secrets_of(&mut self, profile: &str) {
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

    /// Builds the engine from the state file and the files as they are now, and works out
    /// what changed while the daemon was not running.
    pub fn start(
        settings: Arc<Settings>,
        snapshot: Snapshot,
        rescan: mpsc::Sender<()>,
        clock: Arc<dyn Clock>,
        endpoint: Option<EndpointInfo>,
    ) -> anyhow::Result<(Engine, EngineHandle, mpsc::Receiver<Command>)> {
        let store = Store::new(settings.state_file());
        let stored = store.load()?;
        let (events, _) = broadcast::channel(settings.event_buffer);
        let (commands, rx) = mpsc::channel(256);
        let mut engine = Engine {
            settings,
            store,
            view: ProfileView::default(),
            good: [Vec::new(), Vec::new()],
            process_expiry: BTreeMap::new(),
            sso_cache: BTreeMap::new(),
            health: [FileHealth::default(), FileHealth::default()],
            accounts: Accounts::from_list(stored.accounts),
            seen: stored.seen.clone(),
            events: events.clone(),
            rescan,
            retries: 0,
            started_at: clock.now(),
            changes_while_down: Vec::new(),
            dirty: false,
            clock,
            timers: Timers::default(),
            next_deadline: None,
            validations: HashMap::new(),
            own_commands: commands.downgrade(),
            endpoint,
            resolved: HashMap::new(),
            resolving: HashMap::new(),
        };
        engine.load_snapshot(snapshot, false);
        release_free_memory();
        engine.report_changes_while_down(&stored.seen);
        engine.save();
        Ok((engine, EngineHandle { commands, events }, rx))
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut snapshots: mpsc::Receiver<Snapshot>,
        cancel: CancellationToken,
    ) {
        self.tick();
        loop {
            // One timer, for the next wall-clock deadline only; none when nothing is due.
            let sleep = self.next_deadline.map(|d| expiry::sleep_for(d, self.now()));
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(snapshot) = snapshots.recv() => {
                    self.load_snapshot(snapshot, true);
                    release_free_memory();
                }
                command = commands.recv() => match command {
                    Some(Command::Request(request, reply)) => self.handle(request, reply),
                    Some(Command::Validated { account, fingerprint, result }) => {
                        self.finish_validation(&account, fingerprint.as_deref(), result);
                    }
                    Some(Command::Resolved { account, key, result }) => {
                        self.finish_resolution(&account, key, result);
                    }
                    None => break,
                },
                () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
            }
            self.tick();
        }
        self.emit(EventKind::DaemonStopping);
        self.save();
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Fires the expiry events that are due and arms the timer for the next deadline.
    fn tick(&mut self) {
        let now = self.now();
        let deadlines: Vec<(String, String, Option<DateTime<Utc>>)> = self
            .accounts
            .iter()
            .map(|a| {
                let at = a.accepted.expiry.as_ref().and_then(|e| e.at);
                (a.name.clone(), a.profile.clone(), at)
            })
            .collect();
        let (events, next) = self.timers.poll(
            deadlines.iter().map(|(account, profile, at)| Deadline {
                account,
                profile,
                expires_at: *at,
            }),
            now,
            self.settings.warn_before,
        );
        for event in events {
            self.emit(event);
        }
        self.next_deadline = next;
    }

    /// Starts an STS validation of the account's current credentials, unless one is
    /// already running for it.
    fn start_validation(&mut self, name: &str, waiter: Option<oneshot::Sender<Outcome>>) {
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
        let Some(reply_to) = self.own_commands.upgrade() else {
            return;
        };
        let account = name.to_owned();
        let fingerprint = job.fingerprint.clone();
        tokio::spawn(async move {
            let result = validate::validate(job).await;
            let _ = reply_to
                .send(Command::Validated {
                    account,
                    fingerprint,
                    result,
                })
                .await;
        });
    }

    /// What an STS call or a resolution for `account` needs: the file's current token.
    fn job(&self, account: &cmdr_core::Account) -> Job {
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

    fn finish_validation(
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
        self.dirty = true;
        self.save();
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn emit(&self, kind: EventKind) {
        tracing::info!(event = %kind.type_name(), account = ?kind.account(), "event");
        // No receivers is fine: nobody is listening.
        let _ = self.events.send(Event {
            at: timestamp(self.now()),
            kind,
        });
    }

    fn emit_account_changes(&self, changes: Vec<AccountChange>) {
        for mut change in changes {
            // The files may say nothing about expiry; the engine's estimate is still news.
            if let AccountChange::TokenChanged {
                profile, expiry, ..
            } = &mut change
                && expiry.is_none()
            {
                *expiry = self.view.get(profile).and_then(|p| self.expiry(p));
            }
            self.emit(account_event(change));
        }
    }

    fn path_of(&self, kind: FileKind) -> &std::path::Path {
        match kind {
            FileKind::Config => &self.settings.aws_config,
            FileKind::Credentials => &self.settings.aws_credentials,
        }
    }

    /// Takes a new snapshot: each file that parses replaces its last good bytes; one that
    /// does not keeps them and reports `file_error` once, until `file_recovered`.
    fn load_snapshot(&mut self, snapshot: Snapshot, publish: bool) {
        // One line per parse: `scripts/bench` counts them in a storm of writes.
        tracing::debug!("parsing snapshot");
        let mut recovered = Vec::new();
        let mut any_error = false;
        let mut exists = [false; 2];
        // Each file's new bytes, or why they cannot be used.
        let mut candidates: [Result<Vec<u8>, FileProblem>; 2] = [Ok(Vec::new()), Ok(Vec::new())];
        for (index, read) in [snapshot.config, snapshot.credentials]
            .into_iter()
            .enumerate()
        {
            (exists[index], candidates[index]) = match read {
                FileRead::Missing => (false, Ok(Vec::new())),
                FileRead::Bytes(bytes) => (true, Ok(bytes)),
                FileRead::Failed(message) => (true, Err((None, message))),
            };
        }
        self.sso_cache = snapshot.sso_cache;
        // Parse the new bytes together (one SDK load when all is well); a broken file falls
        // back to its last good bytes, as does one that could not be read.
        let pick = |i: usize| match &candidates[i] {
            Ok(bytes) => bytes.as_slice(),
            Err(_) => self.good[i].as_slice(),
        };
        let inputs = cmdr_core::Inputs {
            config: pick(0),
            credentials: pick(1),
            sso_cache: &self.sso_cache,
        };
        let bound = self.bound_profiles();
        let (view, errors) = cmdr_core::parse_view_or(
            inputs,
            [self.good[0].as_slice(), self.good[1].as_slice()],
            lean(&bound, &self.view),
        );
        if view.is_none() {
            tracing::warn!("the last good files do not parse together; keeping the last view");
        }
        for e in errors {
            candidates[usize::from(e.file == FileKind::Credentials)] = Err((e.line, e.message));
        }
        for (index, (kind, candidate)) in [FileKind::Config, FileKind::Credentials]
            .into_iter()
            .zip(candidates)
            .enumerate()
        {
            let was_error = self.health[index].error.is_some();
            self.health[index].exists = exists[index];
            match candidate {
                Ok(bytes) => {
                    self.good[index] = cmdr_core::profile::redact_secrets(&bytes);
                    self.health[index].error = None;
                    if was_error {
                        recovered.push(kind);
                    }
                }
                Err(error) => {
                    any_error = true;
                    if self.health[index].error.as_ref() != Some(&error) {
                        let path = self.path_of(kind).display().to_string();
                        tracing::warn!(path = %path, line = ?error.0, message = %error.1, "file does not parse; keeping the last good view");
                        self.health[index].error = Some(error.clone());
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
            return;
        };
        let changes = diff(&self.view, &view);
        for change in &changes {
            self.process_expiry.remove(change.profile());
        }
        self.view = view;
        let expiry_of = expiry_of!(self);
        if self.accounts.refresh_accepted(&self.view, &expiry_of) {
            self.dirty = true;
        }

        // A file that failed at start has no good bytes yet: do not forget its tokens.
        if !any_error {
            self.update_seen();
        }
        if publish {
            for kind in recovered {
                let path = self.path_of(kind).display().to_string();
                tracing::info!(path = %path, "file parses again");
                self.emit(EventKind::FileRecovered { path });
            }
            for change in &changes {
                self.emit(profile_event(change));
            }
            let now = self.now();
            let expiry_of = expiry_of!(self);
            let account_changes = self.accounts.apply(&changes, &self.view, &expiry_of, now);
            let accepted = account_changes
                .iter()
                .any(|c| matches!(c, AccountChange::TokenAccepted { .. }));
            let changed: Vec<String> = account_changes
                .iter()
                .filter_map(|c| match c {
                    AccountChange::TokenChanged { account, .. } => Some(account.clone()),
                    _ => None,
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
        }
        if publish && self.dirty {
            self.save();
        }
    }

    fn schedule_retry(&mut self) {
        let Some(delay) = RETRY_DELAYS.get(self.retries).copied() else {
            return;
        };
        self.retries += 1;
        let rescan = self.rescan.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = rescan.try_send(());
        });
    }

    /// Records when each token was first seen; drops profiles that are gone.
    fn update_seen(&mut self) {
        let now = self.now();
        let before = self.seen.len();
        self.seen
            .retain(|name, _| self.view.profiles.contains_key(name));
        let mut changed = before != self.seen.len();
        for (name, profile) in &self.view.profiles {
            let Some(fingerprint) = &profile.fingerprint else {
                continue;
            };
            if self.seen.get(name).map(|s| &s.fingerprint) != Some(fingerprint) {
                self.seen.insert(
                    name.clone(),
                    Seen {
                        fingerprint: fingerprint.clone(),
                        first_seen: now,
                    },
                );
                changed = true;
            }
        }
        self.dirty |= changed;
    }

    fn report_changes_while_down(&mut self, before: &BTreeMap<String, Seen>) {
        let mut notes = Vec::new();
        if self.health.iter().any(|h| h.error.is_some()) {
            notes.push("a file did not parse at start; changes are reported once it does".into());
        } else if !before.is_empty() {
            for (name, seen) in before {
                match self.view.get(name).and_then(|p| p.fingerprint.as_ref()) {
                    None if self.view.get(name).is_none() => {
                        notes.push(format!("profile `{name}` was removed"));
                    }
                    Some(fp) if *fp != seen.fingerprint => {
                        notes.push(format!("token of profile `{name}` changed"));
                    }
                    _ => {}
                }
            }
            for (name, profile) in &self.view.profiles {
                if profile.fingerprint.is_some() && !before.contains_key(name) {
                    notes.push(format!("profile `{name}` was added"));
                }
            }
        }
        let now = self.now();
        let expiry_of = expiry_of!(self);
        let changes = self.accounts.reconcile(&self.view, &expiry_of, now);
        for change in &changes {
            match change {
                AccountChange::TokenChanged { account, .. } => {
                    notes.push(format!("token for account `{account}` changed"));
                }
                AccountChange::TokenAccepted { account, .. } => {
                    notes.push(format!("account `{account}` accepted the new token (auto)"));
                    self.dirty = true;
                }
                _ => {}
            }
        }
        for note in &notes {
            tracing::info!("while cmdrd was not running: {note}");
        }
        self.changes_while_down = notes;
    }

    fn stored(&self) -> StoredState {
        StoredState {
            version: 1,
            accounts: self.accounts.iter().cloned().collect(),
            seen: self.seen.clone(),
        }
    }

    fn save(&mut self) {
        match self.store.save(&self.stored()) {
            Ok(()) => self.dirty = false,
            Err(err) => {
                self.dirty = true;
                tracing::error!(error = %err, "could not save state; will retry with the next change");
            }
        }
    }

    /// Applies an account operation and saves; if the save fails, the operation is undone
    /// and the client gets the error, so memory and disk never disagree.
    fn mutate(
        &mut self,
        op: impl FnOnce(
            &mut Accounts,
            &ProfileView,
            cmdr_core::ExpiryOf<'_>,
        ) -> Result<Vec<AccountChange>, ErrorReply>,
    ) -> Result<Vec<AccountChange>, ErrorReply> {
        let before = self.accounts.clone();
        let expiry_of = expiry_of!(self);
        let changes = op(&mut self.accounts, &self.view, &expiry_of)?;
        if let Err(err) = self.store.save(&self.stored()) {
            self.accounts = before;
            tracing::error!(error = %err, "could not save state");
            return Err(ErrorReply {
                code: ErrorCode::Internal,
                message: err.to_string(),
            });
        }
        self.dirty = false;
        self.emit_account_changes(changes.clone());
        Ok(changes)
    }

    fn handle(&mut self, request: Request, reply: oneshot::Sender<Outcome>) {
        let result = match request {
            Request::Validate { name } => return self.start_validation(&name, Some(reply)),
            Request::Status => Ok(Response::Status(self.status())),
            Request::Profiles => Ok(Response::Profiles(
                self.view
                    .profiles
                    .values()
                    .map(|p| self.profile_info(p))
                    .collect(),
            )),
            Request::ListAccounts => Ok(Response::Accounts(
                self.accounts.iter().map(|a| self.account_info(a)).collect(),
            )),
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
                        on_change: on_change_from(&spec.on_change)?,
                        portal: spec.portal,
                    })
                });
                let added = parsed.and_then(|new| {
                    let now = self.now();
                    self.mutate(|accounts, view, expiry| {
                        accounts
                            .add(new, view, expiry, now)
                            .map_err(|e| error_reply(&e))
                    })
                });
                // Adding accepts the token in the file: learn whose it is.
                if added.is_ok() && self.settings.validate_on_change {
                    self.start_validation(&name, None);
                }
                added.and_then(|_| self.show(&name))
            }
            Request::EditAccount { name, edit } => {
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
                        on_change: edit.on_change.as_deref().map(on_change_from).transpose()?,
                        portal: if edit.clear_portal {
                            Some(None)
                        } else {
                            edit.portal.map(Some)
                        },
                    })
                })();
                patch
                    .and_then(|patch| {
                        let now = self.now();
                        self.mutate(|accounts, view, expiry| {
                            accounts
                                .edit(&name, patch, view, expiry, now)
                                .map_err(|e| error_reply(&e))
                        })
                    })
                    .and_then(|_| self.show(&name))
            }
            Request::RemoveAccount { name } => self
                .mutate(|accounts, _, _| accounts.remove(&name).map_err(|e| error_reply(&e)))
                .map(|_| Response::Done),
            Request::Accept { name } => {
                let now = self.now();
                let accepted = self.mutate(|accounts, view, expiry| {
                    accounts
                        .accept(&name, view, expiry, now)
                        .map_err(|e| error_reply(&e))
                });
                self.resolved.remove(&name);
                if accepted.is_ok() && self.settings.validate_on_change {
                    self.start_validation(&name, None);
                }
                accepted.and_then(|_| self.show(&name))
            }
            Request::Credentials { name, force } => {
                return self.serve(&name, force, Waiter::legacy(reply));
            }
            Request::Serve { name, force } => {
                return self.serve(&name, force, Waiter::serve(reply));
            }
            Request::Subscribe | Request::Unsubscribe => {
                Err(bad_request("subscriptions are handled by the session"))
            }
        };
        let _ = reply.send(match result {
            Ok(response) => Outcome::Ok(response),
            Err(err) => Outcome::Err(err),
        });
    }

    /// Hands out an account's accepted credentials, refused in states where they would be
    /// the wrong ones unless `force`; those of SDK-provider profiles are resolved (once per
    /// account at a time) and cached until shortly before they end. Never logged.
    fn serve(&mut self, name: &str, force: bool, waiter: Waiter) {
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
        // While the file holds a newer token, tools keep getting the accepted one, if it
        // is still at hand (not after a restart, nor for a profile resolved from files
        // that now hold the new token).
        let held = status.state == AccountState::Changed
            && !account
                .pending_identity
                .as_ref()
                .is_some_and(|p| p.fingerprint == account.accepted.fingerprint)
            && (account.accepted.credentials.is_some() || cached.is_some());
        if !force
            && !held
            && let Some(why) = status.refusal(name)
        {
            return waiter.refuse(ErrorReply {
                code: serve::refusal_code(status.state),
                message: why,
            });
        }
        let expiry_source = account
            .accepted
            .expiry
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |e| e.source.label());
        let served = serve::Served {
            account: name.to_owned(),
            profile: account.profile.clone(),
            region: account.region.clone(),
            endpoint: account.target.endpoint().map(str::to_owned),
            account_id: account.account_id.clone(),
            expiry_source,
        };
        if let Some(credentials) = &account.accepted.credentials {
            let expires_at = account.accepted.expiry.as_ref().and_then(|e| e.at);
            tracing::debug!(account = name, "handed out credentials to a client");
            return waiter.answer(&served, credentials, expires_at.map(timestamp));
        }
        let resolvable = profile.is_some_and(|p| serve::resolvable(p.kind));
        if !resolvable {
            let kind = profile.map_or("missing", |p| p.kind.label());
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
        let Some(reply_to) = self.own_commands.upgrade() else {
            return;
        };
        let account = name.to_owned();
        tokio::spawn(async move {
            let result = validate::resolve(&job).await;
            let _ = reply_to
                .send(Command::Resolved {
                    account,
                    key,
                    result,
                })
                .await;
        });
    }

    fn finish_resolution(
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

    fn show(&self, name: &str) -> Result<Response, ErrorReply> {
        self.accounts
            .get(name)
            .map(|a| Response::Account(self.account_info(a)))
            .map_err(|e| error_reply(&e))
    }

    fn expiry(&self, profile: &Profile) -> Option<Expiry> {
        profile_expiry(
            profile,
            &self.seen,
            &self.process_expiry,
            self.settings.default_session_duration,
        )
    }

    fn profile_info(&self, profile: &Profile) -> ProfileInfo {
        let expiry = self.expiry(profile);
        ProfileInfo {
            name: profile.name.clone(),
            kind: profile.kind.label().to_owned(),
            region: profile.region.clone(),
            sources: profile
                .sources
                .iter()
                .map(|s| s.label().to_owned())
                .collect(),
            access_key_id: profile.masked_access_key_id.clone(),
            fingerprint: profile.fingerprint.clone(),
            expires_at: expiry.as_ref().and_then(|e| e.at).map(timestamp),
            expiry_source: Some(expiry.map_or_else(|| "unknown".to_owned(), |e| e.source.label())),
        }
    }

    fn account_info(&self, account: &cmdr_core::Account) -> AccountInfo {
        let profile = self.view.get(&account.profile);
        // Both of the accepted token: that is what tools are using.
        let expiry = account.accepted.expiry.clone();
        let state: AccountState = account.state(profile, self.now(), self.settings.warn_before);
        AccountInfo {
            name: account.name.clone(),
            profile: account.profile.clone(),
            region: account.region.clone(),
            target: account.target.label().to_owned(),
            endpoint: account.target.endpoint().map(str::to_owned),
            on_change: account.on_change.label().to_owned(),
            state: state.label().to_owned(),
            fingerprint: profile.and_then(|p| p.fingerprint.clone()),
            accepted_fingerprint: account.accepted.fingerprint.clone(),
            accepted_at: account.accepted.at.map(timestamp),
            expires_at: expiry.as_ref().and_then(|e| e.at).map(timestamp),
            expiry_source: Some(expiry.map_or_else(|| "unknown".to_owned(), |e| e.source.label())),
            account_id: account.account_id.clone(),
            portal: account.portal(profile).map(str::to_owned),
            profile_kind: profile.map(|p| p.kind.label().to_owned()),
        }
    }

    fn status(&self) -> StatusInfo {
        let now = self.now();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for account in self.accounts.iter() {
            *counts.entry(self.account_info(account).state).or_default() += 1;
        }
        let mut files: Vec<FileStatus> = [FileKind::Config, FileKind::Credentials]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| FileStatus {
                kind: kind.label().to_owned(),
                path: self.path_of(kind).display().to_string(),
                exists: self.health[i].exists,
                health: if self.health[i].error.is_some() {
                    "error"
                } else {
                    "ok"
                }
                .to_owned(),
                error_line: self.health[i].error.as_ref().and_then(|e| e.0),
                error: self.health[i].error.as_ref().map(|e| e.1.clone()),
            })
            .collect();
        files.push(FileStatus {
            kind: "sso_cache".to_owned(),
            path: self.settings.sso_cache.display().to_string(),
            exists: self.settings.sso_cache.is_dir(),
            health: "ok".to_owned(),
            error_line: None,
            error: None,
        });
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
            accounts: counts
                .into_iter()
                .map(|(state, count)| StateCount { state, count })
                .collect(),
            changes_while_down: self.changes_while_down.clone(),
            subscribers: u32::try_from(self.events.receiver_count()).unwrap_or(u32::MAX),
            endpoint: self.endpoint.clone(),
        }
    }
}
