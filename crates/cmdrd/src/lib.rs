//! cmdrd as a library: `run(settings, shutdown)` starts the watcher, the engine and the
//! socket server, and stops them in order when `shutdown` resolves. `main.rs` is thin, so
//! tests can run the daemon in-process with their own paths.

pub mod child_files;
pub mod cli;
pub mod console;
pub mod desktop;
pub mod endpoint;
pub mod engine;
pub mod expiry;
pub mod instance;
pub mod log;
pub mod serve;
pub mod server;
pub mod session;
pub mod slots;
pub mod store;
pub mod validate;
pub mod watch;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cmdr_config::{Settings, renew};
pub use server::BindError;

use crate::engine::Engine;
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
    let _instance = instance::claim(&settings.data_dir, &settings.socket.path)?;
    let bound = server::bind(&settings.socket, is_default)?;
    if let Some(note) = &settings.socket.note {
        tracing::warn!("{note}");
    }

    let targets = Targets {
        config: settings.aws_config.clone(),
        credentials: settings.aws_credentials.clone(),
        sso_cache: settings.sso_cache.clone(),
    };
    let snapshot = Snapshot::read(&targets);
    let last = watch::Last::of(&snapshot);
    let (rescan_tx, rescan_rx) = mpsc::channel(1);
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
    let (mut engine, handle, commands) = Engine::start(
        settings.clone(),
        snapshot,
        rescan_tx,
        Arc::new(expiry::SystemClock),
        endpoint.as_ref().map(|e| e.access.clone()),
    )?;

    let tracker = TaskTracker::new();
    let stop_watching = CancellationToken::new();
    let stop_accepting = CancellationToken::new();
    let stop_engine = CancellationToken::new();
    let stop_sessions = CancellationToken::new();
    let (polling, polled) = tokio::sync::watch::channel(Default::default());
    engine.show_polling(polled);
    tracker.spawn(
        FileWatcher {
            targets,
            debounce: settings.debounce,
            out: snapshot_tx,
            rescan: rescan_rx,
            last,
            last_quick: None,
            polling,
        }
        .run(stop_watching.clone()),
    );
    let engine_task = tracker.spawn(engine.run(commands, snapshot_rx, stop_engine.clone()));
    tracker.spawn(desktop::run(
        handle.clone(),
        settings.desktop,
        stop_sessions.clone(),
    ));
    let stop_endpoint = CancellationToken::new();
    let endpoint_url = endpoint.as_ref().map(|e| e.access.info.url.clone());
    let tokens = endpoint.as_ref().map(|e| e.access.tokens.clone());
    if let Some(endpoint) = endpoint {
        tracker.spawn(endpoint::serve(
            endpoint,
            handle.clone(),
            stop_endpoint.clone(),
            tracker.clone(),
        ));
    }
    let socket_path = bound.path.clone();
    let server_task = tracker.spawn(server::serve(
        bound,
        handle,
        settings.max_connections,
        stop_accepting.clone(),
        stop_sessions.clone(),
        tracker.clone(),
    ));
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
    // Stop accepting, tell subscribers `daemon_stopping`, flush state, remove the socket.
    stop_accepting.cancel();
    stop_endpoint.cancel();
    stop_watching.cancel();
    let _ = server_task.await;
    stop_engine.cancel();
    let _ = engine_task.await;
    stop_sessions.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}
