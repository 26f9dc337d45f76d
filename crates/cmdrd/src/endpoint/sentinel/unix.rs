//! The sentinel on Unix: it forks away from the `cmdrctl` that started it and waits on the
//! port's lock (`flock`, held by cmdrd and its guard through one open file).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::{WAIT_FOR_NEXT_RUN, lock_file, sentinel_file};
use crate::endpoint::vnode::{On, Watch};

/// The sentinel's `main`. It forks at once, so the `cmdrctl` that started it waits only
/// for the parent's exit; an `Err` here is a usage error (exit 2).
pub fn run(args: &[OsString]) -> ExitCode {
    let [socket, port] = args else {
        return ExitCode::from(2);
    };
    let socket = PathBuf::from(socket);
    let Some(port) = port.to_str().and_then(|p| p.parse::<u16>().ok()) else {
        return ExitCode::from(2);
    };
    // Only ever cmdrd's own directories for this socket (never a path from an argument).
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return ExitCode::from(2);
    };
    let tokens = cmdr_config::endpoint_tokens_dir(&socket, dir);
    let containers = cmdr_config::container_tokens_dir(&socket, dir);
    let Ok(single) = cmdr_config::open_own(&sentinel_file(&tokens, port), false) else {
        return ExitCode::FAILURE;
    };
    if single.try_lock().is_err() {
        return ExitCode::SUCCESS; // one runs already
    }
    // SAFETY: no thread was started in this process yet (cmdrd's `main` dispatches here
    // first), so the child may go on with any call.
    match unsafe { libc::fork() } {
        -1 => return ExitCode::FAILURE,
        0 => {}
        _ => return ExitCode::SUCCESS,
    }
    // SAFETY: setsid has no preconditions; its own session, no terminal's signals.
    unsafe { libc::setsid() };
    let _ = std::env::set_current_dir("/");
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(super::NAME) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
    let lock = lock_file(&tokens, port);
    let port_dir = |root: &Path| root.join(port.to_string());
    loop {
        let Ok(held) = open_lock(&lock) else {
            break; // removed: the run stopped cleanly
        };
        if held.lock().is_err() {
            break;
        }
        // cmdrd and its guard are both gone.
        if !held.metadata().is_ok_and(|m| m.nlink() > 0) {
            break; // a clean stop removed the file: the tokens went with it
        }
        crate::endpoint::guard::wipe(&port_dir(&tokens), &port_dir(&containers));
        // Watched before the lock is let go, so the next run's mark is not missed.
        let mut watch = Watch::new();
        let watching = watch
            .as_mut()
            .is_some_and(|w| w.add(&lock, On::Changed) && w.add(dir, On::Gone));
        drop(held);
        match watch {
            Some(watch) if watching && next_run(&lock, dir, &watch) => {}
            _ => break,
        }
    }
    drop(single);
    ExitCode::SUCCESS
}

/// Waits for a cmdrd holding `lock` (it marks the file after taking it): `false` when the
/// file or the socket's directory went, or after [`WAIT_FOR_NEXT_RUN`].
fn next_run(lock: &Path, dir: &Path, watch: &Watch) -> bool {
    let until = Instant::now() + WAIT_FOR_NEXT_RUN;
    loop {
        if !dir.is_dir() {
            return false;
        }
        match open_lock(lock).map(|f| f.try_lock()) {
            Err(_) => return false,
            Ok(Err(std::fs::TryLockError::WouldBlock)) => return true,
            Ok(_) => {} // free: no run yet (the probe's lock went with its file)
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || !watch.wait(left) {
            return false;
        }
    }
}

/// The lock file, read-only, not through a symlink.
fn open_lock(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}
