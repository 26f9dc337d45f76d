//! The endpoint's sentinel (Linux, macOS): the backstop for when cmdrd and its guard die
//! together (`systemctl --user kill -s KILL cmdrd`, systemd-oomd, any kill of the
//! service's whole cgroup or process group). Then nobody is left to remove the token
//! files, the port is free, and another local user who binds it receives the token of
//! every running `exec`'d process and can answer with their own keys.
//!
//! The sentinel is started by `cmdrctl` (`exec`, `env --serve`, `container env`), so it
//! lives where those processes live (the user's session), not in cmdrd's service. One runs
//! per port (`<tokens>-PORT.sentinel` is locked while it does). It waits on a lock, with
//! no timer: cmdrd holds `<tokens>-PORT.lock` for as long as it serves that port, and its
//! guard holds the same open file, so the lock is free only once both are gone. Then:
//! - the lock file was removed: a clean stop (cmdrd removes it with its tokens); it exits;
//! - else a crash: it removes the port's tokens (a fetch then fails closed: the SDK has no
//!   token to send), and waits, at most an hour, for the next cmdrd on the same port (that
//!   run marks the lock file once it holds it) to guard it in turn. The socket's directory
//!   gone (the session ended) ends it too; so does the hour, when the next run moved to
//!   another port (whose own sentinel the next `cmdrctl exec` starts).
//!
//! cmdrd takes the lock before it writes a token of the port, so a sentinel's late removal
//! can never hit a new run's tokens; it waits a moment for a sentinel that holds the lock
//! while it removes old ones ([`PortLock::take`]).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::vnode::{On, Watch};

/// The hidden first argument that makes the cmdrd binary a sentinel:
/// `cmdrd --sentinel-endpoint SOCKET PORT`.
pub const FLAG: &str = "--sentinel-endpoint";
/// The name it runs under (`arg0`; on Linux also its `comm`).
pub const NAME: &str = "cmdr-sentinel";
/// How long cmdrd waits for a sentinel that holds the lock while it removes old tokens.
const TAKE_WAIT: Duration = Duration::from_secs(2);
/// How long a sentinel waits after a crash for a cmdrd on the same port.
const WAIT_FOR_NEXT_RUN: Duration = Duration::from_secs(60 * 60);

/// `<tokens>-PORT.lock`: held by the cmdrd serving `port` (and its guard).
pub fn lock_file(tokens: &Path, port: u16) -> PathBuf {
    beside(tokens, &format!("-{port}.lock"))
}

/// `<tokens>-PORT.sentinel`: held by the one sentinel of `port`.
pub fn sentinel_file(tokens: &Path, port: u16) -> PathBuf {
    beside(tokens, &format!("-{port}.sentinel"))
}

fn beside(tokens: &Path, suffix: &str) -> PathBuf {
    let mut name = tokens.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// cmdrd's hold on its port's tokens, from before it writes one until it exits.
pub struct PortLock {
    file: File,
    path: PathBuf,
}

impl PortLock {
    /// Takes the lock of `port`'s tokens, waiting at most [`TAKE_WAIT`] for a sentinel
    /// removing an earlier run's, then marks the file so a sentinel waiting for this run
    /// wakes (and finds the lock held).
    pub fn take(tokens: &Path, port: u16) -> std::io::Result<PortLock> {
        let path = lock_file(tokens, port);
        let file = cmdr_config::open_own(&path, false)?;
        let until = Instant::now() + TAKE_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::other(format!(
                        "{} is locked by another process (an endpoint guard or sentinel of an earlier run that did not exit?)",
                        path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(err)) => return Err(err),
            }
        }
        file.set_len(0)?;
        (&file).write_all(format!("{}\n", std::process::id()).as_bytes())?;
        Ok(PortLock { file, path })
    }

    /// The open lock, for the guard to hold with cmdrd.
    pub fn raw(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// A clean stop, the tokens removed: the file goes (the lock stays held until exit),
    /// so the sentinel that gets the lock next knows there is nothing to remove.
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

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
    if let Ok(name) = std::ffi::CString::new(NAME) {
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
        super::guard::wipe(&port_dir(&tokens), &port_dir(&containers));
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
