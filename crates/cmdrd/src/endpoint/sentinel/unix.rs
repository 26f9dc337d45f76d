//! The sentinel on Unix. Before it forks away from the `cmdrctl` that started it (which
//! hears of any failure up to then by its exit code), it closes every descriptor it was
//! given, checks that cmdrd holds the port's lock, and on Linux reserves the port: a
//! socket bound (never listening) with `SO_REUSEPORT`, which the kernel shares only
//! between sockets of one uid; the next cmdrd joins it at no cost (only listening sockets
//! get connections). Then it starts its buddy ([`buddy`]), takes the port's listening
//! sockets from the guard's offer (`handover.rs`) and waits on the port's lock (`flock`,
//! held by cmdrd and its guard through one open file). When the lock frees it removes the
//! port's tokens, refuses every connection at once and offers the sockets to the next
//! cmdrd: on every Unix nobody else can bind the port in between, so an SDK's fetch, or
//! its retry of a fetch that was under way, is refused, never answered by another user.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{BUDDY_FIRST, BUDDY_FLAG, BUDDY_MAX, WAKE_ANYWAY, lock_file};
use crate::endpoint::handover::{self, Holder};
use crate::endpoint::vnode::{On, Watch};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The argument that gives a sentinel the sockets its buddy held (`--held N`).
const HELD: &str = "--held";
/// At most this many: the loopback and containers' listeners and their reservations.
const MAX_HELD: i32 = 4;
/// A buddy that dies sooner than this after its start is started again after a back-off.
const BUDDY_YOUNG: Duration = Duration::from_secs(1);

/// Exit codes `cmdrctl` tells apart: the arguments are wrong; cmdrd holds no lock for the
/// port (an older cmdrd, or none on that port).
const USAGE: u8 = 2;
pub const NO_LOCK: u8 = 3;

/// The sentinel's `main`: `cmdrd --sentinel-endpoint SOCKET PORT [--held N]`; with
/// `--held`, descriptors 3 to 3+N-1 are the port's sockets its buddy held for it.
pub fn run(args: &[OsString]) -> ExitCode {
    let (socket, port, held) = match args {
        [socket, port] => (socket, port, 0),
        [socket, port, flag, count] if flag == HELD => {
            let count = count.to_str().and_then(|n| n.parse::<i32>().ok());
            match count.filter(|n| (0..=MAX_HELD).contains(n)) {
                Some(count) => (socket, port, count),
                None => return ExitCode::from(USAGE),
            }
        }
        _ => return ExitCode::from(USAGE),
    };
    // Nothing the caller had open is kept (a pipe it held would never end: `$(…)`), but
    // what a buddy handed on.
    close_inherited(3 + held);
    default_signals();
    let inherited: Vec<OwnedFd> = (3..3 + held)
        .filter(|fd| handover::set_cloexec(*fd))
        // SAFETY: descriptors the buddy made for this process, owned by nothing else here.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    let Ok(socket) = std::path::absolute(PathBuf::from(socket)) else {
        return ExitCode::from(USAGE);
    };
    let Some(port) = port.to_str().and_then(|p| p.parse::<u16>().ok()) else {
        return ExitCode::from(USAGE);
    };
    // Only ever cmdrd's own directories for this socket (never a path from an argument).
    let Some(dir) = socket.parent() else {
        return ExitCode::from(USAGE);
    };
    let tokens = cmdr_config::endpoint_tokens_dir(&socket, dir);
    let containers = cmdr_config::container_tokens_dir(&socket, dir);
    let Ok(single) =
        cmdr_config::open_own(&cmdr_config::endpoint_sentinel_file(&tokens, port), false)
    else {
        return ExitCode::FAILURE;
    };
    if !super::the_only_one(&single, held > 0) {
        return ExitCode::SUCCESS; // one runs already
    }
    let lock = lock_file(&tokens, port);
    if open_lock(&lock).is_err() {
        return ExitCode::from(NO_LOCK);
    }
    let (mut sockets, reserved): (Vec<OwnedFd>, Vec<OwnedFd>) = inherited
        .into_iter()
        .partition(|fd| handover::listening(fd.as_raw_fd()));
    #[cfg(target_os = "linux")]
    let reserved = if reserved.is_empty() {
        reserve(port)
    } else {
        reserved
    };
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
    stop_with_the_buddy();
    let shared = Arc::new(Mutex::new(Shared {
        fds: held_fds(&sockets, &reserved),
        buddy: None,
    }));
    keep_a_buddy(socket.clone(), port, Arc::clone(&shared));
    let port_dir = |root: &Path| root.join(port.to_string());
    let offers = (
        handover::path(&tokens, port, Holder::Guard),
        handover::path(&tokens, port, Holder::Sentinel),
    );
    loop {
        let Ok(held) = open_lock(&lock) else {
            break; // removed (by hand: a run removes only the files of dead sentinels)
        };
        match held.try_lock() {
            // No run serves the port: what is held stays held.
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The port's listening sockets, taken from the guard of the run that
                // serves it.
                hold_the_runs(offers.0.as_deref(), port, &mut sockets, &reserved, &shared);
                if held.lock().is_err() {
                    break;
                }
            }
            Err(std::fs::TryLockError::Error(_)) => break,
        }
        // cmdrd and its guard are both gone: stopped cleanly (the tokens are gone already)
        // or killed (they are not).
        crate::endpoint::guard::wipe(&port_dir(&tokens), &port_dir(&containers));
        // Watched before the lock is let go, so the next run's mark is not missed.
        let mut watch = Watch::new();
        let watching = watch
            .as_mut()
            .is_some_and(|w| w.add(&lock, On::Changed) && w.add(dir, On::Gone));
        let offer = offers
            .1
            .as_deref()
            .and_then(|path| handover::offer(path).ok());
        drop(held);
        let next = match watch {
            Some(watch) if watching => next_run(&lock, dir, &watch, offer.as_ref(), &sockets),
            _ => false,
        };
        if offer.is_some()
            && let Some(path) = &offers.1
        {
            let _ = std::fs::remove_file(path);
        }
        if !next {
            break;
        }
    }
    drop(single);
    ExitCode::SUCCESS
}

/// What the sentinel shares with the thread that keeps its buddy: the descriptors the
/// buddy holds too, and the current buddy's end of their socket pair.
struct Shared {
    fds: Vec<RawFd>,
    buddy: Option<UnixStream>,
}

impl Shared {
    /// Tells the buddy what the sentinel holds now (it holds the same).
    fn tell(&self) {
        if let Some(buddy) = &self.buddy {
            let _ = handover::send_fds(buddy, &self.fds);
        }
    }
}

/// The sockets a buddy holds with the sentinel: the listening ones, then the reservation.
fn held_fds(sockets: &[OwnedFd], reserved: &[OwnedFd]) -> Vec<RawFd> {
    sockets
        .iter()
        .chain(reserved)
        .map(AsRawFd::as_raw_fd)
        .take(MAX_HELD as usize)
        .collect()
}

/// Keeps a buddy running beside the sentinel, in the same session and cgroup (it is forked
/// from it): a process whose standard input is one end of a socket pair only the sentinel
/// holds the other end of. On it the buddy is given every socket the sentinel holds of the
/// port, and holds them too, so the port stays held whatever kills the sentinel; the end of
/// the pair tells it of the sentinel's death (`kill -9`, the OOM killer), and it becomes
/// the next sentinel with those sockets ([`buddy`]). A buddy that dies is started again at
/// once (after a back-off only when one dies young). Only a kill of both (or of the
/// session) ends the protection, until the next `exec`.
fn keep_a_buddy(socket: PathBuf, port: u16, shared: Arc<Mutex<Shared>>) {
    let spawn = move || -> std::io::Result<std::process::Child> {
        use std::os::unix::process::CommandExt as _;
        let (ours, theirs) = UnixStream::pair()?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg0(super::NAME)
            .arg(BUDDY_FLAG)
            .arg(&socket)
            .arg(port.to_string())
            .stdin(OwnedFd::from(theirs))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Ok(mut shared) = shared.lock() {
            shared.buddy = Some(ours);
            shared.tell();
        }
        Ok(child)
    };
    let _ = std::thread::Builder::new()
        .name("sentinel-buddy".into())
        .spawn(move || {
            let mut backoff = Duration::ZERO;
            loop {
                let started = Instant::now();
                match spawn() {
                    Ok(mut child) => {
                        BUDDY.store(child.id() as libc::pid_t, Ordering::SeqCst);
                        let _ = child.wait();
                        BUDDY.store(0, Ordering::SeqCst);
                        backoff = if started.elapsed() > BUDDY_YOUNG {
                            Duration::ZERO
                        } else {
                            (backoff * 2).clamp(BUDDY_FIRST, BUDDY_MAX)
                        };
                    }
                    Err(_) => backoff = (backoff * 2).clamp(BUDDY_FIRST, BUDDY_MAX),
                }
                std::thread::sleep(backoff);
            }
        });
}

/// The buddy's `main`: `cmdrd --sentinel-buddy SOCKET PORT`, its standard input a pipe the
/// sentinel holds. When that pipe ends the sentinel is gone: unless its socket's directory
/// went too (the session ended, as the sentinel does then), the buddy becomes the next
/// sentinel (`exec`), which takes the port's sockets from the guard again and starts a
/// buddy of its own.
pub fn buddy(args: &[OsString]) -> ExitCode {
    default_signals();
    let [socket, port] = args else {
        return ExitCode::from(USAGE);
    };
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(super::NAME) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    }
    // SAFETY: standard input is this process's end of the sentinel's socket pair.
    let pair = unsafe { UnixStream::from_raw_fd(0) };
    // What the sentinel holds, held here too: each message replaces the last.
    let mut held: Vec<OwnedFd> = Vec::new();
    loop {
        match handover::recv_fds(&pair) {
            Ok(fds) => held = fds,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break, // the sentinel is gone
        }
    }
    let socket = PathBuf::from(socket);
    if !socket.parent().is_some_and(Path::is_dir) {
        return ExitCode::SUCCESS;
    }
    // The sockets move to 3, 4, …, the next sentinel's `--held` (through high numbers
    // first, so none is overwritten on the way).
    let high: Vec<RawFd> = held
        .iter()
        .take(MAX_HELD as usize)
        // SAFETY: duplicates a descriptor this process holds.
        .map(|fd| unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) })
        .filter(|fd| *fd >= 0)
        .collect();
    drop(held);
    drop(pair);
    for (at, fd) in (3..).zip(&high) {
        // SAFETY: dup2 onto a low number this process does not use (0-2 are the standard
        // ones; the pair and the sockets held were just closed); the copy is not
        // close-on-exec.
        unsafe { libc::dup2(*fd, at) };
    }
    use std::os::unix::process::CommandExt as _;
    let Ok(exe) = std::env::current_exe() else {
        return ExitCode::FAILURE;
    };
    let err = std::process::Command::new(exe)
        .arg0(super::NAME)
        .arg(super::FLAG)
        .arg(&socket)
        .arg(port)
        .arg(HELD)
        .arg(high.len().to_string())
        .stdin(std::process::Stdio::null())
        .exec();
    drop(err);
    ExitCode::FAILURE
}

/// The pid of the sentinel's current buddy (0: none), for [`stop_with_the_buddy`].
static BUDDY: AtomicI32 = AtomicI32::new(0);

/// SIGTERM or SIGINT to the sentinel (`kill PID`, `pkill cmdr-sentinel`) is a deliberate
/// stop: its buddy goes first, so nothing starts it again. `kill -9`, the OOM killer: the
/// buddy replaces it.
fn stop_with_the_buddy() {
    extern "C" fn stop(_: libc::c_int) {
        let buddy = BUDDY.load(Ordering::SeqCst);
        // SAFETY: kill and _exit are async-signal-safe.
        unsafe {
            if buddy > 0 {
                libc::kill(buddy, libc::SIGKILL);
            }
            libc::_exit(0);
        }
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler calls only async-signal-safe functions.
        unsafe {
            libc::signal(
                signal,
                stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// SIGTERM and SIGINT end the process, whatever its starter ignored (an ignored signal
/// stays ignored across `exec`).
fn default_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: restores the default action; no handler runs.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// Holds the listening sockets of the run that now serves `port`, taken from its guard's
/// offer at `guard`; the ones held before are kept when they are the same sockets (the run
/// took them over), else let go: a socket the run does not serve must not wait on its port
/// (on Linux it would share the port's connections with the run's). When the guard hands
/// nothing on, what is held is kept.
fn hold_the_runs(
    guard: Option<&Path>,
    port: u16,
    sockets: &mut Vec<OwnedFd>,
    reserved: &[OwnedFd],
    shared: &Mutex<Shared>,
) {
    // Nothing taken (the run's guard is starting, or dying with it): what is held stays.
    let Some(taken) = guard.and_then(|path| handover::take_from(path).ok()) else {
        return;
    };
    let theirs: Vec<OwnedFd> = taken
        .into_iter()
        .filter(|fd| {
            handover::listening(fd.as_raw_fd())
                && fd
                    .try_clone()
                    .ok()
                    .map(std::net::TcpListener::from)
                    .and_then(|l| l.local_addr().ok())
                    .is_some_and(|a| a.port() == port)
        })
        .collect();
    let same = match (sockets.first(), theirs.first()) {
        (Some(ours), Some(new)) => handover::same_socket(ours.as_raw_fd(), new.as_raw_fd()),
        _ => false,
    };
    if !same {
        // Told to the buddy before the old ones close: it never holds a stale number.
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        *sockets = theirs;
        shared.fds = held_fds(sockets, reserved);
        shared.tell();
    }
}

/// Waits for a cmdrd holding `lock` (it marks the file after taking it): `false` when the
/// file went or the socket's directory did. Meanwhile the port's sockets are offered to
/// the next cmdrd at `offer`, and until one takes them every connection is refused at once.
fn next_run(
    lock: &Path,
    dir: &Path,
    watch: &Watch,
    offer: Option<&UnixListener>,
    sockets: &[OwnedFd],
) -> bool {
    let raw: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    for fd in &raw {
        handover::set_nonblocking(*fd);
    }
    let mut handed = false;
    loop {
        if !dir.is_dir() {
            return false;
        }
        match open_lock(lock).map(|f| f.try_lock()) {
            Err(_) => return false,
            Ok(Err(std::fs::TryLockError::WouldBlock)) => return true,
            Ok(_) => {} // free: no run yet (the probe's lock went with its file)
        }
        let mut watched = vec![watch.fd(), offer.map_or(-1, AsRawFd::as_raw_fd)];
        if !handed {
            watched.extend(&raw);
        }
        let ready = handover::poll(&watched, Some(WAKE_ANYWAY));
        if ready[0] {
            watch.wait(Duration::ZERO); // drains it
        }
        if ready[1]
            && let Some(offer) = offer
        {
            // The next run takes them: it serves them from now on.
            handed |= handover::give(offer, &raw);
        }
        for (fd, _) in watched.iter().zip(&ready).skip(2).filter(|(_, r)| **r) {
            handover::refuse(*fd);
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

/// Closes every descriptor from `keep` up (the standard ones are /dev/null: cmdrctl starts
/// it so; 3 up to `keep` are what a buddy handed on).
fn close_inherited(keep: i32) {
    let open: Vec<i32> = std::fs::read_dir(if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    })
    .map(|entries| {
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    })
    .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd >= keep.max(3)) {
        // SAFETY: closes a descriptor of this single-threaded process that nothing here
        // owns yet (the listing's own is already closed: EBADF, ignored).
        unsafe { libc::close(fd) };
    }
}

/// The port reserved for this uid on loopback and on the containers' address: sockets
/// bound with `SO_REUSEPORT`, never listening. A port cmdrd holds without it (an older
/// cmdrd) cannot be shared: then nothing is reserved and only the tokens' removal guards.
#[cfg(target_os = "linux")]
fn reserve(port: u16) -> Vec<OwnedFd> {
    use socket2::{Domain, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    let bind = |ip: Ipv4Addr, freebind: bool| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        // Not SO_REUSEADDR: two sockets with it share a port while neither listens, so
        // anybody's with it could bind beside this one once cmdrd's listener is gone.
        socket.set_reuse_port(true)?;
        if freebind {
            socket.set_freebind_v4(true)?;
        }
        socket.bind(&SocketAddr::from((ip, port)).into())?;
        Ok(socket)
    };
    [
        (Ipv4Addr::LOCALHOST, false),
        (crate::endpoint::container::GATEWAY, true),
    ]
    .into_iter()
    .filter_map(|(ip, freebind)| bind(ip, freebind).ok())
    .map(OwnedFd::from)
    .collect()
}
