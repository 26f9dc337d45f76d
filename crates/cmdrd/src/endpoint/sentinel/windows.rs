//! The sentinel on Windows: `cmdrctl` starts it detached (no fork there), and it waits on
//! processes, not on a lock: a Windows lock dies with the process that took it, not with
//! the last handle to the file. It waits for the cmdrd the run file names, then for that
//! run's guard (the guard pid file), both named by pid and creation time; then, unless a
//! new run already holds the port's lock, it removes the port's tokens, and waits for the
//! next run (the run file changes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_NOTIFY_CHANGE_FILE_NAME, FILE_NOTIFY_CHANGE_LAST_WRITE, FindCloseChangeNotification,
    FindFirstChangeNotificationW, FindNextChangeNotification,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, INFINITE, PROCESS_SYNCHRONIZE, WaitForSingleObject,
};

use std::os::windows::io::{IntoRawSocket, RawSocket};
use std::time::{Duration, Instant};

use std::io::Write as _;
use std::net::TcpListener;
use std::os::windows::io::{AsRawSocket, FromRawSocket as _};
use std::os::windows::process::CommandExt as _;
use std::sync::{Arc, Mutex};

use super::{BUDDY_FIRST, BUDDY_FLAG, BUDDY_MAX, WAKE_ANYWAY, lock_file, run_file};
use crate::endpoint::guard::{self, Process, creation_time};
use crate::endpoint::handover::{self, Holder};

/// How long a guard that is starting may take to offer its sockets.
const GUARD_START: Duration = Duration::from_secs(2);

/// This process as a run file names it: its pid and creation time.
pub(super) fn this_run() -> String {
    // SAFETY: the pseudo-handle of this process; it needs no closing.
    let created = creation_time(unsafe { GetCurrentProcess() }).unwrap_or(0);
    format!("{} {created}\n", std::process::id())
}

/// The live process `file` names (pid and creation time), open for waiting on.
fn named(file: &Path) -> Option<Process> {
    let text = cmdr_config::userfile::read_bounded(file, 64).ok()?;
    let text = String::from_utf8(text).ok()?;
    guard::open_named(&text, PROCESS_SYNCHRONIZE).map(|(_, process)| process)
}

/// No console window; its own process group (a Ctrl+C where it was started is not for it).
const DETACHED_PROCESS: u32 = 0x0000_0008;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
/// The argument a sentinel started by the buddy gets after PORT: the killed one's lock may
/// take a moment to be released.
const AFTER_BUDDY: &str = "--after-buddy";

/// The sentinel's `main`: `cmdrd --sentinel-endpoint SOCKET PORT [--after-buddy]` (then
/// the sockets its buddy held come as records on standard input).
pub fn run(args: &[OsString]) -> ExitCode {
    let (socket, port, after_buddy) = match args {
        [socket, port] => (socket, port, false),
        [socket, port, flag] if flag == AFTER_BUDDY => (socket, port, true),
        _ => return ExitCode::from(2),
    };
    let Some(port) = port.to_str().and_then(|p| p.parse::<u16>().ok()) else {
        return ExitCode::from(2);
    };
    // The directories of cmdrd's own settings for this socket (never a path from an
    // argument).
    let Ok(settings) = cmdr_config::Settings::load(None, Some(PathBuf::from(socket))) else {
        return ExitCode::FAILURE;
    };
    let (tokens, containers) = (
        settings.endpoint_tokens_dir(),
        settings.container_tokens_dir(),
    );
    let Ok(single) =
        cmdr_config::open_own(&cmdr_config::endpoint_sentinel_file(&tokens, port), false)
    else {
        return ExitCode::FAILURE;
    };
    if !super::the_only_one(&single, after_buddy) {
        return ExitCode::SUCCESS; // one runs already
    }
    // Started by a buddy: the sockets it held with the killed sentinel, as records on
    // standard input; held and offered at once.
    let inherited: Vec<RawSocket> = if after_buddy {
        handover::read_records(&mut std::io::stdin().lock()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut offered = !inherited.is_empty()
        && handover::offer(
            &handover::path(&tokens, port, Holder::Sentinel),
            inherited.clone(),
        )
        .is_ok();
    let shared = Arc::new(Mutex::new(Shared {
        sockets: inherited,
        buddy: None,
    }));
    keep_a_buddy(socket.clone(), port, Arc::clone(&shared));
    let (run, lock) = (run_file(&tokens, port), lock_file(&tokens, port));
    let dir = tokens.parent().unwrap_or(Path::new(".")).to_owned();
    let port_dir = |root: &Path| root.join(port.to_string());
    loop {
        // The run the file names; already gone if this started just after it ended.
        if let Some(daemon) = named(&run) {
            offered = offered || hold_and_offer(&tokens, port, &shared);
            // SAFETY: a live process handle opened with PROCESS_SYNCHRONIZE.
            unsafe { WaitForSingleObject(daemon.0, INFINITE) };
        }
        // The guard holds the port after a crash until the next run retires it.
        if let Some(held) = named(&guard::pid_file(&tokens)) {
            // SAFETY: as above.
            unsafe { WaitForSingleObject(held.0, INFINITE) };
        }
        if !lock.exists() {
            break; // removed by hand: nothing to guard
        }
        // Free: no run holds the port (a new one would have cleared the tokens itself).
        if let Ok(file) = std::fs::File::open(&lock)
            && file.try_lock().is_ok()
        {
            guard::wipe(&port_dir(&tokens), &port_dir(&containers));
        }
        if !next_run(&run, &lock, &dir) {
            break;
        }
    }
    drop(single);
    ExitCode::SUCCESS
}

/// What the sentinel shares with the thread that keeps its buddy: the sockets it holds, and
/// the current buddy's pipe and pid.
struct Shared {
    sockets: Vec<RawSocket>,
    buddy: Option<(std::process::ChildStdin, u32)>,
}

impl Shared {
    /// Gives the buddy its own descriptors of the sockets held now (it holds them too).
    fn tell(&mut self) {
        if let Some((pipe, pid)) = &mut self.buddy
            && let Ok(records) = handover::records_for(&self.sockets, *pid)
        {
            let _ = pipe.write_all(&records);
        }
    }
}

/// Keeps a buddy running beside the sentinel: a process whose standard input is a pipe only
/// the sentinel holds. On it the buddy is given its own descriptors of every socket the
/// sentinel holds, and it holds them too; the pipe's end tells it of the sentinel's death
/// (Task Manager, the OOM killer), and it starts another with them ([`buddy`]). A buddy
/// that dies is started again here.
fn keep_a_buddy(socket: OsString, port: u16, shared: Arc<Mutex<Shared>>) {
    let _ = std::thread::Builder::new()
        .name("sentinel-buddy".into())
        .spawn(move || {
            let mut backoff = BUDDY_FIRST;
            loop {
                let spawned = std::env::current_exe().and_then(|exe| {
                    std::process::Command::new(exe)
                        .arg(BUDDY_FLAG)
                        .arg(&socket)
                        .arg(port.to_string())
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
                        .spawn()
                });
                match spawned {
                    Ok(mut child) => {
                        if let Ok(mut shared) = shared.lock() {
                            shared.buddy = child.stdin.take().map(|pipe| (pipe, child.id()));
                            shared.tell();
                        }
                        let _ = child.wait();
                        backoff = BUDDY_FIRST;
                    }
                    Err(_) => backoff = (backoff * 2).min(BUDDY_MAX),
                }
                std::thread::sleep(backoff);
            }
        });
}

/// The buddy's `main`: `cmdrd --sentinel-buddy SOCKET PORT`, its standard input a pipe the
/// sentinel holds, on which it is given the sockets the sentinel holds (each message
/// replaces the last). When the pipe breaks the sentinel is gone, and another is started
/// and given those sockets (one with nothing left to guard exits at once).
pub fn buddy(args: &[OsString]) -> ExitCode {
    let [socket, port] = args else {
        return ExitCode::from(2);
    };
    let mut stdin = std::io::stdin().lock();
    let mut held: Vec<TcpListener> = Vec::new();
    while let Ok(sockets) = handover::read_records(&mut stdin) {
        held = sockets
            .into_iter()
            // SAFETY: sockets just made for this process, owned by nothing else.
            .map(|socket| unsafe { TcpListener::from_raw_socket(socket) })
            .collect();
    }
    let Ok(exe) = std::env::current_exe() else {
        return ExitCode::FAILURE;
    };
    let started = std::process::Command::new(exe)
        .arg(super::FLAG)
        .arg(socket)
        .arg(port)
        .arg(AFTER_BUDDY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
        .spawn();
    let Ok(mut sentinel) = started else {
        return ExitCode::FAILURE;
    };
    let raw: Vec<RawSocket> = held.iter().map(AsRawSocket::as_raw_socket).collect();
    if let Some(mut pipe) = sentinel.stdin.take()
        && let Ok(records) = handover::records_for(&raw, sentinel.id())
    {
        let _ = pipe.write_all(&records);
    }
    ExitCode::SUCCESS
}

/// Takes the port's listening sockets from the guard of the run that serves it, holds them
/// until exit and offers them to the next cmdrd (`handover.rs`): once cmdrd and its guard
/// are gone the port stays held. Waits a moment for a guard that is just starting. False
/// when there was nothing to take (an older cmdrd): the next run is asked again.
fn hold_and_offer(tokens: &Path, port: u16, shared: &Mutex<Shared>) -> bool {
    let from = handover::path(tokens, port, Holder::Guard);
    let until = Instant::now() + GUARD_START;
    let sockets = loop {
        match handover::take_from(&from) {
            Ok(sockets) => break sockets,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return false,
        }
    };
    let held: Vec<RawSocket> = sockets
        .into_iter()
        .filter(|s| s.local_addr().is_ok_and(|a| a.port() == port))
        .map(IntoRawSocket::into_raw_socket)
        .collect();
    if held.is_empty() {
        return false;
    }
    if let Ok(mut shared) = shared.lock() {
        shared.sockets = held.clone();
        shared.tell();
    }
    handover::offer(&handover::path(tokens, port, Holder::Sentinel), held).is_ok()
}

/// Waits for a live cmdrd in the run file: `false` when the port's lock file went or its
/// directory did.
fn next_run(run: &Path, lock: &Path, dir: &Path) -> bool {
    let wide: Vec<u16> = dir.as_os_str().encode_wide_nul();
    // SAFETY: a live NUL-terminated wide path; returns a handle or INVALID_HANDLE_VALUE.
    let change: HANDLE = unsafe {
        FindFirstChangeNotificationW(
            wide.as_ptr(),
            0,
            FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE,
        )
    };
    if change == INVALID_HANDLE_VALUE {
        return false;
    }
    let wake = u32::try_from(WAKE_ANYWAY.as_millis()).unwrap_or(INFINITE - 1);
    let found = loop {
        if named(run).is_some() {
            break true;
        }
        if !lock.exists() || !dir.is_dir() {
            break false;
        }
        // SAFETY: a live change-notification handle.
        if unsafe { WaitForSingleObject(change, wake) } == WAIT_OBJECT_0
            // SAFETY: as above; re-arms it.
            && unsafe { FindNextChangeNotification(change) } == 0
        {
            break false;
        }
    };
    // SAFETY: a handle this function owns.
    unsafe { FindCloseChangeNotification(change) };
    found
}

/// A path as Windows' wide, NUL-terminated string.
trait WideNul {
    fn encode_wide_nul(&self) -> Vec<u16>;
}

impl WideNul for std::ffi::OsStr {
    fn encode_wide_nul(&self) -> Vec<u16> {
        use std::os::windows::ffi::OsStrExt as _;
        self.encode_wide().chain(std::iter::once(0)).collect()
    }
}
