//! The local socket: one daemon per socket, the peer checked on every accept, and a cap on
//! connections. How the socket is made private and who counts as "the same user" is
//! platform code: `socket/unix.rs` (a Unix socket in a 0700 directory, a lock file,
//! stale sockets reclaimed, the peer's uid) and `socket/windows.rs` (a named pipe with a
//! user-only security descriptor, first-instance creation, the peer's token SID).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::tokio::{Listener, prelude::*};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::EngineHandle;
use crate::session;
use crate::slots::{self, Admission, Slots, Throttled};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as platform;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as platform;
#[cfg(windows)]
pub use windows::pipe_sddl;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cmdrd is already running (socket {})", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("unsafe socket directory {}: {reason}; remove it (or have its owner remove it), or point XDG_RUNTIME_DIR or CMDR_SOCKET at a directory of your own", dir.display())]
    UnsafeDir { dir: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// Windows: the pipe name has an instance already (a cmdrd with another data
    /// directory, or a program squatting on the name).
    #[error("cmdrd is already running (socket {}), or another program holds that pipe name", .0.display())]
    PipeTaken(PathBuf),
}

/// A bound socket and the lock that makes it ours. Dropping it releases both.
pub struct Bound {
    pub listener: Listener,
    pub path: PathBuf,
    /// The per-socket lock (Unix); a named pipe's first instance is its own lock.
    _lock: Option<File>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BindError + '_ {
    move |source| BindError::Io {
        path: path.to_owned(),
        source,
    }
}

pub use platform::bind;
#[cfg(unix)]
pub use platform::current_euid;

/// Accepts connections until `stop_accepting`; each one gets a session task in a slot
/// ([`crate::slots`]: the oldest silent or idle session makes room for a newcomer).
pub async fn run(
    bound: Bound,
    engine: EngineHandle,
    max_connections: usize,
    stop_accepting: CancellationToken,
    sessions: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Slots::new(slots::effective_cap(max_connections));
    let cap = slots.cap();
    // Refusals each hold a descriptor for up to a second: only so many at once.
    let refusing = Arc::new(Semaphore::new((slots::FD_RESERVE / 2) as usize));
    let mut accept_failed = Throttled::new("accept failed");
    let mut refused = Throttled::new("connection refused: too many connections");
    let mut shed = Throttled::new("closed the oldest silent or idle connection to make room");
    loop {
        let stream = tokio::select! {
            () = stop_accepting.cancelled() => break,
            accepted = bound.listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    accept_failed.warn(&err);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !platform::peer_allowed(&stream) {
            continue;
        }
        match slots.admit() {
            (Admission::Admitted(slot), sheds) => {
                if sheds > 0 {
                    shed.warn(&format_args!("limit {cap}"));
                }
                let engine = engine.clone();
                let sessions = sessions.clone();
                tracker.spawn(session::run(stream, engine, sessions, slot));
            }
            (Admission::Full, _) => {
                refused.warn(&format_args!(
                    "limit {cap}, every session busy or subscribed"
                ));
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tracker.spawn(async move {
                        session::refuse(stream, format!("too many connections (limit {cap})"))
                            .await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(bound);
}
