//! The engine: the one task that owns the current view, the accounts and the state file.
//! File snapshots and client requests arrive as commands; changes leave as events on a
//! bounded broadcast channel (a slow subscriber lags; it never slows the others).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cmdr_core::{
    AccountChange, AccountPatch, Accounts, Detail, Expiry, ExpirySource, FileKind, IdentityCheck,
    NewAccount, PerFile, Profile, ProfileKind, ProfileView, SeenTokens, diff,
};
use cmdr_proto::{
    AccountDetail, AccountInfo, ErrorCode, ErrorReply, Event, EventKind, FileStatus,
    PROTOCOL_VERSION, Page, StatusInfo,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::handout::{Cached, ChildEnv, Grant, HandOut};
use crate::store::{JournalEntry, Store};
use crate::timers::{self, Clock, Deadline, Timers};
use crate::validate::{self, Failure, FileText, Identity, Job, Resolved};
use crate::watch::{Delivery, FileRead, Reread, Snapshot, TokenFiles};
use crate::wire::{self, account_event, bad_request, error_reply, profile_event, timestamp};

/// Retries of a file that failed to parse, in case it was caught mid-write.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// What the engine's own tasks report when they end.
enum Done {
    /// A validation finished.
    Validated {
        account: String,
        fingerprint: Option<String>,
        result: Result<Identity, Failure>,
    },
    /// Credentials of an SDK-provider profile were resolved.
    Resolved {
        account: String,
        key: crate::handout::CacheKey,
        result: Result<Resolved, Failure>,
    },
    /// An account's renewal through its portal got its role credentials (or not); the
    /// engine registers the fingerprint it will write before it writes (`renewal.rs`).
    Fetched {
        account: String,
        result: Result<cmdr_signin::keep::RoleCredentials, String>,
    },
    /// A renewal's write into the credentials file finished (or failed).
    Renewed {
        account: String,
        result: Result<(), String>,
    },
    /// An SSO account's role credentials fetched anew (`cmdrctl renew`).
    Refetched {
        account: String,
        result: Result<DateTime<Utc>, String>,
    },
}

/// The next report of a portal keeper; never, while there are no portals.
async fn recv_news(
    news: &mut Option<mpsc::Receiver<crate::portal::News>>,
) -> Option<crate::portal::News> {
    match news {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub struct Engine {
    settings: Arc<Settings>,
    store: Store,
    view: ProfileView,
    /// The last bytes of each file that parsed, secrets redacted: a broken file keeps
    /// these (with the secrets the view had), so no token is held twice.
    good: PerFile<Vec<u8>>,
    /// The text the view was built from, secrets and all, for the SDK's providers; kept
    /// only while an account needs it (`Engine::sdk_needs_files`).
    sdk_files: PerFile<Option<FileText>>,
    /// When the credentials of `credential_process` profiles end, as the process said when
    /// last validated; forgotten when the profile changes.
    process_expiry: BTreeMap<String, DateTime<Utc>>,
    sso_cache: BTreeMap<String, Vec<u8>>,
    /// Token files the config names that cannot be used, with why (`status`, events).
    sso_problems: BTreeMap<String, FileProblem>,
    health: PerFile<FileHealth>,
    accounts: Accounts,
    seen: SeenTokens,
    events: broadcast::Sender<EngineEvent>,
    /// Clients subscribed over the socket (see [`Subscriber`]).
    subscribers: Arc<AtomicU32>,
    /// Asks the watcher to read the files again: the engine reads none itself.
    reread: Reread,
    /// A request that binds a profile, waiting for a fresh read of the files that holds
    /// its secrets (commands wait meanwhile, so they keep their order).
    awaiting: Option<Awaiting>,
    /// The last snapshot was laid aside for lacking a token file (`on_snapshot`).
    laid_aside: bool,
    retries: usize,
    started_at: DateTime<Utc>,
    /// What changed while cmdrd was not running, with the account each line is about:
    /// shown by `status` until that account accepts.
    changes_while_down: Vec<(Option<String>, String)>,
    /// A failed save is retried with the next change.
    dirty: bool,
    /// Why the state could not be written last time (a full or read-only data directory),
    /// until a write succeeds: `status` shows it, as the state file's health.
    save_error: Option<String>,
    /// Directories the watcher rescans because it cannot watch them (`FileWatcher::polling`).
    polling: Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<std::path::PathBuf>>>,
    clock: Arc<dyn Clock>,
    timers: Timers,
    /// While a client's request runs: the accounts it changed (see `run`).
    touched: Option<Vec<String>>,
    next_deadline: Option<DateTime<Utc>>,
    /// Validations in flight, with the clients waiting for each: at most one per account.
    validations: HashMap<String, Vec<Reply<Identity>>>,
    /// Validations and resolutions in flight; each ends with the command it reports.
    /// Aborted with the engine, so none outlives it.
    tasks: JoinSet<Done>,
    /// When a file that failed to parse is read again.
    retry_at: Option<tokio::time::Instant>,
    /// Where the credentials endpoint listens (`status`) and its per-account tokens.
    endpoint: Option<crate::endpoint::Access>,
    /// The AWS files of processes on the endpoint (while it is enabled).
    child_files: Option<crate::child_files::ChildFiles>,
    /// Credentials resolved for accounts on SDK-provider profiles, until shortly before
    /// they end or the account's token or profile changes.
    resolved: HashMap<String, Cached>,
    /// Resolutions in flight, with the clients waiting for each: at most one per account.
    resolving: HashMap<String, Vec<(handout::Deliver, Grant)>>,
    /// When `unvalidated` accounts are validated again (`retry.rs`).
    revalidate: retry::Retries,
    /// Bound profiles whose keys changed in one half, held in their previous token
    /// (`settle.rs`).
    held: BTreeMap<String, settle::HeldPair>,
    /// The portals kept signed in (`portal.rs`), once the daemon hands them over.
    portals: Option<crate::portal::Portals>,
    /// What their keepers report.
    portal_news: Option<mpsc::Receiver<crate::portal::News>>,
    /// Accounts renewed through their portal whose new token the file should now hold:
    /// account → the fingerprint written (`renewal.rs`).
    renewing: HashMap<String, renewal::Pending>,
    /// When each auto-renewing account is renewed next (wall clock).
    renew_at: BTreeMap<String, DateTime<Utc>>,
    /// Who waits for a renewal they asked for (`cmdrctl renew`), by account.
    renew_waiters: HashMap<String, Vec<api::Reply<api::RenewedNow>>>,
    /// Failures in a row of a renewal being retried, while the retry runs.
    renew_failures: HashMap<String, u32>,
    /// The last renewal of each account: when it completed, and its token's end.
    renewed: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
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
        move |p: &Profile| $crate::engine::files::profile_expiry(p, seen, process, session)
    }};
}

mod api;
mod files;
mod handout;
mod persist;
mod renewal;
mod requests;
mod retry;
mod settle;
mod status;
mod validation;

pub use api::{Accepted, Command, EngineEvent, EngineHandle, Pending, Reply, Subscriber};
use files::{FileHealth, FileProblem, release_free_memory};
use requests::Awaiting;

impl Engine {
    /// Where `status` learns which directories are rescanned instead of watched.
    pub fn show_polling(
        &mut self,
        polling: tokio::sync::watch::Receiver<std::collections::BTreeSet<std::path::PathBuf>>,
    ) {
        self.polling = Some(polling);
    }

    /// Hands the engine the portals to keep (`portal.rs`) and what their keepers report;
    /// they start at once for the sso-sessions the files name.
    pub fn keep_portals(
        &mut self,
        portals: crate::portal::Portals,
        news: mpsc::Receiver<crate::portal::News>,
    ) {
        self.portals = Some(portals);
        self.portal_news = Some(news);
        self.sync_portals();
        self.schedule_renewals();
    }

    /// Builds the engine from the state file and the files as they are now (`read`, the
    /// watcher's reader, given the token files to look up first), and works out what
    /// changed while the daemon was not running.
    pub fn start(
        settings: Arc<Settings>,
        mut read: impl FnMut(&TokenFiles) -> Snapshot,
        reread: Reread,
        clock: Arc<dyn Clock>,
        endpoint: Option<crate::endpoint::Access>,
    ) -> anyhow::Result<(Engine, EngineHandle, mpsc::Receiver<Command>)> {
        let child_files = endpoint
            .as_ref()
            .map(|_| crate::child_files::ChildFiles::new(settings.child_files_dir()));
        let mut store = Store::new(settings.state_file());
        let stored = store.load()?;
        let (events, _) = broadcast::channel(settings.event_buffer);
        let (commands, rx) = mpsc::channel(256);
        let mut engine = Engine {
            settings,
            store,
            view: ProfileView::default(),
            good: PerFile::default(),
            sdk_files: PerFile::default(),
            process_expiry: BTreeMap::new(),
            sso_cache: BTreeMap::new(),
            sso_problems: BTreeMap::new(),
            health: PerFile::default(),
            accounts: Accounts::from_list(stored.accounts),
            seen: stored.seen.clone(),
            events: events.clone(),
            subscribers: Arc::default(),
            reread,
            awaiting: None,
            laid_aside: false,
            retries: 0,
            started_at: clock.now(),
            changes_while_down: Vec::new(),
            dirty: false,
            save_error: None,
            polling: None,
            clock,
            timers: Timers::default(),
            touched: None,
            next_deadline: None,
            validations: HashMap::new(),
            tasks: JoinSet::new(),
            retry_at: None,
            endpoint,
            child_files,
            resolved: HashMap::new(),
            resolving: HashMap::new(),
            revalidate: retry::Retries::default(),
            held: BTreeMap::new(),
            portals: None,
            portal_news: None,
            renewing: HashMap::new(),
            renew_at: BTreeMap::new(),
            renew_waiters: HashMap::new(),
            renew_failures: HashMap::new(),
            renewed: HashMap::new(),
        };
        // Nobody listens yet, and `report_changes_while_down` tells what changed while the
        // daemon was down: of the effects only the retry is kept, and the state is saved
        // below; the accounts are reconciled with the view there too.
        // Nobody has told the reader which token files the files name yet: when the cache
        // holds more files than are read, the first read may lack one; then the files are
        // read again, with the names the parse told (once: the second is taken in as is).
        let mut parsed = engine.parse_files(read(&engine.reread.named()));
        if parsed.lacking {
            parsed = engine.parse_files(read(&engine.reread.named()));
        }
        let taken = engine.take_files(parsed);
        engine.retry(taken.effects.retry);
        if let Some(view) = taken.view {
            let view = engine.hold_half_pairs(view);
            engine.adopt(view, taken.healthy);
        }
        release_free_memory();
        engine.issue_tokens();
        engine.report_changes_while_down(&stored.seen);
        engine.save();
        // Accounts whose target had not answered before the restart: try again soon.
        let waiting: Vec<String> = engine
            .accounts
            .iter()
            .filter(|a| a.unreachable && !a.confirmed)
            .map(|a| a.name.clone())
            .collect();
        for name in waiting {
            engine.after_validation(&name);
        }
        let standing = engine.standing_events();
        let handle = EngineHandle {
            commands,
            events,
            subscribers: Arc::clone(&engine.subscribers),
            settings: Arc::clone(&engine.settings),
            standing,
        };
        Ok((engine, handle, rx))
    }

    /// The events of this run's start that every subscriber is told first: the endpoint
    /// could not get its port back.
    fn standing_events(&self) -> Arc<[EngineEvent]> {
        let moved = self.endpoint.as_ref().and_then(|e| {
            let old_url = e.info.moved_from.clone()?;
            Some(EngineEvent {
                event: Event {
                    at: timestamp(self.started_at),
                    kind: EventKind::EndpointMoved {
                        old_url,
                        new_url: e.info.url.clone(),
                    },
                },
                account: None,
                auto_renew: false,
            })
        });
        moved.into_iter().collect()
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut snapshots: mpsc::Receiver<Delivery>,
        cancel: CancellationToken,
    ) {
        self.tick();
        loop {
            // One timer, for the next wall-clock deadline only; none when nothing is due.
            let next = [self.next_deadline, self.next_release(), self.next_renewal()]
                .into_iter()
                .flatten()
                .min();
            let sleep = next.map(|d| timers::sleep_for(d, self.now()));
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(delivery) = snapshots.recv() => {
                    let taken = self.on_snapshot(delivery.snapshot);
                    let laid_aside = taken.is_none();
                    if let Some(effects) = taken {
                        self.apply(effects);
                    }
                    release_free_memory();
                    // A read laid aside answers nobody: the fresh read it asked for does.
                    if let Some(answers) = delivery.answers.filter(|_| !laid_aside) {
                        self.resume(answers);
                    }
                }
                // While a request waits for the files, the next ones wait in the channel.
                command = commands.recv(), if self.awaiting.is_none() => match command {
                    Some(command) => {
                        self.touched = Some(Vec::new());
                        self.handle(command);
                    }
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(done) => self.done(done),
                    Err(err) => tracing::error!(error = %err, "a validation task failed"),
                },
                () = tokio::time::sleep_until(self.retry_at.unwrap_or_else(tokio::time::Instant::now)),
                    if self.retry_at.is_some() =>
                {
                    self.retry_at = None;
                    self.reread.rescan();
                }
                () = tokio::time::sleep_until(self.awaiting.as_ref().map_or_else(tokio::time::Instant::now, |a| a.until)),
                    if self.awaiting.is_some() =>
                {
                    tracing::warn!("the files were not read in time; the request goes on without them");
                    self.resume(u64::MAX);
                }
                () = tokio::time::sleep_until(self.revalidate.next().unwrap_or_else(tokio::time::Instant::now)),
                    if self.revalidate.next().is_some() =>
                {
                    for name in self.revalidate.take_due(tokio::time::Instant::now()) {
                        tracing::debug!(account = %name, "validating again: the target had not answered");
                        self.start_validation(&name, None);
                    }
                }
                Some(news) = recv_news(&mut self.portal_news) => self.portal_news_arrived(news),
                () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
            }
            self.renew_due();
            self.release_settled();
            // After a client's request, only the accounts it changed (cheap with many
            // accounts); after anything else, all of them.
            match self.touched.take() {
                Some(names) => self.tick_accounts(&names),
                None => self.tick(),
            }
        }
        self.tasks.abort_all();
        self.emit(EventKind::DaemonStopping);
        self.save();
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Validated {
                account,
                fingerprint,
                result,
            } => {
                self.finish_validation(&account, fingerprint.as_deref(), result);
                self.after_validation(&account);
            }
            Done::Resolved {
                account,
                key,
                result,
            } => self.finish_resolution(&account, key, result),
            Done::Fetched { account, result } => self.finish_fetch(&account, result),
            Done::Renewed { account, result } => self.finish_renewal(&account, result),
            Done::Refetched { account, result } => self.finish_refetch(&account, result),
        }
    }

    /// Schedules the next validation of an account its target has not answered yet
    /// (`unvalidated`), with backoff; anything else needs none. Only with automatic
    /// validation (`validate_on_change`): otherwise nothing is ever sent unasked.
    fn after_validation(&mut self, name: &str) {
        let waiting = self.settings.validate_on_change
            && self
                .accounts
                .get(name)
                .is_ok_and(|a| a.unreachable && !a.confirmed);
        if waiting {
            let delay = self.revalidate.schedule(name, tokio::time::Instant::now());
            tracing::info!(account = name, retry_in = ?delay, "target unreachable; will validate again");
        } else {
            self.revalidate.clear(name);
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// [`Engine::tick`] for the accounts `names` only; the timer may wake early for a
    /// deadline that moved, and the full tick then sets it right.
    fn tick_accounts(&mut self, names: &[String]) {
        let now = self.now();
        for name in names {
            let account = self.accounts.get(name).ok();
            let deadline = account.map(|a| Deadline {
                account: &a.name,
                profile: &a.profile,
                expires_at: a.accepted.expiry.as_ref().and_then(|e| e.when()),
            });
            let (events, pending) =
                self.timers
                    .poll_one(name, deadline, now, self.settings.warn_before);
            for event in events {
                self.emit(event);
            }
            if let Some(p) = pending {
                self.next_deadline = Some(self.next_deadline.map_or(p, |n| n.min(p)));
            }
            self.schedule_renewal(name);
        }
    }

    /// Fires the expiry events that are due and arms the timer for the next deadline.
    fn tick(&mut self) {
        let now = self.now();
        let deadlines: Vec<(String, String, Option<DateTime<Utc>>)> = self
            .accounts
            .iter()
            .map(|a| {
                let at = a.accepted.expiry.as_ref().and_then(|e| e.when());
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
        self.schedule_renewals();
    }
    fn emit(&self, kind: EventKind) {
        tracing::info!(event = %kind.type_name(), account = ?kind.account(), "event");
        let found = kind.account().and_then(|name| self.accounts.get(name).ok());
        let account = found.map(|a| Arc::new(self.account_info(a)));
        // Renewed by cmdrd before its token ends: its expiry is no alarm (the desktop).
        let auto_renew = found.is_some_and(|a| self.renews_at(a).is_some());
        // No receivers is fine: nobody is listening.
        let _ = self.events.send(EngineEvent {
            event: Event {
                at: timestamp(self.now()),
                kind,
            },
            account,
            auto_renew,
        });
    }

    fn emit_account_changes(&self, changes: Vec<AccountChange>) {
        for event in self.account_events(changes) {
            self.emit(event);
        }
    }

    fn account_events(&self, changes: Vec<AccountChange>) -> Vec<EventKind> {
        let mut events = Vec::with_capacity(changes.len());
        for mut change in changes {
            // The files may say nothing about expiry; the engine's estimate is still news.
            if let AccountChange::TokenChanged {
                profile, expiry, ..
            } = &mut change
                && expiry.is_none()
            {
                *expiry = self.view.get(profile).and_then(|p| self.expiry(p));
            }
            events.push(account_event(change));
        }
        events
    }
    /// Every account gets its endpoint token at start: processes started for it before a
    /// restart on the same port find a valid token again at the path they hold.
    fn issue_tokens(&self) {
        let Some(endpoint) = &self.endpoint else {
            return;
        };
        for account in self.accounts.iter() {
            if let Err(err) = endpoint.tokens.issue(&account.name) {
                tracing::warn!(account = %account.name, error = %err, "cannot write the account's endpoint token");
            }
        }
    }

    /// Rewrites the AWS files of processes on the endpoint from the last good files.
    pub(super) fn write_child_files(&mut self) {
        if let Some(files) = &mut self.child_files {
            files.update(&self.good);
        }
    }
}
