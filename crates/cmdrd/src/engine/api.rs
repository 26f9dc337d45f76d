//! The engine's typed API: one [`EngineHandle`] method per operation, taking and returning
//! daemon values (the protocol's `Request`s and `Response`s are `session.rs`'s business),
//! and [`EngineEvent`], what the engine publishes to its subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use cmdr_core::{AccountPatch, NewAccount};
use cmdr_proto::{
    AccountDetail, AccountInfo, ErrorCode, ErrorReply, Event, Page, ProfileInfo, StatusInfo,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::Settings;
use crate::handout::{ChildEnv, HandOut};
use crate::validate::Identity;

/// Where the engine sends one operation's answer.
pub type Reply<T> = oneshot::Sender<Result<T, ErrorReply>>;

/// One operation asked of the engine, with where its answer goes.
pub enum Command {
    Status(Reply<StatusInfo>),
    Profiles(Reply<Vec<ProfileInfo>>),
    ProfilesPage {
        after: Option<String>,
        limit: u32,
        reply: Reply<Page<ProfileInfo>>,
    },
    Accounts(Reply<Vec<AccountInfo>>),
    AccountsPage {
        after: Option<String>,
        limit: u32,
        reply: Reply<Page<AccountInfo>>,
    },
    Show {
        name: String,
        reply: Reply<AccountInfo>,
    },
    Detail {
        name: String,
        reply: Reply<AccountDetail>,
    },
    Add {
        account: NewAccount,
        reply: Reply<AccountInfo>,
    },
    Edit {
        name: String,
        patch: AccountPatch,
        reply: Reply<AccountInfo>,
    },
    Remove {
        name: String,
        reply: Reply<()>,
    },
    Accept {
        name: String,
        reply: Reply<Accepted>,
    },
    Validate {
        name: String,
        reply: Reply<Identity>,
    },
    HandOut {
        name: String,
        force: bool,
        reply: Reply<HandOut>,
    },
    /// Where a process started for the account finds its credentials (the endpoint's URL
    /// and token, the child files), after the hand-out's checks.
    ChildEnv {
        name: String,
        reply: Reply<ChildEnv>,
    },
    /// The same for a container on the `cmdr` network: the gateway's URL and the
    /// account's token in the directory its containers mount (`endpoint/container.rs`).
    ContainerEnv {
        name: String,
        reply: Reply<ChildEnv>,
    },
    /// How each account renews and when, a page at a time (`accounts list --json`).
    RenewalsPage {
        after: Option<String>,
        limit: u32,
        reply: Reply<Page<cmdr_proto::RenewalPlan>>,
    },
    /// Renew the account through its portal now (`cmdrctl renew`).
    RenewNow {
        name: String,
        reply: Reply<RenewedNow>,
    },
}

/// What `renew` did: the account after, and when its new credentials end.
#[derive(Debug, Clone)]
pub struct RenewedNow {
    pub account: AccountInfo,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What `accept` did: the account as it is now, and whether it took anything it did not
/// have (false: nothing to accept).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub account: AccountInfo,
    pub changed: bool,
}

/// An event as the engine publishes it: the wire event, and for an account event the
/// account as it is right after (the desktop's `ask`/`renew` decisions need it; no
/// subscriber asks the engine again for each event).
#[derive(Debug, Clone)]
pub struct EngineEvent {
    pub event: Event,
    pub account: Option<Arc<AccountInfo>>,
    /// Whether cmdrd renews that account's token itself before it ends, with nobody's
    /// help (`renews_at`): its expiry is then no alarm.
    pub auto_renew: bool,
}

/// A cheap handle to the engine, for sessions, the endpoint and the desktop.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<EngineEvent>,
    pub(super) subscribers: Arc<AtomicU32>,
    pub(super) settings: Arc<Settings>,
    /// Events that hold for this whole run, given to each subscriber before any other
    /// (they happened at start, before anyone could subscribe): `endpoint_moved`.
    pub(super) standing: Arc<[EngineEvent]>,
}

/// One client subscribed over the socket, counted for `status` while this is alive (the
/// daemon's own subscribers, such as desktop notifications, are not clients).
pub struct Subscriber(Arc<AtomicU32>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn stopped() -> ErrorReply {
    ErrorReply {
        code: ErrorCode::Internal,
        message: "cmdrd is stopping".to_owned(),
    }
}

/// An answer to come: the command is queued already (so one client's commands are taken
/// in the order sent); awaiting this waits for the engine's answer.
pub struct Pending<T>(Option<oneshot::Receiver<Result<T, ErrorReply>>>);

impl<T> Pending<T> {
    pub async fn answer(self) -> Result<T, ErrorReply> {
        match self.0 {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(stopped())),
            None => Err(stopped()),
        }
    }
}

impl EngineHandle {
    /// Queues a command now and returns its answer to come: a client may go on with other
    /// things, such as its events, while a slow one (an STS call) runs.
    async fn queue<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Pending<T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(command(tx)).await.is_ok();
        Pending(sent.then_some(rx))
    }

    pub async fn status(&self) -> Pending<StatusInfo> {
        self.queue(Command::Status).await
    }

    pub async fn profiles(&self) -> Pending<Vec<ProfileInfo>> {
        self.queue(Command::Profiles).await
    }

    pub async fn profiles_page(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Pending<Page<ProfileInfo>> {
        self.queue(|reply| Command::ProfilesPage {
            after,
            limit,
            reply,
        })
        .await
    }

    pub async fn accounts(&self) -> Pending<Vec<AccountInfo>> {
        self.queue(Command::Accounts).await
    }

    pub async fn accounts_page(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Pending<Page<AccountInfo>> {
        self.queue(|reply| Command::AccountsPage {
            after,
            limit,
            reply,
        })
        .await
    }

    pub async fn show(&self, name: String) -> Pending<AccountInfo> {
        self.queue(|reply| Command::Show { name, reply }).await
    }

    pub async fn detail(&self, name: String) -> Pending<AccountDetail> {
        self.queue(|reply| Command::Detail { name, reply }).await
    }

    pub async fn add(&self, account: NewAccount) -> Pending<AccountInfo> {
        self.queue(|reply| Command::Add { account, reply }).await
    }

    pub async fn edit(&self, name: String, patch: AccountPatch) -> Pending<AccountInfo> {
        self.queue(|reply| Command::Edit { name, patch, reply })
            .await
    }

    pub async fn remove(&self, name: String) -> Pending<()> {
        self.queue(|reply| Command::Remove { name, reply }).await
    }

    pub async fn accept(&self, name: String) -> Pending<Accepted> {
        self.queue(|reply| Command::Accept { name, reply }).await
    }

    pub async fn validate(&self, name: String) -> Pending<Identity> {
        self.queue(|reply| Command::Validate { name, reply }).await
    }

    /// The account's credentials, refused (unless `force`) in states where they would be
    /// the wrong ones.
    pub async fn hand_out(&self, name: String, force: bool) -> Pending<HandOut> {
        self.queue(|reply| Command::HandOut { name, force, reply })
            .await
    }

    pub async fn child_env(&self, name: String) -> Pending<ChildEnv> {
        self.queue(|reply| Command::ChildEnv { name, reply }).await
    }

    pub async fn container_env(&self, name: String) -> Pending<ChildEnv> {
        self.queue(|reply| Command::ContainerEnv { name, reply })
            .await
    }

    pub async fn renewals_page(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Pending<Page<cmdr_proto::RenewalPlan>> {
        self.queue(|reply| Command::RenewalsPage {
            after,
            limit,
            reply,
        })
        .await
    }

    pub async fn renew_now(&self, name: String) -> Pending<RenewedNow> {
        self.queue(|reply| Command::RenewNow { name, reply }).await
    }

    /// The daemon's settings, for what sessions do beside the engine (the console URL).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.events.subscribe()
    }

    /// What a new subscriber is told first (see [`EngineHandle::standing`]'s field).
    pub fn standing(&self) -> Arc<[EngineEvent]> {
        Arc::clone(&self.standing)
    }

    pub fn count_subscriber(&self) -> Subscriber {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber(Arc::clone(&self.subscribers))
    }
}
