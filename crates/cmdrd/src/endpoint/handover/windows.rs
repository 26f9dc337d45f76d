//! Handing the endpoint's sockets on, on Windows: an offer is a named pipe private to this
//! user (the same security descriptor as cmdrd's own pipe, created as its first instance so
//! a name another process made first is refused), served by a thread of the holder. The
//! taker connects; the holder checks the taker's user (its process token's SID), duplicates
//! each socket into it (`WSADuplicateSocketW`, which needs the taker's pid) and writes the
//! records; the taker checks the holder's user the same way before it uses them. Nothing
//! here refuses connections while nobody serves the port: they wait for their timeout.

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::windows::io::{AsRawSocket as _, FromRawSocket as _, RawSocket};
use std::path::Path;
use std::time::Duration;

use cmdr_client::windows::{current_user_sid, process_user_sid};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, Stream};
use interprocess::os::windows::local_socket::ListenerOptionsExt as _;
use interprocess::os::windows::security_descriptor::SecurityDescriptor;
use windows_sys::Win32::Networking::WinSock::{
    FROM_PROTOCOL_INFO, INVALID_SOCKET, SO_ACCEPTCONN, SOCKET, SOL_SOCKET,
    WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED, WSADATA, WSADuplicateSocketW,
    WSAPROTOCOL_INFOW, WSASocketW, WSAStartup, getsockopt,
};

use super::{Holder, sort};
use crate::endpoint::Taken;

/// The size of one socket's record.
const RECORD: usize = std::mem::size_of::<WSAPROTOCOL_INFOW>();
/// At most this many sockets are handed on.
const MAX_SOCKETS: u8 = 4;
/// How long a taker waits for an answer, and a sentinel for a guard that is starting.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The offer's pipe name: per socket directory (a hash of the tokens' path) and port.
pub fn path(tokens: &Path, port: u16, holder: Holder) -> String {
    // FNV-1a of the path, lowercased: Windows paths are case-insensitive.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tokens.to_string_lossy().to_lowercase().bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("cmdr-handover-{hash:016x}-{port}-{}", holder.name())
}

/// Whether the process at the other end of `stream` runs as this user.
fn same_user(stream: &Stream) -> bool {
    let Ok(Some(pid)) = stream.peer_creds().map(|c| c.pid()) else {
        return false;
    };
    match (current_user_sid(), process_user_sid(pid)) {
        (Ok(ours), Ok(theirs)) => ours == theirs,
        _ => false,
    }
}

/// Offers `sockets` at `name` from a thread, for as long as this process lives.
pub fn offer(name: &str, sockets: Vec<RawSocket>) -> std::io::Result<()> {
    let sid = current_user_sid()?;
    let sddl = widestring::U16CString::from_str(crate::socket::pipe_sddl(&sid))
        .map_err(|_| std::io::Error::other("a SID with a NUL in it"))?;
    let descriptor = SecurityDescriptor::deserialize(&sddl)?;
    let listener = ListenerOptions::new()
        .name(name.to_ns_name::<GenericNamespaced>()?)
        .security_descriptor(descriptor)
        .create_sync()?;
    std::thread::Builder::new()
        .name("endpoint-offer".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if !same_user(&stream) {
                    continue;
                }
                let Ok(Some(pid)) = stream.peer_creds().map(|c| c.pid()) else {
                    continue;
                };
                let Ok(records) = records_for(&sockets, pid) else {
                    continue;
                };
                if stream.write_all(&records).is_ok() {
                    // The taker closes once it has read them: a pipe disconnected before
                    // that would lose them.
                    let _ = stream.read(&mut [0u8; 1]);
                }
            }
        })?;
    Ok(())
}

/// Takes the sockets listening on `want` (and the containers' on its port) from the guard
/// of an earlier run, else from the port's sentinel.
pub fn take(tokens: &Path, want: SocketAddr) -> Option<Taken> {
    [Holder::Guard, Holder::Sentinel]
        .into_iter()
        .find_map(|holder| {
            let sockets = take_from(&path(tokens, want.port(), holder)).ok()?;
            sort(sockets, want)
        })
}

/// The sockets the holder at `name` hands on (checked: a holder of this user), waiting at
/// most [`ANSWER_WAIT`] for its answer.
pub fn take_from(name: &str) -> std::io::Result<Vec<TcpListener>> {
    let name = name.to_owned();
    let (send, answer) = std::sync::mpsc::channel();
    // A holder that never answers must not keep cmdrd from starting: the read is left to a
    // thread that is given up on.
    std::thread::Builder::new()
        .name("endpoint-take".into())
        .spawn(move || {
            let _ = send.send(read_offer(&name));
        })?;
    answer.recv_timeout(ANSWER_WAIT).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the holder of the sockets did not answer",
        )
    })?
}

fn read_offer(name: &str) -> std::io::Result<Vec<TcpListener>> {
    let mut stream = Stream::connect(name.to_ns_name::<GenericNamespaced>()?)?;
    if !same_user(&stream) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("the pipe {name} is held by another user"),
        ));
    }
    Ok(read_records(&mut stream)?
        .into_iter()
        // SAFETY: sockets just made for this process, owned by nothing else.
        .map(|socket| unsafe { TcpListener::from_raw_socket(socket) })
        .collect())
}

/// The records that give process `pid` its own descriptors of `sockets`: a count, then one
/// `WSAPROTOCOL_INFOW` each (`WSADuplicateSocketW`). The guard's standard input and an
/// offer's pipe carry them alike.
pub(in crate::endpoint) fn records_for(
    sockets: &[RawSocket],
    pid: u32,
) -> std::io::Result<Vec<u8>> {
    let count = u8::try_from(sockets.len())
        .ok()
        .filter(|n| *n <= MAX_SOCKETS)
        .ok_or_else(|| std::io::Error::other("too many sockets"))?;
    let mut records = vec![count];
    for &socket in sockets {
        // SAFETY: WSAPROTOCOL_INFOW is plain data, filled by the call.
        let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
        // SAFETY: a socket this process holds and a live record to fill.
        if unsafe { WSADuplicateSocketW(socket as SOCKET, pid, &raw mut info) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the record's bytes, read while it lives.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const info).cast::<u8>(), RECORD) };
        records.extend_from_slice(bytes);
    }
    Ok(records)
}

/// Reads records [`records_for`] wrote for this process and makes its sockets from them (a
/// record that makes none is left out).
pub(in crate::endpoint) fn read_records(from: &mut impl Read) -> std::io::Result<Vec<RawSocket>> {
    let mut count = [0u8; 1];
    from.read_exact(&mut count)?;
    if count[0] > MAX_SOCKETS {
        return Err(std::io::Error::other("too many sockets offered"));
    }
    // SAFETY: WSADATA is plain data, filled by the call; WSAStartup is counted, so calling
    // it again (std did, or will) is harmless.
    let mut data: WSADATA = unsafe { std::mem::zeroed() };
    // SAFETY: a live WSADATA; version 2.2.
    if unsafe { WSAStartup(0x0202, &raw mut data) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut sockets = Vec::new();
    for _ in 0..count[0] {
        let mut bytes = [0u8; RECORD];
        from.read_exact(&mut bytes)?;
        // SAFETY: the bytes of a record filled for this process (plain data).
        let info: WSAPROTOCOL_INFOW = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        // SAFETY: a live record from WSADuplicateSocketW for this process.
        let socket = unsafe {
            WSASocketW(
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                FROM_PROTOCOL_INFO,
                &raw const info,
                0,
                WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
            )
        };
        if socket != INVALID_SOCKET {
            sockets.push(socket as RawSocket);
        }
    }
    Ok(sockets)
}

/// Whether `socket` listens.
pub(super) fn listens(socket: &TcpListener) -> bool {
    let mut on: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: getsockopt writes at most `len` bytes into a live i32.
    let got = unsafe {
        getsockopt(
            socket.as_raw_socket() as SOCKET,
            SOL_SOCKET,
            SO_ACCEPTCONN,
            (&raw mut on).cast(),
            &raw mut len,
        )
    };
    got == 0 && on != 0
}
