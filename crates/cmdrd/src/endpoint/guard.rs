//! The endpoint's guard (Linux, macOS, Windows): a small process, `cmdr-guard`, that holds the endpoint's
//! listening sockets beside cmdrd, and outlives it when cmdrd dies without cleaning up
//! (`kill -9`, the OOM killer, an abort).
//!
//! Why: a process started with `cmdrctl exec` keeps its endpoint URL and reads its token
//! file on every fetch. If cmdrd died and another local user bound the freed port, that
//! process would send the token there and take whatever credentials came back — another
//! account's, the attacker's. The guard closes that gap: while it holds the sockets nobody
//! else can bind the port; when cmdrd dies it removes every token file first (a fetch then
//! fails closed: the SDK has no token to send), refuses connections at once (Unix; on
//! Windows they wait for their timeout), and offers the sockets to the next cmdrd
//! (`handover.rs`), which serves the same sockets and retires it ([`retire`]), so
//! processes started before the crash follow the new cmdrd with new tokens in the same
//! files. The sentinel takes the sockets from the same offer while cmdrd runs. A clean stop ([`Guard::release`]) removes the tokens itself and lets the guard go.
//!
//! The guard exits on a clean stop, and, after a crash, when an hour passed with no cmdrd
//! back (the tokens are long gone; only the port's continuity is lost). It removes only
//! the tokens of its own port: an old guard that outlives its retirement never touches a
//! later run's. While cmdrd runs, a thread of cmdrd waits on the guard: a guard that dies
//! (killed, out of memory) is reported and replaced, so the protection does not silently
//! end. Its pid is in a file beside the tokens, checked before it is stopped. How it is done per platform:
//! `guard/unix.rs` (inherited descriptors, a pipe whose end tells of cmdrd's death) and
//! `guard/windows.rs` (sockets duplicated with `WSADuplicateSocketW`, the same pipe as the
//! guard's standard input).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(unix)]
pub use unix::{Raw, holds, retire, run};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;
#[cfg(windows)]
pub(in crate::endpoint) use windows::{Process, creation_time, open_named};
#[cfg(windows)]
pub use windows::{Raw, retire, run};

/// The hidden first argument that makes the cmdrd binary a guard.
pub const FLAG: &str = "--guard-endpoint";
/// What the guard offers the listening sockets on, for the next cmdrd and the sentinel to
/// take (`handover.rs`; Unix).
#[cfg(unix)]
pub type Offer = std::os::unix::net::UnixListener;
#[cfg(windows)]
pub type Offer = std::convert::Infallible;

/// The guard's process name: not `cmdrd`, so `pkill cmdrd` leaves it (Linux).
#[cfg(unix)]
const NAME: &str = "cmdr-guard";
/// How long [`retire`] waits for an old guard to let its port go.
const RETIRE_WAIT: Duration = Duration::from_secs(2);
/// How long the port is held after a crash for a cmdrd that may come back.
const HOLD_AFTER_CRASH: Duration = Duration::from_secs(60 * 60);
/// Back-off between attempts to replace a guard that died, doubling up to the second.
const RESTART_FIRST: Duration = Duration::from_millis(500);
const RESTART_MAX: Duration = Duration::from_secs(60);

/// The guard's pid file, beside the token directories: the pid, then what names that one
/// process (its start time) where the platform says it.
pub fn pid_file(tokens: &Path) -> PathBuf {
    let mut name = tokens.as_os_str().to_owned();
    name.push("-guard.pid");
    PathBuf::from(name)
}

/// What a guard is started with.
struct Spec {
    /// What it holds until it exits: the listening sockets, and on Unix the port's token
    /// lock (`sentinel.rs`), so that lock is free only once cmdrd and its guard are gone.
    listeners: Vec<Raw>,
    /// Where it hands them on (cmdrd keeps it open to give each guard it starts).
    #[cfg(unix)]
    offer: Option<Offer>,
    /// `cmdrd.endpoint/PORT`: this run's token directory, the only one it removes.
    tokens: PathBuf,
    /// `cmdrd.containers/PORT`: this run's container directories (their token files go).
    containers: PathBuf,
    pid_file: PathBuf,
}

/// Removes the tokens of this port, the accounts' and the containers': cmdrd died.
pub(super) fn wipe(tokens: &Path, containers: &Path) {
    let _ = super::Tokens::clear(tokens);
    let _ = super::container::ContainerDirs::clear_port_tokens(containers);
}

/// cmdrd's end of a running guard. Dropped without [`Guard::release`] — cmdrd died —
/// the guard removes the tokens and keeps the port.
pub struct Guard {
    /// Set at a clean stop: a guard that exits is then not replaced.
    released: Arc<AtomicBool>,
    /// The pipe to the current guard: a byte on it is a clean stop, its end cmdrd's death.
    pipe: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Wakes the supervisor from a back-off; dropped, it ends it.
    wake: mpsc::Sender<()>,
    /// The supervisor ended: the guard exited after the release.
    done: mpsc::Receiver<()>,
    pid_file: PathBuf,
    /// The offer's socket file, removed at a clean stop.
    offer_path: Option<PathBuf>,
}

impl Guard {
    /// Starts a guard holding `listeners` (duplicates; cmdrd keeps its own; on Unix the
    /// port's token lock among them) for `port`, handing them on at `offer` (Unix),
    /// whose tokens are under `tokens`/PORT and `containers`/PORT, and a thread that
    /// replaces it if it dies while cmdrd runs.
    pub fn spawn(
        listeners: &[Raw],
        offer: Option<Offer>,
        tokens: &Path,
        containers: &Path,
        port: u16,
    ) -> std::io::Result<Guard> {
        #[cfg(unix)]
        let offer_path = offer
            .as_ref()
            .and_then(|o| o.local_addr().ok()?.as_pathname().map(Path::to_owned));
        #[cfg(windows)]
        let offer_path = offer.map(|never| match never {});
        let spec = Spec {
            listeners: listeners.to_vec(),
            #[cfg(unix)]
            offer,
            tokens: tokens.join(port.to_string()),
            containers: containers.join(port.to_string()),
            pid_file: pid_file(tokens),
        };
        let (child, pipe) = imp::start(&spec)?;
        let released = Arc::new(AtomicBool::new(false));
        let pipe = Arc::new(Mutex::new(pipe));
        let (wake, woken) = mpsc::channel();
        let (ended, done) = mpsc::channel();
        let pid_file = spec.pid_file.clone();
        let watch = Supervisor {
            spec,
            released: Arc::clone(&released),
            pipe: Arc::clone(&pipe),
            woken,
            ended,
        };
        std::thread::Builder::new()
            .name("endpoint-guard".into())
            .spawn(move || watch.run(child))?;
        Ok(Guard {
            released,
            pipe,
            wake,
            done,
            pid_file,
            offer_path,
        })
    }

    /// cmdrd is stopping: a guard that exits from now on is not replaced (the listeners it
    /// would be given are closing).
    pub fn stopping(&self) {
        self.released.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
    }

    /// A clean stop (the tokens are gone already): the guard exits and frees the port
    /// before cmdrd does, so a cmdrd started right after binds it again.
    pub fn release(self) {
        self.stopping();
        if let Ok(mut pipe) = self.pipe.lock() {
            let _ = pipe.write_all(b"q");
            let _ = pipe.flush();
        }
        let _ = self.done.recv_timeout(RETIRE_WAIT);
        let _ = std::fs::remove_file(&self.pid_file);
        if let Some(path) = &self.offer_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The thread that waits on the guard (and reaps it) while cmdrd runs.
struct Supervisor {
    spec: Spec,
    released: Arc<AtomicBool>,
    pipe: Arc<Mutex<Box<dyn Write + Send>>>,
    woken: mpsc::Receiver<()>,
    ended: mpsc::Sender<()>,
}

impl Supervisor {
    fn run(self, mut child: Child) {
        let mut backoff = RESTART_FIRST;
        'guard: loop {
            let status = child.wait();
            if self.released.load(Ordering::SeqCst) {
                break;
            }
            tracing::warn!(status = ?status.ok(), "the endpoint's guard exited while cmdrd runs; starting another (until then, a crash of cmdrd would leave the port free)");
            loop {
                if let Err(mpsc::RecvTimeoutError::Disconnected) = self.woken.recv_timeout(backoff)
                {
                    // No `Guard` to wake this any more: wait out the back-off all the same.
                    std::thread::sleep(backoff);
                }
                if self.released.load(Ordering::SeqCst) {
                    break 'guard;
                }
                match imp::start(&self.spec) {
                    Ok((next, pipe)) => {
                        if let Ok(mut current) = self.pipe.lock() {
                            *current = pipe;
                        }
                        tracing::info!(pid = next.id(), "started another endpoint guard");
                        child = next;
                        backoff = RESTART_FIRST;
                        continue 'guard;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot start another endpoint guard; trying again");
                        backoff = (backoff * 2).min(RESTART_MAX);
                    }
                }
            }
        }
        let _ = self.ended.send(());
    }
}
