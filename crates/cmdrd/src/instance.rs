//! One daemon per data directory: an exclusive lock on `cmdrd.lock` in the data directory
//! (on Windows `%LOCALAPPDATA%\cmdr\`), held for the daemon's life, and a note of the
//! holder's socket (`cmdrd.socket`) so a second daemon can say where the first one is.
//!
//! Two daemons on different sockets would otherwise both own `state.json` and overwrite
//! each other's accounts. The note is a separate file because a Windows lock is mandatory:
//! nobody else could read a lock file's content while it is held.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::socket::BindError;
use cmdr_config::{create_private_dir, write_atomic};

const LOCK_FILE: &str = "cmdrd.lock";
const NOTE_FILE: &str = "cmdrd.socket";
/// A socket path is far shorter; a note longer than this is not ours.
const NOTE_MAX: u64 = 4096;

/// The claim on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct Instance {
    _lock: File,
}

/// Takes the data directory's lock. Fails with [`BindError::AlreadyRunning`] (naming the
/// other daemon's socket) when it is taken.
pub fn claim(data_dir: &Path) -> Result<Instance, BindError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BindError::Io { path, source }
    };
    create_private_dir(data_dir).map_err(io(data_dir))?;
    let lock_path = data_dir.join(LOCK_FILE);
    // Not through a planted link, and not a lock someone else (root) owns.
    let lock = cmdr_config::open_own(&lock_path, false).map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(BindError::AlreadyRunning(
                read_note(data_dir).unwrap_or_else(|| data_dir.join(NOTE_FILE)),
            ));
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(BindError::Io {
                path: lock_path,
                source,
            });
        }
    }
    Ok(Instance { _lock: lock })
}

impl Instance {
    /// Notes `socket` for a second daemon (and for cmdrctl's "runs on another socket"):
    /// only once it is bound, so a start refused there points nobody at it.
    pub fn note_socket(&self, data_dir: &Path, socket: &Path) {
        let note = data_dir.join(NOTE_FILE);
        let mut text = socket.as_os_str().to_string_lossy().into_owned();
        text.push('\n');
        // Only a hint: a full or read-only data directory must not keep this daemon from
        // starting (it then serves read-only; `status` says so).
        if let Err(err) = write_atomic(&note, text.as_bytes(), 0o600) {
            tracing::warn!(path = %note.display(), error = %err, "cannot note the socket for a second daemon");
        }
    }
}

/// The socket of the daemon holding the lock, if its note is there and sane.
fn read_note(data_dir: &Path) -> Option<PathBuf> {
    let file = File::open(data_dir.join(NOTE_FILE)).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(NOTE_MAX).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty() && !line.chars().any(char::is_control)).then(|| PathBuf::from(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_claim_names_the_first_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = claim(dir.path()).expect("first claim");
        first.note_socket(dir.path(), Path::new("/run/a/cmdrd.sock"));
        match claim(dir.path()) {
            Err(err @ BindError::AlreadyRunning(_)) => assert_eq!(
                err.to_string(),
                "cmdrd is already running (socket /run/a/cmdrd.sock)"
            ),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(first);
        let second = claim(dir.path()).expect("claim after release");
        // Not noted before its socket is bound (a start refused there points nobody at it).
        assert_eq!(
            read_note(dir.path()),
            Some(PathBuf::from("/run/a/cmdrd.sock"))
        );
        second.note_socket(dir.path(), Path::new("/run/b/cmdrd.sock"));
        assert_eq!(
            read_note(dir.path()),
            Some(PathBuf::from("/run/b/cmdrd.sock"))
        );
    }

    #[test]
    fn a_note_with_control_characters_is_not_repeated() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(NOTE_FILE), "/x\u{1b}[2J\n").expect("write");
        assert_eq!(read_note(dir.path()), None);
    }
}
