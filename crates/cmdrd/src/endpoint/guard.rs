//! The endpoint's guard (Linux, macOS, Windows): a small process, `cmdr-guard`, that holds the endpoint's
//! listening sockets beside cmdrd, and outlives it when cmdrd dies without cleaning up
//! (`kill -9`, the OOM killer, an abort).
//!
//! Why: a process started with `cmdrctl exec` keeps its endpoint URL and reads its token
//! file on every fetch. If cmdrd died and another local user bound the freed port, that
//! process would send the token there and take whatever credentials came back — another
//! account's, the attacker's. The guard closes that gap: while it holds the sockets nobody
//! else can bind the port (connections wait unanswered and time out); when cmdrd dies it
//! removes every token file first (a fetch then fails closed: the SDK has no token to send),
//! and keeps the port until the next cmdrd retires it ([`retire`]) and binds the same port,
//! so processes started before the crash follow the new cmdrd with new tokens in the same
//! files. A clean stop ([`Guard::release`]) removes the tokens itself and lets the guard go.
//!
//! The guard exits on a clean stop, and, after a crash, when an hour passed with no cmdrd
//! back (the tokens are long gone; only the port's continuity is lost). Its pid is in a
//! file beside the tokens, checked before it is stopped. How it is done per platform:
//! `guard/unix.rs` (inherited descriptors, a pipe whose end tells of cmdrd's death) and
//! `guard/windows.rs` (sockets duplicated with `WSADuplicateSocketW`, the same pipe as the
//! guard's standard input).

use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{Guard, retire, run};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{Guard, retire, run};

/// The hidden first argument that makes the cmdrd binary a guard.
pub const FLAG: &str = "--guard-endpoint";
/// The guard's process name: not `cmdrd`, so `pkill cmdrd` leaves it (Linux).
#[cfg(unix)]
const NAME: &str = "cmdr-guard";
/// How long [`retire`] waits for an old guard to let its port go.
const RETIRE_WAIT: Duration = Duration::from_secs(2);
/// How long the port is held after a crash for a cmdrd that may come back.
const HOLD_AFTER_CRASH: Duration = Duration::from_secs(60 * 60);

/// The guard's pid file, beside the token directories: the pid, then what names that one
/// process (its start time) where the platform says it.
pub fn pid_file(tokens: &Path) -> PathBuf {
    let mut name = tokens.as_os_str().to_owned();
    name.push("-guard.pid");
    PathBuf::from(name)
}

/// Removes every token, the accounts' and the containers': cmdrd died.
fn wipe(tokens: &Path, containers: &Path) {
    let _ = super::Tokens::clear(tokens);
    let _ = super::container::ContainerDirs::clear_tokens(containers);
}
