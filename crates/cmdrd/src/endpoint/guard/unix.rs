//! The guard on Unix: the listening sockets are inherited by a `cmdrd --guard-endpoint`
//! child, with the read end of a pipe whose write end only cmdrd holds: a byte on it is a
//! clean stop, its end (EOF) cmdrd's death; and the offer cmdrd made for them
//! (`handover.rs`), which it answers all along. The guard exits on SIGTERM/SIGINT/SIGHUP too
//! (removing the tokens first: a service manager stopping the unit after a crash), and
//! after a crash when the socket's directory is deleted (the session ended:
//! `/run/user/UID` goes at logout). While cmdrd runs it uses no watch and no timer. Before
//! it is signalled it is checked: our uid, and on Linux its name (`comm`), on macOS
//! (where a process cannot rename itself) its start time, kept in the pid file.

use super::{FLAG, HOLD_AFTER_CRASH, NAME, RETIRE_WAIT, Spec, pid_file, wipe};
use crate::endpoint::handover;
use crate::endpoint::vnode::{On, Watch};
use std::io::Write;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// After a crash, the wall clock is looked at again at least this often (the hour held is
/// the wall clock's: a machine asleep does not stop it).
const RECHECK_CLOCK: Duration = Duration::from_secs(60);

/// A listening socket as the guard is given it.
pub type Raw = RawFd;

/// Starts a guard holding `spec.listeners` (inherited duplicates) and writes its pid file;
/// returns it and the write end of its pipe.
pub(super) fn start(spec: &Spec) -> std::io::Result<(Child, Box<dyn Write + Send>)> {
    let (read, write) = cloexec_pipe()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .arg0(NAME)
        .arg(FLAG)
        .arg(&spec.tokens)
        .arg(&spec.containers)
        .arg(read.as_raw_fd().to_string())
        .arg(
            spec.offer
                .as_ref()
                .map_or_else(|| "-".to_owned(), |o| o.as_raw_fd().to_string()),
        )
        .args(spec.listeners.iter().map(RawFd::to_string))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let inherit: Vec<RawFd> = std::iter::once(read.as_raw_fd())
        .chain(spec.offer.as_ref().map(|o| o.as_raw_fd()))
        .chain(spec.listeners.iter().copied())
        .collect();
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe
    // functions (fcntl, setsid) on descriptors that exist in it.
    unsafe {
        command.pre_exec(move || {
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its own session: a Ctrl-C in cmdrd's terminal is for cmdrd.
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    drop(read);
    let pid = child.id();
    let line = match started(pid as libc::pid_t) {
        Some(start) => format!("{pid} {start}\n"),
        None => format!("{pid}\n"),
    };
    if let Err(err) = cmdr_config::write_atomic(&spec.pid_file, line.as_bytes(), 0o600) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err);
    }
    Ok((child, Box::new(std::fs::File::from(write))))
}

/// The guard the pid file names, if that pid is not ours: its pid and start time.
fn named_guard(file: &Path) -> Option<(libc::pid_t, Option<String>)> {
    let text = cmdr_config::userfile::read_bounded(file, 64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let mut words = text.split_whitespace();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let pid = words
        .next()
        .and_then(|p| p.parse::<libc::pid_t>().ok())
        .filter(|p| *p > 1 && *p != me)?;
    Some((pid, words.next().map(str::to_owned)))
}

/// Whether a guard an earlier cmdrd left (after a crash) is alive: it holds the port.
pub fn holds(tokens: &Path) -> bool {
    named_guard(&pid_file(tokens)).is_some_and(|(pid, start)| is_our_guard(pid, start.as_deref()))
}

/// Stops the guard an earlier cmdrd left (after a crash), so its port can be bound again.
/// Only a process named `cmdr-guard` of our uid is signalled; waits until it is gone.
/// False when it did not go.
pub fn retire(tokens: &Path) -> bool {
    let file = pid_file(tokens);
    let Some((pid, start)) = named_guard(&file) else {
        let _ = std::fs::remove_file(&file);
        return true;
    };
    let ours = || is_our_guard(pid, start.as_deref());
    if ours() {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let begun = Instant::now();
        while ours() && begun.elapsed() < RETIRE_WAIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        if ours() {
            tracing::warn!(pid, "the endpoint guard of an earlier run did not exit");
        } else {
            tracing::info!(pid, "retired the endpoint guard an earlier run left");
        }
    }
    let gone = !ours();
    let _ = std::fs::remove_file(&file);
    gone
}

/// A pipe whose two ends are closed on exec (the guard's end is opened up in its child).
fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two new descriptors into the array when it returns 0.
    #[cfg(target_os = "linux")]
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // macOS has no pipe2: the flag is set right after (cmdrd starts the guard before it
    // starts any other process, so no fork can come in between).
    // SAFETY: pipe writes two new descriptors into the array when it returns 0.
    #[cfg(not(target_os = "linux"))]
    let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if made != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nothing else.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    for fd in fds {
        // SAFETY: fcntl on a descriptor owned by `ends`.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// When `pid` started, as macOS says (seconds and microseconds): with the pid, it names
/// one process, whatever pid is reused later. Linux names the guard by `comm` instead.
#[cfg(target_os = "macos")]
fn started(pid: libc::pid_t) -> Option<String> {
    let info = bsd_info(pid)?;
    Some(format!(
        "{}.{}",
        info.pbi_start_tvsec, info.pbi_start_tvusec
    ))
}

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22): with the pid,
/// it names one process, whatever pid is reused later.
#[cfg(target_os = "linux")]
fn started(pid: libc::pid_t) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces: count after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_owned)
}

#[cfg(target_os = "macos")]
fn bsd_info(pid: libc::pid_t) -> Option<libc::proc_bsdinfo> {
    // SAFETY: proc_bsdinfo is plain data; proc_pidinfo fills at most `size` bytes of it.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: a live buffer of `size` bytes.
    let got =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    (got == size).then_some(info)
}

/// A live (not zombie) process owned by our effective uid that started when the pid file
/// says (macOS).
#[cfg(target_os = "macos")]
fn is_our_guard(pid: libc::pid_t, start: Option<&str>) -> bool {
    let Some(info) = bsd_info(pid) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let when = format!("{}.{}", info.pbi_start_tvsec, info.pbi_start_tvusec);
    info.pbi_uid == euid && info.pbi_status != libc::SZOMB && start == Some(when.as_str())
}

/// A live (not zombie) process named `cmdr-guard` owned by our effective uid that started
/// when the pid file says (Linux; a pid file of an older version has no start time).
#[cfg(target_os = "linux")]
fn is_our_guard(pid: libc::pid_t, start: Option<&str>) -> bool {
    if start.is_some() && started(pid).as_deref() != start {
        return false;
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
    let status = std::fs::read_to_string(proc.join("status")).unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let uid_ok = field("Uid:").split_whitespace().nth(1) == Some(&euid.to_string());
    comm.trim() == NAME && uid_ok && !field("State:").starts_with('Z')
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The guard's `main`: `cmdrd --guard-endpoint TOKENS CONTAINERS PIPE OFFER LISTENER…`
/// (OFFER is `-` when there is none).
pub fn run(args: &[std::ffi::OsString]) -> ExitCode {
    let [tokens, containers, pipe, offer, listeners @ ..] = args else {
        return ExitCode::from(2);
    };
    let (tokens, containers) = (PathBuf::from(tokens), PathBuf::from(containers));
    let Some(pipe) = pipe.to_str().and_then(|p| p.parse::<RawFd>().ok()) else {
        return ExitCode::from(2);
    };
    // SAFETY: the descriptor cmdrd handed this process for its offer, owned by nothing else
    // here.
    let offer = offer
        .to_str()
        .and_then(|o| o.parse::<RawFd>().ok())
        .map(|fd| unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) });
    if let Some(offer) = &offer {
        let _ = offer.set_nonblocking(true);
    }
    // The listening sockets are held, never served: they stay open until exit, are handed
    // on to the sentinel and the next cmdrd, and after a crash their waiting connections
    // are refused.
    let held: Vec<RawFd> = listeners
        .iter()
        .filter_map(|l| l.to_str()?.parse().ok())
        .collect();
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(NAME) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only stores an atomic; no
        // SA_RESTART, so poll returns EINTR and the loop sees STOP.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    let wipe = || wipe(&tokens, &containers);
    // After a crash: until when the port is held, by the wall clock (a laptop sleeps).
    let mut crashed: Option<SystemTime> = None;
    // After a crash: readable when the socket's directory goes.
    let mut gone: Option<Watch> = None;
    // The next cmdrd took the sockets: it serves them now, nothing is refused.
    let mut handed = false;
    let refusing: Vec<RawFd> = held
        .iter()
        .copied()
        .filter(|fd| handover::listening(*fd))
        .collect();
    loop {
        if STOP.load(Ordering::SeqCst) {
            // Signalled while cmdrd runs (a stray kill, a service manager stopping both):
            // the tokens are cmdrd's to remove, and cmdrd replaces this guard. Only a dead
            // cmdrd's tokens are removed here.
            if crashed.is_some() || ended(pipe) {
                wipe();
            }
            return ExitCode::SUCCESS;
        }
        let mut watched = vec![
            match crashed {
                Some(_) => gone.as_ref().map_or(-1, Watch::fd),
                None => pipe,
            },
            offer.as_ref().map_or(-1, |o| o.as_raw_fd()),
        ];
        if crashed.is_some() && !handed {
            watched.extend(&refusing);
        }
        let timeout = crashed.map(|until| {
            until
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(RECHECK_CLOCK)
        });
        let ready = handover::poll(&watched, timeout);
        if let Some(until) = crashed
            && SystemTime::now() >= until
        {
            // An hour after the crash and no cmdrd came back: let the port go.
            return ExitCode::SUCCESS;
        }
        if ready[1]
            && let Some(offer) = &offer
            && handover::give(offer, &held)
        {
            // Taken by the sentinel while cmdrd runs, or by the next cmdrd after a crash.
            handed |= crashed.is_some();
        }
        for (fd, _) in watched.iter().zip(&ready).skip(2).filter(|(_, r)| **r) {
            handover::refuse(*fd);
        }
        if !ready[0] {
            continue; // a timeout, a signal (STOP says which), or the offer
        }
        if crashed.is_some() {
            // The socket's directory is gone: let the port go.
            return ExitCode::SUCCESS;
        }
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into a live buffer.
        let n = unsafe { libc::read(pipe, byte.as_mut_ptr().cast(), 1) };
        if n == 1 {
            // cmdrd stopped cleanly and removed its tokens.
            return ExitCode::SUCCESS;
        }
        if n == 0 {
            // cmdrd died: no token may wait for whoever binds the port next. The port
            // stays held for the next cmdrd, while its directory is there.
            wipe();
            crashed = Some(SystemTime::now() + HOLD_AFTER_CRASH);
            for fd in &refusing {
                handover::set_nonblocking(*fd);
            }
            // `SOCKET_DIR/cmdrd.endpoint/PORT`: the socket's directory is two up.
            let dir = tokens
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"));
            gone = Watch::of(dir, On::Gone);
            if !dir.exists() {
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Whether cmdrd's end of the pipe is closed (cmdrd died), asked without waiting.
fn ended(pipe: RawFd) -> bool {
    let mut polled = [libc::pollfd {
        fd: pipe,
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: polls one pollfd of a live array, without waiting.
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), 1, 0) };
    if ready <= 0 {
        return false;
    }
    let mut byte = [0u8; 1];
    // SAFETY: reads at most one byte into a live buffer.
    let n = unsafe { libc::read(pipe, byte.as_mut_ptr().cast(), 1) };
    n == 0
}
