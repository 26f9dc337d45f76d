//! The sentinel on Unix. Before it forks away from the `cmdrctl` that started it (which
//! hears of any failure up to then by its exit code), it closes every descriptor it was
//! given, checks that cmdrd holds the port's lock, and on Linux reserves the port: a
//! socket bound (never listening) with `SO_REUSEPORT`, which the kernel shares only
//! between sockets of one uid. So when cmdrd and its guard die, nobody else can bind the
//! port at all: an SDK's fetch, or its retry of a fetch that was under way, is refused,
//! never answered by another user. The next cmdrd joins the reservation; listening
//! sockets alone get connections, so it costs cmdrd nothing. Then it waits on the port's
//! lock (`flock`, held by cmdrd and its guard through one open file).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{WAKE_ANYWAY, lock_file};
use crate::endpoint::vnode::{On, Watch};

/// Exit codes `cmdrctl` tells apart: the arguments are wrong; cmdrd holds no lock for the
/// port (an older cmdrd, or none on that port).
const USAGE: u8 = 2;
pub const NO_LOCK: u8 = 3;

/// The sentinel's `main`: `cmdrd --sentinel-endpoint SOCKET PORT`.
pub fn run(args: &[OsString]) -> ExitCode {
    // Nothing the caller had open is kept: a pipe it held would never end (`$(…)`).
    close_inherited();
    let [socket, port] = args else {
        return ExitCode::from(USAGE);
    };
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
    if single.try_lock().is_err() {
        return ExitCode::SUCCESS; // one runs already
    }
    let lock = lock_file(&tokens, port);
    if open_lock(&lock).is_err() {
        return ExitCode::from(NO_LOCK);
    }
    #[cfg(target_os = "linux")]
    let _reserved = reserve(port);
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
    let port_dir = |root: &Path| root.join(port.to_string());
    loop {
        let Ok(held) = open_lock(&lock) else {
            break; // removed (by hand: a run removes only the files of dead sentinels)
        };
        if held.lock().is_err() {
            break;
        }
        // cmdrd and its guard are both gone: stopped cleanly (the tokens are gone already)
        // or killed (they are not).
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
/// file went or the socket's directory did.
fn next_run(lock: &Path, dir: &Path, watch: &Watch) -> bool {
    loop {
        if !dir.is_dir() {
            return false;
        }
        match open_lock(lock).map(|f| f.try_lock()) {
            Err(_) => return false,
            Ok(Err(std::fs::TryLockError::WouldBlock)) => return true,
            Ok(_) => {} // free: no run yet (the probe's lock went with its file)
        }
        watch.wait(WAKE_ANYWAY);
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

/// Closes every descriptor above standard error (the standard ones are /dev/null: cmdrctl
/// starts it so).
fn close_inherited() {
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
    for fd in open.into_iter().filter(|fd| *fd > 2) {
        // SAFETY: closes a descriptor of this single-threaded process that nothing here
        // owns yet (the listing's own is already closed: EBADF, ignored).
        unsafe { libc::close(fd) };
    }
}

/// The port reserved for this uid on loopback and on the containers' address: sockets
/// bound with `SO_REUSEPORT`, never listening. A port cmdrd holds without it (an older
/// cmdrd) cannot be shared: then nothing is reserved and only the tokens' removal guards.
#[cfg(target_os = "linux")]
fn reserve(port: u16) -> Vec<socket2::Socket> {
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
    .collect()
}
