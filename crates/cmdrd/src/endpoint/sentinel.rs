//! The endpoint's sentinel (Linux, macOS, Windows): the backstop for when cmdrd and its guard die
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

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::run;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::run;

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

/// `<tokens>-PORT.run` (Windows): the pid and creation time of the cmdrd serving `port`,
/// written once it holds the lock, removed at a clean stop. (A Windows lock is mandatory:
/// nobody could read the lock file while it is held.)
#[cfg(windows)]
pub fn run_file(tokens: &Path, port: u16) -> PathBuf {
    beside(tokens, &format!("-{port}.run"))
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
    /// Held open (and locked) until dropped; only Unix hands it on (to the guard).
    #[cfg_attr(not(unix), expect(dead_code, reason = "held for its lock, never read"))]
    file: File,
    /// What a clean stop removes: the lock file (Unix), the run file (Windows).
    mark: PathBuf,
}

impl PortLock {
    /// Takes the lock of `port`'s tokens, waiting at most [`TAKE_WAIT`] for a sentinel
    /// removing an earlier run's, then marks it so a sentinel waiting for this run wakes
    /// (and finds the lock held): the pid written into the lock file (Unix) or the run file
    /// (Windows).
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
        #[cfg(unix)]
        let mark = {
            use std::io::Write as _;
            file.set_len(0)?;
            (&file).write_all(format!("{}\n", std::process::id()).as_bytes())?;
            path
        };
        #[cfg(windows)]
        let mark = {
            let mark = run_file(tokens, port);
            cmdr_config::write_atomic(&mark, windows::this_run().as_bytes(), 0o600)?;
            mark
        };
        Ok(PortLock { file, mark })
    }

    /// The open lock, for the guard to hold with cmdrd.
    #[cfg(unix)]
    pub fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.file.as_raw_fd()
    }

    /// A clean stop, the tokens removed: the mark goes (the lock stays held until exit),
    /// so the sentinel that gets the lock next knows there is nothing to remove.
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.mark);
    }
}
