//! The IAM Identity Center portals cmdrd keeps signed in: one keeper task per
//! `[sso-session]` (`portal/keeper.rs`), started and stopped as the config's sessions come
//! and go, told of every change to its token file in the SSO cache (the watcher already
//! reads those files; the engine forwards them), and asked for role credentials so that N
//! accounts on one portal share one token and one refresh.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cmdr_core::ProfileView;
use cmdr_proto::PortalInfo;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::timers::Clock;
use crate::validate::Failure;

mod keeper;

pub use cmdr_signin::keep::RoleCredentials;

/// A portal as the config names it: an sso-session with its start URL and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub session: String,
    pub start_url: String,
    pub region: String,
}

/// What a keeper tells the engine, which turns it into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    SignedIn {
        session: String,
        portal: String,
    },
    SigninRequired {
        session: String,
        portal: String,
        reason: String,
    },
}

/// What a keeper is asked.
enum Ask {
    /// Its token file changed (`None`: it is gone).
    File(Option<Vec<u8>>),
    /// A role's credentials, good for at least a while (see `keeper.rs`).
    Role {
        account_id: String,
        role: String,
        /// Cached credentials must last at least this long to be handed out.
        min_valid: chrono::Duration,
        reply: oneshot::Sender<Result<RoleCredentials, Failure>>,
    },
}

/// What a keeper says of itself: what `status` shows, and when it refreshes the portal's
/// token next (`None`: it will not by itself — no refresh token, or the session ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub info: PortalInfo,
    pub refresh_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A running keeper: where to ask it, what it says of itself.
#[derive(Clone)]
pub struct KeeperHandle {
    spec: Spec,
    asks: mpsc::Sender<Ask>,
    info: watch::Receiver<Kept>,
}

impl KeeperHandle {
    /// The role's credentials through the portal's one token (cached per role until
    /// shortly before they end).
    pub async fn role_credentials(
        &self,
        account_id: &str,
        role: &str,
    ) -> Result<RoleCredentials, Failure> {
        self.role_credentials_for(account_id, role, chrono::Duration::zero())
            .await
    }

    /// [`KeeperHandle::role_credentials`] that last at least `min_valid` (a renewal must
    /// not write what it would renew again at once).
    pub async fn role_credentials_for(
        &self,
        account_id: &str,
        role: &str,
        min_valid: chrono::Duration,
    ) -> Result<RoleCredentials, Failure> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask::Role {
            account_id: account_id.to_owned(),
            role: role.to_owned(),
            min_valid,
            reply,
        };
        let gone = || {
            Failure::Unreachable(format!(
                "the keeper of sso-session {} stopped",
                self.spec.session
            ))
        };
        self.asks.send(ask).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub fn info(&self) -> PortalInfo {
        self.info.borrow().info.clone()
    }

    /// When the keeper refreshes the portal's token next by itself.
    pub fn refresh_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.info.borrow().refresh_at
    }
}

/// Every keeper, by sso-session name.
pub struct Portals {
    keepers: BTreeMap<String, Running>,
    cache_dir: PathBuf,
    tracker: TaskTracker,
    cancel: CancellationToken,
    news: mpsc::Sender<News>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

struct Running {
    handle: KeeperHandle,
    stop: CancellationToken,
    /// The token file's bytes last forwarded.
    sent: Option<Vec<u8>>,
}

impl Portals {
    /// Keepers spawned on `tracker`, stopped with `cancel` (the engine's stage).
    pub fn new(
        cache_dir: PathBuf,
        tracker: TaskTracker,
        cancel: CancellationToken,
        news: mpsc::Sender<News>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Portals {
        Portals {
            keepers: BTreeMap::new(),
            cache_dir,
            tracker,
            cancel,
            news,
            clock,
            timeout,
        }
    }

    /// The sso-sessions of `view` that name a start URL and a region.
    pub fn specs(view: &ProfileView) -> Vec<Spec> {
        view.sso_sessions
            .iter()
            .filter_map(|(session, props)| {
                Some(Spec {
                    session: session.clone(),
                    start_url: props
                        .get("sso_start_url")
                        .filter(|v| !v.is_empty())?
                        .clone(),
                    region: props.get("sso_region").filter(|v| !v.is_empty())?.clone(),
                })
            })
            .collect()
    }

    /// The cache file name (in `~/.aws/sso/cache`) of an sso-session.
    pub fn file_name(session: &str) -> String {
        cmdr_signin::cache::path(std::path::Path::new(""), session)
            .display()
            .to_string()
    }

    /// Starts keepers for new sessions, stops those of sessions gone or changed, and tells
    /// each of a change to its token file (`cache`: the watcher's reads, by file name).
    pub fn sync(&mut self, specs: Vec<Spec>, cache: &BTreeMap<String, Vec<u8>>) {
        let wanted: BTreeMap<String, Spec> =
            specs.into_iter().map(|s| (s.session.clone(), s)).collect();
        self.keepers.retain(|name, running| {
            let keep = wanted.get(name) == Some(&running.handle.spec);
            if !keep {
                running.stop.cancel();
            }
            keep
        });
        for (name, spec) in wanted {
            let bytes = cache.get(&Self::file_name(&name)).cloned();
            if let Some(running) = self.keepers.get_mut(&name) {
                if running.sent != bytes {
                    running.sent.clone_from(&bytes);
                    // A keeper busy with a refresh reads the file itself before writing;
                    // a full queue only delays what it would learn anyway.
                    let _ = running.handle.asks.try_send(Ask::File(bytes));
                }
                continue;
            }
            let stop = self.cancel.child_token();
            let (asks, rx) = mpsc::channel(64);
            let (info_tx, info) = watch::channel(Kept {
                info: keeper::info_of(&spec, None, None),
                refresh_at: None,
            });
            let keeper = keeper::Keeper::new(
                spec.clone(),
                self.cache_dir.join(Self::file_name(&name)),
                bytes.clone(),
                rx,
                self.news.clone(),
                info_tx,
                Arc::clone(&self.clock),
                self.timeout,
            );
            self.tracker.spawn(keeper.run(stop.clone()));
            self.keepers.insert(
                name,
                Running {
                    handle: KeeperHandle { spec, asks, info },
                    stop,
                    sent: bytes,
                },
            );
        }
    }

    pub fn get(&self, session: &str) -> Option<KeeperHandle> {
        self.keepers.get(session).map(|r| r.handle.clone())
    }

    /// The keeper whose portal has this start URL.
    pub fn by_url(&self, url: &str) -> Option<KeeperHandle> {
        let trim = |u: &str| u.trim_end_matches('/').to_owned();
        self.keepers
            .values()
            .find(|r| trim(&r.handle.spec.start_url) == trim(url))
            .map(|r| r.handle.clone())
    }

    /// What `status` lists.
    pub fn infos(&self) -> Vec<PortalInfo> {
        self.keepers.values().map(|r| r.handle.info()).collect()
    }
}
