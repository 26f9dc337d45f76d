//! Binding the endpoint at start: the port kept from an earlier run (taken over from the
//! crash guard an earlier run left, with no moment free on Linux), its tokens' directory,
//! the containers' listener, and this run's guard.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use cmdr_proto::EndpointInfo;
use tokio::net::TcpListener;

#[cfg(any(target_os = "linux", target_os = "macos", windows))]
use super::guard;
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
use super::sentinel;
use super::{Access, Bound, Guard, PATH_PREFIX, Paths, Tokens, container};
use cmdr_config::EndpointSettings;

/// Binds the endpoint. Every token an earlier run left is removed first, so none waits in
/// a file while another program may hold its port. The port is `listen`'s, or the one
/// kept in `port_file` from an earlier start (so running processes keep their URL across
/// restarts), or a free one that is then kept. A configured port in use is an error; a
/// kept one is replaced, with a warning and `moved_from` (processes started for it fail
/// closed: their tokens are gone).
pub fn bind(settings: &EndpointSettings, paths: &Paths<'_>) -> anyhow::Result<Bound> {
    // The guard an earlier run left after a crash, or the port's sentinel once cmdrd and
    // its guard were both gone, holds the port's listening sockets and hands them on
    // (`handover.rs`): this run serves the same sockets, so the port is never free
    // and running processes follow. The guard is retired after.
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    let taken = wanted(settings, paths).and_then(|want| super::handover::take(paths.tokens, want));
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    let taken: Option<super::Taken> = None;
    let let_go = taken.is_none() || guard_let_go(paths);
    // Without a handover, a guard an earlier run left holds the port (its tokens are gone),
    // so this run can take the same port and running processes follow. On Linux this run's
    // listeners join the guard's (SO_REUSEPORT, which the kernel allows only between
    // sockets of one uid) and the guard is retired after: the port is never free for
    // another user to take in between. Elsewhere the guard is retired first.
    #[cfg(target_os = "linux")]
    let guarded = taken.is_none() && guard::holds(paths.tokens);
    #[cfg(not(target_os = "linux"))]
    let guarded = false;
    #[cfg(any(target_os = "macos", windows))]
    if taken.is_none() {
        guard::retire(paths.tokens);
    }
    Tokens::clear(paths.tokens).with_context(|| {
        format!(
            "cannot remove the endpoint tokens of an earlier run in {}",
            paths.tokens.display()
        )
    })?;
    container::ContainerDirs::clear_tokens(paths.containers).with_context(|| {
        format!(
            "cannot remove the container tokens of an earlier run in {}",
            paths.containers.display()
        )
    })?;
    match std::fs::remove_file(paths.legacy_token) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| {
                format!(
                    "cannot remove the old token file {}",
                    paths.legacy_token.display()
                )
            });
        }
        _ => {}
    }
    let (listener, moved_from, gateway) = match taken {
        Some(taken) if let_go => {
            let port = taken.listener.local_addr()?.port();
            tracing::info!(
                port,
                "took over the endpoint's listening sockets from the guard or sentinel of an earlier run"
            );
            let gateway = taken
                .gateway
                .map_or_else(|| container::bind_gateway(port), Ok);
            (taken.listener, None, gateway)
        }
        Some(taken) => {
            // Taken, but the guard did not let go: on its port, its late wipe would remove
            // this run's tokens.
            let port = taken.listener.local_addr()?.port();
            drop(taken);
            away_from_guard(settings, paths, port)?
        }
        None => {
            let (listener, moved_from) = listen(settings, paths, guarded)?;
            let port = listener.local_addr()?.port();
            let gateway = container::bind_gateway(port);
            // Both listeners are bound: the guard of an earlier run can go now (see above).
            if guarded && !guard_let_go(paths) {
                drop(gateway);
                away_from_guard(settings, paths, port)?
            } else {
                (listener, moved_from, gateway)
            }
        }
    };
    // A guard of an older version held the gateway without SO_REUSEPORT: bound now.
    let gateway = match gateway {
        Err(err) if guarded && err.kind() == std::io::ErrorKind::AddrInUse => {
            container::bind_gateway(listener.local_addr()?.port())
        }
        other => other,
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    // Made before the lock is taken, so a sentinel that sees this run can ask for the
    // sockets at once (it waits for the guard's answer).
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let offer = super::handover::path(paths.tokens, addr.port(), super::handover::Holder::Guard)
        .and_then(|path| {
            super::handover::offer(&path)
                .inspect_err(|err| tracing::warn!(path = %path.display(), error = %err, "cannot offer the endpoint's sockets for the next run: after a crash it binds the port again"))
                .ok()
        });
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    let offer = None;
    // Held from before the first token is written until exit (and by the guard after a
    // crash): a sentinel removes this port's tokens only once both are gone.
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    let port_lock = sentinel::PortLock::take(paths.tokens, addr.port()).with_context(|| {
        format!(
            "cannot lock the endpoint tokens of port {} beside {}",
            addr.port(),
            paths.tokens.display()
        )
    })?;
    let mut tokens = Tokens::new(paths.tokens.to_owned(), addr.port())
        .with_context(|| format!("cannot create {}", paths.tokens.display()))?;
    let mut gateway_problem = None;
    let gateway = match gateway {
        Ok(listener) => {
            let dirs = container::ContainerDirs::new(paths.containers.to_owned(), addr.port())
                .with_context(|| format!("cannot create {}", paths.containers.display()))?;
            tokens = tokens.with_containers(dirs);
            Some(TcpListener::from_std(listener)?)
        }
        Err(err) => {
            tracing::info!(port = addr.port(), error = %err, "containers are not served (no listener on {})", container::GATEWAY);
            // Another program on the containers' address and this port (any user can
            // bind it with IP_FREEBIND): said, since restarting keeps the same port.
            if err.kind() == std::io::ErrorKind::AddrInUse {
                gateway_problem = Some(format!(
                    "containers are not served: another program holds {}:{} (`ss -ltnp` names it); stop it, then restart cmdrd",
                    container::GATEWAY,
                    addr.port()
                ));
            }
            None
        }
    };
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let guard = spawn_guard(
        &listener,
        gateway.as_ref(),
        Some(port_lock.raw()),
        offer,
        paths,
        addr.port(),
    );
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    let guard = spawn_guard(&listener, gateway.as_ref(), None, offer, paths, addr.port());
    let gateway_url = gateway
        .as_ref()
        .map(|_| format!("http://{}:{}{PATH_PREFIX}", container::GATEWAY, addr.port()));
    let mut token_dir = tokens.dir().display().to_string();
    token_dir.push(std::path::MAIN_SEPARATOR);
    Ok(Bound {
        listener: TcpListener::from_std(listener)?,
        gateway,
        access: Access {
            info: EndpointInfo {
                url: format!("http://{addr}{PATH_PREFIX}"),
                token_file: token_dir,
                moved_from,
                gateway_url,
            },
            tokens: Arc::new(tokens),
            gateway_problem,
        },
        guard,
        #[cfg(any(target_os = "linux", target_os = "macos", windows))]
        port_lock: Some(port_lock),
        #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
        port_lock: None,
    })
}

/// The address this run listens on if it can: `listen`'s, or loopback with the port kept
/// from an earlier start.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn wanted(settings: &EndpointSettings, paths: &Paths<'_>) -> Option<SocketAddr> {
    settings
        .listen
        .or_else(|| kept_port(paths).map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

/// The port kept in `port_file` by an earlier start.
fn kept_port(paths: &Paths<'_>) -> Option<u16> {
    std::fs::read_to_string(paths.port_file)
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// Retires the guard an earlier run left; whether it let its port go.
fn guard_let_go(paths: &Paths<'_>) -> bool {
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    return guard::retire(paths.tokens);
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    return true;
}

/// The guard of an earlier run holds `port` and did not exit: a configured `listen` is an
/// error; otherwise another port is chosen, with the old URL as `moved_from`.
fn away_from_guard(
    settings: &EndpointSettings,
    paths: &Paths<'_>,
    port: u16,
) -> anyhow::Result<(
    std::net::TcpListener,
    Option<String>,
    std::io::Result<std::net::TcpListener>,
)> {
    anyhow::ensure!(
        settings.listen.is_none(),
        "cannot take the credentials endpoint's port {port} from the endpoint guard of an earlier run; stop it (its pid is in {}) and start cmdrd again",
        guard::pid_file(paths.tokens).display()
    );
    tracing::warn!(
        port,
        "the endpoint guard of an earlier run holds the port; choosing another: processes started with the old URL fail until started again with `cmdrctl exec`"
    );
    let listener = listen_shared(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("cannot listen on 127.0.0.1 for the credentials endpoint")?;
    let new_port = listener.local_addr()?.port();
    keep_port(paths, new_port)?;
    let gateway = container::bind_gateway(new_port);
    Ok((listener, Some(local_url(port)), gateway))
}

/// The endpoint's listener: on `listen`'s address, or on the port kept from an earlier
/// start, or on a new one that is then kept; with the old URL when the kept port was taken.
fn listen(
    settings: &EndpointSettings,
    paths: &Paths<'_>,
    guarded: bool,
) -> anyhow::Result<(std::net::TcpListener, Option<String>)> {
    let take = |addr: SocketAddr| take_port(addr, guarded, paths.tokens);
    if let Some(addr) = settings.listen {
        let listener = take(addr).with_context(|| {
            format!(
                "cannot listen on {addr} for the credentials endpoint (is another program using the port? a `cmdr-sentinel` of a cmdrd with another socket keeps its port until that socket's directory goes: `pgrep -a cmdr-sentinel`; else set endpoint.listen in config.toml, or endpoint.enabled = false)"
            )
        })?;
        return Ok((listener, None));
    }
    let kept = kept_port(paths);
    let mut moved_from = None;
    let again = kept.and_then(|port| match take(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(port, error = %err, "the credentials endpoint's port is taken; choosing another: processes started with the old URL fail until started again with `cmdrctl exec` (a `cmdr-sentinel` of a cmdrd with another socket directory keeps its port: `pgrep -a cmdr-sentinel`)");
            moved_from = Some(local_url(port));
            None
        }
    });
    let listener = match again {
        Some(listener) => listener,
        None => listen_shared(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .context("cannot listen on 127.0.0.1 for the credentials endpoint")?,
    };
    let port = listener.local_addr()?.port();
    if kept != Some(port) {
        keep_port(paths, port)?;
    }
    Ok((listener, moved_from))
}

/// Keeps `port` for the next start, so running processes keep their URL.
fn keep_port(paths: &Paths<'_>, port: u16) -> anyhow::Result<()> {
    cmdr_config::write_atomic(paths.port_file, format!("{port}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", paths.port_file.display()))
}

/// The endpoint's base URL on loopback `port`.
fn local_url(port: u16) -> String {
    format!("http://{}:{port}{PATH_PREFIX}", Ipv4Addr::LOCALHOST)
}

/// Listens on `addr` for the endpoint. A port the guard of an earlier run holds
/// (`guarded`) is joined (Linux, see [`bind`]); any other holder, even a process of this
/// uid, makes it an error (the port is taken). A guard of an older version, whose socket
/// cannot be shared, is retired first.
fn take_port(
    addr: SocketAddr,
    guarded: bool,
    tokens: &Path,
) -> std::io::Result<std::net::TcpListener> {
    // Not free: not joined, whoever holds it, unless it is our guard or our sentinel
    // (`sentinel.rs`: it reserves the port for this uid).
    #[cfg(target_os = "linux")]
    if !guarded && !sentinel::holds(tokens, addr.port()) {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let shared = listen_shared(addr);
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    if guarded
        && shared
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    {
        guard::retire(tokens);
        return listen_shared(addr);
    }
    shared
}

/// A listener the next run can join while this run's guard holds it after a crash
/// (SO_REUSEPORT: only sockets of this uid can; Linux). Elsewhere a plain listener.
#[cfg(target_os = "linux")]
fn listen_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does on Unix: a restart may rebind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(not(target_os = "linux"))]
fn listen_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// Starts the guard on the endpoint's listeners, holding the port's token lock with cmdrd
/// (Unix); without one (it could not start), a crash leaves the port free as before:
/// warned, not fatal.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
fn spawn_guard(
    listener: &std::net::TcpListener,
    gateway: Option<&TcpListener>,
    lock: Option<guard::Raw>,
    offer: Option<guard::Offer>,
    paths: &Paths<'_>,
    port: u16,
) -> Option<Guard> {
    #[cfg(unix)]
    fn raw(socket: &impl std::os::fd::AsRawFd) -> std::os::fd::RawFd {
        socket.as_raw_fd()
    }
    #[cfg(windows)]
    fn raw(socket: &impl std::os::windows::io::AsRawSocket) -> std::os::windows::io::RawSocket {
        socket.as_raw_socket()
    }
    let fds: Vec<_> = std::iter::once(raw(listener))
        .chain(gateway.map(raw))
        .chain(lock)
        .collect();
    match Guard::spawn(&fds, offer, paths.tokens, paths.containers, port) {
        Ok(guard) => Some(guard),
        Err(err) => {
            tracing::warn!(error = %err, "cannot start the endpoint's guard: after a crash, another program could take the port");
            None
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn spawn_guard(
    _listener: &std::net::TcpListener,
    _gateway: Option<&TcpListener>,
    _lock: Option<()>,
    _offer: Option<()>,
    _paths: &Paths<'_>,
    _port: u16,
) -> Option<Guard> {
    None
}
