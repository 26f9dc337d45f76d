//! The local socket: a private directory, one daemon per user (lock file), stale sockets
//! reclaimed, the peer's uid checked on every accept, and a cap on connections.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cmdr_client::SocketLocation;
use interprocess::local_socket::tokio::{Listener, prelude::*};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::EngineHandle;
use crate::session;
use crate::slots::{self, Admission, Slots, Throttled};
use crate::store::create_private_dir;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cmdrd is already running (socket {})", .0.display())]
    AlreadyRunning(PathBuf),
    #[error("unsafe socket directory {}: {reason}", dir.display())]
    UnsafeDir { dir: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
}

/// A bound socket and the lock that makes it ours. Dropping it releases both.
pub struct Bound {
    pub listener: Listener,
    pub path: PathBuf,
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BindError + '_ {
    move |source| BindError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Takes the per-user lock, reclaims a stale socket, and listens (mode 0600).
pub fn bind(location: &SocketLocation, is_default: bool) -> Result<Bound, BindError> {
    let path = location.path.clone();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    create_private_dir(&dir).map_err(io_err(&dir))?;
    check_dir(&dir, is_default)?;

    let lock_path = dir.join(format!(
        "{}.lock",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let lock = options.open(&lock_path).map_err(io_err(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(BindError::AlreadyRunning(path)),
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(BindError::Io {
                path: lock_path,
                source,
            });
        }
    }

    // We hold the lock: whatever socket is there belongs to a dead daemon, unless a
    // daemon with another lock answers on it.
    match path.symlink_metadata() {
        Ok(meta) => {
            if !is_socket(&meta) {
                return Err(BindError::NotASocket(path));
            }
            if answers(&path) {
                return Err(BindError::AlreadyRunning(path));
            }
            tracing::info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(BindError::Io { path, source }),
    }

    let name = path
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(io_err(&path))?;
    let options = ListenerOptions::new().name(name).reclaim_name(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
        options.mode(0o600)
    };
    let listener = options.create_tokio().map_err(io_err(&path))?;
    Ok(Bound {
        listener,
        path,
        _lock: lock,
    })
}

#[cfg(unix)]
fn is_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    meta.file_type().is_socket()
}

#[cfg(not(unix))]
fn is_socket(_meta: &std::fs::Metadata) -> bool {
    true
}

#[cfg(unix)]
fn answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[cfg(not(unix))]
fn answers(_path: &Path) -> bool {
    false
}

/// The socket directory must be a real directory owned by us. The default one is ours by
/// name, so its mode is set to 0700; a directory the user chose is only warned about.
#[cfg(unix)]
fn check_dir(dir: &Path, is_default: bool) -> Result<(), BindError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = dir.symlink_metadata().map_err(io_err(dir))?;
    let unsafe_dir = |reason: String| BindError::UnsafeDir {
        dir: dir.to_owned(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symlink".to_owned()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".to_owned()));
    }
    let euid = current_euid();
    if meta.uid() != euid {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by us (uid {euid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        if is_default {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
        } else {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "socket directory is accessible to others; connections are still checked by uid");
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_dir(_dir: &Path, _is_default: bool) -> Result<(), BindError> {
    Ok(())
}

#[cfg(unix)]
pub fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Accepts connections until `stop_accepting`; each one gets a session task in a slot
/// ([`crate::slots`]: the oldest silent or idle session makes room for a newcomer).
pub async fn serve(
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
        if !peer_allowed(&stream) {
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

#[cfg(unix)]
fn peer_allowed(stream: &interprocess::local_socket::tokio::Stream) -> bool {
    let euid = current_euid();
    match stream.peer_creds() {
        Ok(creds) if creds.euid() == Some(euid) => true,
        Ok(creds) => {
            tracing::warn!(peer_uid = ?creds.euid(), peer_pid = ?creds.pid(), "refused a connection from another user");
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "refused a connection: cannot read peer credentials");
            false
        }
    }
}

#[cfg(not(unix))]
fn peer_allowed(_stream: &interprocess::local_socket::tokio::Stream) -> bool {
    // Windows: the pipe's DACL admits only this user; peer credentials give only a pid.
    true
}
