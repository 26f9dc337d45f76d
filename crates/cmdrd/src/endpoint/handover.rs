//! Handing the endpoint's listening sockets on (Linux, macOS, Windows): the guard, and the
//! port's sentinel, offer them, and the next cmdrd takes them instead of binding the port
//! again (`handover/unix.rs`: a Unix socket beside the tokens, `SCM_RIGHTS`;
//! `handover/windows.rs`: a named pipe, `WSADuplicateSocketW`). The sentinel takes them
//! from the guard the same way, so it holds the port itself once cmdrd and its guard are
//! both gone. So the port is never free between two runs, whatever killed cmdrd and on
//! every platform: nobody else can bind it even for a moment, not only where the kernel
//! has Linux's `SO_REUSEPORT` rule (one uid per shared port). While nobody serves the
//! port, its holder refuses every connection at once (Unix; on Windows they wait for their
//! timeout); an old token that reaches the next run is refused there.
//!
//! Both ends check that the other runs as the same user; a socket taken is used only if it
//! listens on exactly the address cmdrd would bind.

use std::net::{IpAddr, SocketAddr, TcpListener};

use crate::endpoint::Taken;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(unix)]
pub use unix::{
    give, listening, offer, path, poll, refuse, same_socket, set_cloexec, set_nonblocking, take,
    take_from,
};
#[cfg(unix)]
pub(in crate::endpoint) use unix::{recv_fds, send_fds};
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;
#[cfg(windows)]
pub use windows::{offer, path, take, take_from};
#[cfg(windows)]
pub(in crate::endpoint) use windows::{read_records, records_for};

/// Who offers: the guard (while cmdrd runs, and after a crash) or the sentinel (once both
/// are gone).
#[derive(Clone, Copy)]
pub enum Holder {
    Guard,
    Sentinel,
}

impl Holder {
    fn name(self) -> &'static str {
        match self {
            Holder::Guard => "guard",
            Holder::Sentinel => "sentinel",
        }
    }
}

/// The listener on `want` and the containers' on its port, among `sockets`; the rest is
/// closed.
fn sort(sockets: Vec<TcpListener>, want: SocketAddr) -> Option<Taken> {
    let mut listener = None;
    let mut gateway = None;
    for socket in sockets {
        if !imp::listens(&socket) {
            continue;
        }
        match socket.local_addr() {
            Ok(addr) if addr == want => listener = Some(socket),
            Ok(addr)
                if addr.port() == want.port()
                    && addr.ip() == IpAddr::V4(super::container::GATEWAY) =>
            {
                gateway = Some(socket);
            }
            _ => {}
        }
    }
    Some(Taken {
        listener: listener?,
        gateway,
    })
}
