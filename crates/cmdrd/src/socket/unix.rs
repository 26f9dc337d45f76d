//! The Unix side of the socket: a 0700 directory owned by us, a lock file beside the
//! socket (one daemon per socket), stale sockets reclaimed, mode 0600, and the peer's
//! euid checked on every accept.

use std::path::Path;

use cmdr_client::SocketLocation;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};

use super::{BindError, Bound, io_err};
use cmdr_config::create_private_dir;

/// Takes the per-user lock, reclaims a stale socket, and listens (mode 0600).
pub fn bind(location: &SocketLocation, is_default: bool) -> Result<Bound, BindError> {
    let path = location.path.clone();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        // Nothing is made in a place another user controls: its ancestors first (and a
        // file or symlink in its place is named as such).
        unsafe_dir_error(
            &dir,
            cmdr_client::unix::check_socket_dir(&dir, current_euid()),
        )?;
    }
    create_private_dir(&dir).map_err(io_err(&dir))?;
    check_dir(&dir, is_default)?;

    let lock_path = dir.join(format!(
        "{}.lock",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let lock = cmdr_config::open_own(&lock_path, false).map_err(io_err(&lock_path))?;
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
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
        options.mode(0o600)
    };
    let listener = options.create_tokio().map_err(io_err(&path))?;
    Ok(Bound {
        listener,
        path,
        _lock: Some(lock),
    })
}

fn is_socket(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    meta.file_type().is_socket()
}

fn answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The socket directory must pass the clients' own rule
/// ([`cmdr_client::unix::check_socket_dir`]): a real directory owned by us that nobody
/// else can write, under ancestors that nobody else can swap it out of. The default one is
/// ours by name, so its mode is first narrowed to 0700; a directory the user chose that
/// others can read is only warned about.
fn check_dir(dir: &Path, is_default: bool) -> Result<(), BindError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = dir.symlink_metadata().map_err(io_err(dir))?;
    let euid = current_euid();
    let ours = meta.is_dir() && !meta.file_type().is_symlink() && meta.uid() == euid;
    if ours && meta.mode() & 0o077 != 0 {
        if is_default {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
        } else if meta.mode() & 0o022 == 0 {
            tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "socket directory is readable by others; connections are still checked by uid");
        }
    }
    unsafe_dir_error(dir, cmdr_client::unix::check_socket_dir(dir, euid))
}

/// The socket directory check's refusal as cmdrd says it.
fn unsafe_dir_error(
    dir: &Path,
    checked: Result<(), cmdr_client::UnsafeDir>,
) -> Result<(), BindError> {
    checked.map_err(|unsafe_dir| BindError::UnsafeDir {
        dir: dir.to_owned(),
        reason: if unsafe_dir.path == dir {
            unsafe_dir.reason
        } else {
            unsafe_dir.to_string()
        },
    })
}

pub use cmdr_client::unix::current_euid;

pub(super) fn peer_allowed(stream: &interprocess::local_socket::tokio::Stream) -> bool {
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
