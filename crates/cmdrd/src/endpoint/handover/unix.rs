//! Handing the endpoint's sockets on, on Unix: offers are Unix sockets beside the tokens,
//! the sockets pass as `SCM_RIGHTS`, both ends check the other's uid (`SO_PEERCRED` /
//! `getpeereid`).

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Holder, sort};
use crate::endpoint::Taken;

/// At most this many sockets are handed on (the loopback listener and the containers').
const MAX_FDS: usize = 4;
/// How long a taker waits for the holder's answer (it is in a poll loop: at once, unless it
/// is just starting).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// `<tokens>-PORT.guard.sock` or `<tokens>-PORT.sentinel.sock`; `None` when the path is too
/// long for a Unix socket (then nothing is handed on: the port is bound again, as before).
pub fn path(tokens: &Path, port: u16, holder: Holder) -> Option<PathBuf> {
    let kind = holder.name();
    let mut name = tokens.as_os_str().to_owned();
    name.push(format!("-{port}.{kind}.sock"));
    // sun_path holds 104 bytes on macOS, 108 on Linux, with the NUL.
    (name.len() < 104).then(|| PathBuf::from(name))
}

/// Listens at `path` for takers, replacing what is left there: a socket (its holder is
/// gone or is being replaced: only the newest offer is asked), or any other file or
/// symlink (the name is cmdr's, in cmdr's own directory). A directory there is an error
/// that says so. Non-blocking, for the holder's poll.
pub fn offer(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(std::io::Error::other(format!(
                "{} is a directory; remove it",
                path.display()
            )));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers every taker waiting at `offer` with the sockets among `held` (other descriptors,
/// such as the guard's lock, are never handed on). Returns whether one of our uid took them.
pub fn give(offer: &UnixListener, held: &[RawFd]) -> bool {
    let sockets: Vec<RawFd> = held
        .iter()
        .copied()
        .filter(|fd| is_socket(*fd))
        .take(MAX_FDS)
        .collect();
    let mut given = false;
    while let Ok((stream, _)) = offer.accept() {
        if peer_uid(stream.as_raw_fd()) != Some(cmdr_client::unix::current_euid()) {
            continue; // another user (the directory should have kept them out)
        }
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(ANSWER_WAIT));
        given |= send_fds(&stream, &sockets).is_ok();
    }
    given
}

/// Takes the sockets listening on `want` (and on the containers' address with its port)
/// from the guard of an earlier run, else from the port's sentinel. `None` when neither
/// offers them (nothing to take over: the port is bound as before).
pub fn take(tokens: &Path, want: SocketAddr) -> Option<Taken> {
    [Holder::Guard, Holder::Sentinel]
        .into_iter()
        .find_map(|holder| {
            let path = path(tokens, want.port(), holder)?;
            let fds = match take_from(&path) {
                Ok(fds) => fds,
                Err(err) => {
                    if err.kind() != std::io::ErrorKind::NotFound
                        && err.kind() != std::io::ErrorKind::ConnectionRefused
                    {
                        tracing::debug!(path = %path.display(), error = %err, "nothing taken over");
                    }
                    return None;
                }
            };
            sort(
                fds.into_iter().map(std::net::TcpListener::from).collect(),
                want,
            )
        })
}

/// The sockets the holder at `path` hands on (checked: a holder of our uid).
pub fn take_from(path: &Path) -> std::io::Result<Vec<OwnedFd>> {
    let stream = UnixStream::connect(path)?;
    if peer_uid(stream.as_raw_fd()) != Some(cmdr_client::unix::current_euid()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is held by another user", path.display()),
        ));
    }
    stream.set_read_timeout(Some(ANSWER_WAIT))?;
    recv_fds(&stream)
}

/// Whether `a` and `b` are one socket (same inode), for the sentinel deciding what it holds.
pub fn same_socket(a: RawFd, b: RawFd) -> bool {
    match (stat(a), stat(b)) {
        (Some(a), Some(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Accepts and closes every connection waiting on the listening socket `fd`: while nobody
/// serves the port, a client is refused at once instead of waiting for its timeout.
pub fn refuse(fd: RawFd) {
    loop {
        // SAFETY: accept on a descriptor we hold; a null address is allowed.
        let conn = unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) };
        if conn < 0 {
            return; // EAGAIN (non-blocking) or an error: nothing more waits now
        }
        // SAFETY: the descriptor accept just returned, owned by nothing else.
        unsafe { libc::close(conn) };
    }
}

/// Makes `fd` close-on-exec; false when it is not open.
pub fn set_cloexec(fd: RawFd) -> bool {
    // SAFETY: fcntl on a descriptor number; EBADF when it is not open.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0 }
}

/// Makes `fd` non-blocking (so [`refuse`] never waits).
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

fn stat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: stat is plain data that fstat fills when it returns 0.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live buffer for a descriptor we hold.
    (unsafe { libc::fstat(fd, &raw mut st) } == 0).then_some(st)
}

fn is_socket(fd: RawFd) -> bool {
    stat(fd).is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// Whether `socket` listens (see [`listening`]).
pub(super) fn listens(socket: &std::net::TcpListener) -> bool {
    listening(socket.as_raw_fd())
}

/// Whether `fd` is a TCP socket that listens.
pub fn listening(fd: RawFd) -> bool {
    socket_option::<libc::c_int>(fd, libc::SO_ACCEPTCONN).is_some_and(|on| on != 0)
}

/// The uid of the process at the other end of the Unix socket `fd`.
#[cfg(target_os = "linux")]
fn peer_uid(fd: RawFd) -> Option<u32> {
    socket_option::<libc::ucred>(fd, libc::SO_PEERCRED).map(|cred| cred.uid)
}

/// A `SOL_SOCKET` option of `fd` whose value is the plain-data `T`.
fn socket_option<T: Copy>(fd: RawFd, name: libc::c_int) -> Option<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live, zeroed `T`.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            value.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    // SAFETY: zeroed and then (partly) written by the kernel; `T` is plain data.
    (got == 0).then(|| unsafe { value.assume_init() })
}

#[cfg(not(target_os = "linux"))]
fn peer_uid(fd: RawFd) -> Option<u32> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: getpeereid writes into two live integers.
    (unsafe { libc::getpeereid(fd, &raw mut uid, &raw mut gid) } == 0).then_some(uid)
}

/// Sends one byte with `fds` attached (`SCM_RIGHTS`).
pub(in crate::endpoint) fn send_fds(stream: &UnixStream, fds: &[RawFd]) -> std::io::Result<()> {
    let byte = [b'h'];
    let iov = [IoSlice::new(&byte)];
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u8; space.max(1)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr().cast_mut().cast();
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds CMSG_SPACE(payload) bytes, so the first header
        // and its data fit.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&raw const msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                payload,
            );
        }
    }
    // SAFETY: a message whose buffers are all live.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &raw const msg, 0) };
    if sent == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Receives the byte and the descriptors [`send_fds`] sent (close-on-exec).
pub(in crate::endpoint) fn recv_fds(stream: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let payload = MAX_FDS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    // u64s: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = 0;
    // SAFETY: a message whose buffers are all live.
    let got = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, flags) };
    if got < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walks the control headers recvmsg filled, within msg_controllen; each
    // SCM_RIGHTS header's data holds whole descriptors, now ours.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&raw const msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let bytes = (*header).cmsg_len as usize - (data as usize - header as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let owned = OwnedFd::from_raw_fd(fd);
                    #[cfg(not(target_os = "linux"))]
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    fds.push(owned);
                }
            }
            header = libc::CMSG_NXTHDR(&raw const msg, header);
        }
    }
    if got == 0 && fds.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the holder closed without handing anything on",
        ));
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        tracing::warn!("more sockets were handed on than expected; the rest were dropped");
    }
    Ok(fds)
}

/// Waits until one of `fds` is readable or `timeout` (None: for ever) passes; which were.
pub fn poll(fds: &[RawFd], timeout: Option<Duration>) -> Vec<bool> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: polls the pollfds of a live vector (a negative fd is skipped).
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    if ready <= 0 {
        return vec![false; fds.len()];
    }
    polled.iter().map(|p| p.revents != 0).collect()
}
