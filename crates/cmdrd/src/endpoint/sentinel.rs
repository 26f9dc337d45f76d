//! The endpoint's sentinel (Linux, macOS, Windows): the backstop for when cmdrd and its
//! guard die together (`systemctl --user kill -s KILL cmdrd`, systemd-oomd, any kill of
//! the service's whole cgroup or process group). Then nobody is left to remove the token
//! files, the port is free, and another local user who binds it receives the token of
//! every running `exec`'d process and can answer with their own keys.
//!
//! The sentinel is started by `cmdrctl` (`exec`, `env --serve`, `container env`), so it
//! lives where those processes live (the user's session), not in cmdrd's service. One runs
//! per port (`<tokens>-PORT.sentinel` is locked while it does). On Linux it also reserves
//! the port for this uid (`sentinel/unix.rs`), so nobody else can bind it even for a
//! moment. It waits with no timer: on Unix on `<tokens>-PORT.lock`, which cmdrd holds for
//! as long as it serves that port and its guard holds through the same open file, so the
//! lock is free only once both are gone; on Windows on the two processes
//! (`sentinel/windows.rs`). Then it removes the port's tokens (a fetch fails closed: the
//! SDK has no token to send) and waits for the next cmdrd on the same port (which marks
//! the lock file, or on Windows the run file, once it holds the lock) to guard it in turn:
//! after a crash and after a clean stop alike, since processes started before follow a
//! restart on the same port. It ends only when the socket's directory goes (the session
//! ended): a run on another port does not end it, since a later run may serve this port
//! again, and processes started for it would follow.
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
pub use unix::{buddy, run};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{buddy, run};

/// The hidden first argument that makes the cmdrd binary a sentinel:
/// `cmdrd --sentinel-endpoint SOCKET PORT`.
pub const FLAG: &str = "--sentinel-endpoint";
/// The hidden first argument of the sentinel's buddy: `cmdrd --sentinel-buddy SOCKET PORT`,
/// a process beside the sentinel that starts another when it is killed on its own.
pub const BUDDY_FLAG: &str = "--sentinel-buddy";
/// Back-off between attempts to start a buddy, doubling up to the second.
const BUDDY_FIRST: Duration = Duration::from_millis(500);
const BUDDY_MAX: Duration = Duration::from_secs(60);
/// The name it runs under (`arg0`; on Linux also its `comm`).
pub const NAME: &str = "cmdr-sentinel";
/// How long cmdrd waits for a sentinel that holds the lock while it removes old tokens.
const TAKE_WAIT: Duration = Duration::from_secs(2);
/// A sentinel waiting for the next run looks again this often even with no event (a
/// missed one cannot keep it waiting for ever).
const WAKE_ANYWAY: Duration = Duration::from_secs(60 * 60);

/// How long a sentinel started by a buddy waits for the killed sentinel's lock, which may be
/// released a moment after the buddy heard of its death.
const LOCK_RELEASE: Duration = Duration::from_secs(2);

/// Takes the lock that keeps one sentinel per port (`single`, `<tokens>-PORT.sentinel`):
/// false when another sentinel holds it. One started by a buddy waits for it a moment.
fn the_only_one(single: &File, by_buddy: bool) -> bool {
    let until = Instant::now()
        + if by_buddy {
            LOCK_RELEASE
        } else {
            Duration::ZERO
        };
    while single.try_lock().is_err() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// `<tokens>-PORT.lock`: held by the cmdrd serving `port` (and its guard).
pub fn lock_file(tokens: &Path, port: u16) -> PathBuf {
    beside(tokens, &format!("-{port}.lock"))
}

/// `<tokens>-PORT.run` (Windows): the pid and creation time of the cmdrd serving `port`,
/// written once it holds the lock. (A Windows lock is mandatory: nobody could read the lock
/// file while it is held.)
#[cfg(windows)]
pub fn run_file(tokens: &Path, port: u16) -> PathBuf {
    beside(tokens, &format!("-{port}.run"))
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
        {
            use std::io::Write as _;
            file.set_len(0)?;
            (&file).write_all(format!("{}\n", std::process::id()).as_bytes())?;
        }
        // In place, not renamed over: Windows refuses to replace a file another process
        // has open (the sentinel reads it); a reader that sees it half written waits for
        // the next change.
        #[cfg(windows)]
        {
            use std::io::Write as _;
            let run = cmdr_config::open_own(&run_file(tokens, port), false)?;
            run.set_len(0)?;
            (&run).write_all(windows::this_run().as_bytes())?;
        }
        sweep_other_ports(tokens, port);
        Ok(PortLock { file })
    }

    /// The open lock, for the guard to hold with cmdrd.
    #[cfg(unix)]
    pub fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd as _;
        self.file.as_raw_fd()
    }
}

/// Whether the sentinel of `port` runs: then the port is reserved for this uid by it
/// (Linux), and the next cmdrd joins it as it joins its guard.
pub use cmdr_config::endpoint_sentinel_runs as holds;

/// Removes the lock, run and sentinel files of every other port whose sentinel is gone
/// (none is left to end: a live one stays, since a later run may serve its port again,
/// and processes started for it would follow), and the offers (Unix) nobody answers.
fn sweep_other_ports(tokens: &Path, port: u16) {
    let (Some(dir), Some(stem)) = (tokens.parent(), tokens.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{}-", stem.to_string_lossy());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((number, kind)) = rest.split_once('.') else {
            continue;
        };
        let Some(other) = number.parse::<u16>().ok().filter(|n| *n != port) else {
            continue;
        };
        let path = entry.path();
        // An offer of another port (Unix): a sentinel's only while that sentinel runs, a
        // guard's while a guard of an earlier run may still hold its port (asked without
        // connecting: a holder answers any connection with its sockets).
        #[cfg(unix)]
        if matches!(kind, "guard.sock" | "sentinel.sock") {
            let live = holds(tokens, other)
                || (kind == "guard.sock" && crate::endpoint::guard::holds(tokens));
            if !live {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if !matches!(kind, "lock" | "run" | "sentinel") || holds(tokens, other) {
            continue;
        }
        // Held: its run or its sentinel is alive (the next look removes it).
        if let Ok(file) = std::fs::File::open(&path)
            && file.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}
