//! cmdrd as a library: `run(settings, shutdown, ready)` starts the watcher, the engine, the
//! socket's sessions and the endpoint, and stops them in one order (`shutdown.rs`) when
//! `shutdown` resolves. `main.rs` is thin, so
//! tests can run the daemon in-process with their own paths.

pub mod child_files;
pub mod cli;
pub mod console;
pub mod desktop;
pub mod endpoint;
pub mod engine;
pub mod handout;
pub mod instance;
pub mod log;
pub mod portal;
pub mod session;
pub mod shutdown;
pub mod slots;
pub mod socket;
pub mod store;
pub mod timers;
pub mod validate;
pub mod watch;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

pub use cmdr_config::{Settings, renew};
pub use socket::BindError;

use crate::engine::Engine;
use crate::shutdown::{Stage, Stages};
use crate::watch::{FileWatcher, Snapshot, Targets};

/// Runs the daemon until `shutdown` resolves. `ready` is called once the socket accepts.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let is_default = settings.socket.source == cmdr_client::SocketSource::Default;
    // One daemon per data directory first, so a second one touches neither state nor socket.
    let instance = instance::claim(&settings.data_dir)?;
    let bound = socket::bind(&settings.socket, is_default)?;
    instance.note_socket(&settings.data_dir, &settings.socket.path);
    if let Some(note) = &settings.socket.note {
        tracing::warn!("{note}");
    }

    let targets = Targets {
        config: settings.aws_config.clone(),
        credentials: settings.aws_credentials.clone(),
        sso_cache: settings.sso_cache.clone(),
    };
    let (reread, asked) = watch::Reread::new();
    // What the engine starts from, for the watcher to compare its reads with.
    let mut last = watch::Last::default();
    let (snapshot_tx, snapshot_rx) = mpsc::channel(4);
    let endpoint = if settings.endpoint.enabled {
        Some(endpoint::bind(
            &settings.endpoint,
            &endpoint::Paths {
                port_file: &settings.endpoint_port_file(),
                tokens: &settings.endpoint_tokens_dir(),
                legacy_token: &settings.endpoint_token_file(),
                containers: &settings.container_tokens_dir(),
            },
        )?)
    } else {
        None
    };
    let clock: Arc<dyn timers::Clock> = Arc::new(timers::SystemClock);
    let (mut engine, handle, commands) = Engine::start(
        settings.clone(),
        |named| {
            let snapshot = Snapshot::read(&targets, named);
            last = watch::Last::of(&snapshot);
            snapshot
        },
        reread,
        Arc::clone(&clock),
        endpoint.as_ref().map(|e| e.access.clone()),
    )?;

    let tracker = TaskTracker::new();
    let mut stages = Stages::new(tracker.clone());
    // One keeper per portal, stopped with the engine (tracked, so the end waits for them).
    let (news_tx, news_rx) = mpsc::channel(64);
    engine.keep_portals(
        portal::Portals::new(
            settings.sso_cache.clone(),
            tracker.clone(),
            stages.token(Stage::Engine),
            news_tx,
            clock,
            Duration::from_secs(30),
        ),
        news_rx,
    );
    let (polling, polled) = tokio::sync::watch::channel(Default::default());
    engine.show_polling(polled);
    let watcher = FileWatcher {
        targets,
        debounce: settings.debounce,
        out: snapshot_tx,
        asked,
        pending: None,
        last,
        last_quick: None,
        polling,
    };
    stages.spawn(Stage::Intake, watcher.run(stages.token(Stage::Intake)));
    let stop_engine = stages.token(Stage::Engine);
    stages.spawn(
        Stage::Engine,
        engine.run(commands, snapshot_rx, stop_engine),
    );
    let desktop = desktop::run(
        handle.clone(),
        settings.desktop,
        stages.token(Stage::Sessions),
    );
    stages.spawn(Stage::Sessions, desktop);
    // Summaries of coalesced log lines, when main.rs set logging up with a coalescer.
    if let Some(coalescer) = log::Coalescer::installed() {
        stages.spawn(
            Stage::Sessions,
            coalescer.flush(stages.token(Stage::Sessions)),
        );
    }
    let endpoint_url = endpoint.as_ref().map(|e| e.access.info.url.clone());
    let tokens = endpoint.as_ref().map(|e| e.access.tokens.clone());
    let mut endpoint = endpoint;
    let guard = endpoint.as_mut().and_then(|e| e.guard.take());
    let port_lock = endpoint.as_mut().and_then(|e| e.port_lock.take());
    if let Some(endpoint) = endpoint {
        let stop = stages.token(Stage::Intake);
        let run = endpoint::run(endpoint, handle.clone(), stop, tracker.clone());
        stages.spawn(Stage::Intake, run);
    }
    let socket_path = bound.path.clone();
    let accept = socket::run(
        bound,
        handle,
        settings.max_connections,
        stages.token(Stage::Intake),
        stages.token(Stage::Sessions),
        tracker.clone(),
    );
    stages.spawn(Stage::Intake, accept);
    tracing::info!(
        socket = %socket_path.display(),
        config = %settings.aws_config.display(),
        credentials = %settings.aws_credentials.display(),
        endpoint = endpoint_url.as_deref().unwrap_or("disabled"),
        version = env!("CARGO_PKG_VERSION"),
        "cmdrd ready"
    );
    ready();

    shutdown.await;
    tracing::info!("stopping");
    // A token must not outlive the port it was issued for: whoever binds the port next
    // would receive it from running processes. So the tokens go before the port does.
    if let Some(tokens) = tokens {
        tokens.remove_all();
    }
    // The listeners close below: a guard that exits from now on is not replaced.
    if let Some(guard) = &guard {
        guard.stopping();
    }
    // The stages in their order (`shutdown.rs`), then the tracker, then the socket file.
    stages.stop().await;
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    // The port goes last: its guard (`endpoint/guard.rs`) lets go once the tokens are gone
    // and cmdrd's own listeners are closed.
    if let Some(guard) = guard {
        guard.release();
    }
    drop(port_lock);
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}
