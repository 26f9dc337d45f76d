//! Containers on the `cmdr` network (`cmdrctl container setup`): the endpoint's second
//! listener, on 169.254.170.2 — the one non-loopback address every SDK accepts over plain
//! http, the network's gateway on the host — and the token directories that containers
//! mount read-only.
//!
//! Why `IP_FREEBIND` and not a netlink watch: the host holds 169.254.170.2 only while a
//! container on the network runs (the bridge is made on first use and removed after), and
//! a container's SDK may fetch within milliseconds of its start. A listener bound before
//! the address exists receives the first connection the moment the address appears, with
//! no window in which a watch has not yet seen it, and no task at all. It is bound to
//! 169.254.170.2 only, so it never listens on any other non-loopback address; connections
//! from outside 169.254.170.0/24 are closed unread.
//!
//! Why a directory per account: a container mounts `<root>/<port>/<account>/` and reads
//! `token` in it on every fetch. Token files die with the port as the loopback ones do
//! (removed when cmdrd stops and before it binds), but the directories stay while cmdrd
//! comes back on the same port, so a running container finds the new run's token through
//! the same mount; a file replaced by rename shows through a directory mount, where a
//! mounted file would keep showing the old one. A new port removes the old port's
//! directories: containers holding the old URL fail closed, as `exec`'s children do.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The `cmdr` network's gateway, where containers reach the host.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The token file's name in an account's container directory.
pub const TOKEN_FILE: &str = "token";

/// Whether a connection to the gateway comes from the `cmdr` network (169.254.170.0/24).
pub fn from_network(peer: &SocketAddr) -> bool {
    match peer {
        SocketAddr::V4(v4) => v4.ip().octets()[..3] == GATEWAY.octets()[..3],
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .is_some_and(|ip| ip.octets()[..3] == GATEWAY.octets()[..3]),
    }
}

/// Listens on 169.254.170.2:`port`, whether or not the address exists yet (see above).
#[cfg(target_os = "linux")]
pub fn bind_gateway(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_freebind_v4(true)?;
    // As std does on Unix: a restart may rebind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    // As the loopback listener: the next run joins it while this run's guard holds it.
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(std::net::SocketAddrV4::new(GATEWAY, port)))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Other platforms have no `IP_FREEBIND`, and Docker Desktop's containers (macOS,
/// Windows) reach the host through a VM, where 169.254.170.2 is not the host.
#[cfg(not(target_os = "linux"))]
pub fn bind_gateway(_port: u16) -> std::io::Result<std::net::TcpListener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "containers are served on Linux only (Docker Desktop: see README, Containers)",
    ))
}

/// The container token directories of one port.
pub struct ContainerDirs {
    root: PathBuf,
    dir: PathBuf,
}

impl ContainerDirs {
    /// Removes every container token file (all ports), keeping the directories that
    /// running containers have mounted: call before binding.
    pub fn clear_tokens(root: &Path) -> std::io::Result<()> {
        for port in read_dir_or_empty(root)? {
            ContainerDirs::clear_port_tokens(&port)?;
        }
        Ok(())
    }

    /// Removes the token files of one port's container directories (`root/PORT`).
    pub fn clear_port_tokens(port: &Path) -> std::io::Result<()> {
        for account in read_dir_or_empty(port)? {
            match std::fs::remove_file(account.join(TOKEN_FILE)) {
                Err(err)
                    if err.kind() != std::io::ErrorKind::NotFound
                        && err.kind() != std::io::ErrorKind::NotADirectory =>
                {
                    return Err(err);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The directories of `port`, once bound; every other port's go (their containers
    /// hold a URL that is no longer cmdrd's).
    pub fn new(root: PathBuf, port: u16) -> std::io::Result<ContainerDirs> {
        let name = port.to_string();
        for old in read_dir_or_empty(&root)? {
            if old.file_name().is_some_and(|n| n != name.as_str()) {
                let _ = std::fs::remove_dir_all(&old).or_else(|_| std::fs::remove_file(&old));
            }
        }
        let dir = root.join(name);
        cmdr_config::create_private_dir(&dir)?;
        Ok(ContainerDirs { root, dir })
    }

    /// The directory containers of `account` mount.
    pub fn dir(&self, account: &str) -> PathBuf {
        self.dir.join(account)
    }

    /// Whether a container was ever set up for `account` on this port.
    pub fn has(&self, account: &str) -> bool {
        self.dir(account).is_dir()
    }

    pub fn create(&self, account: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir(account);
        cmdr_config::create_private_dir(&dir)?;
        Ok(dir)
    }

    pub fn token_present(&self, account: &str) -> bool {
        self.dir(account).join(TOKEN_FILE).is_file()
    }

    /// Writes the account's token where its containers read it (by rename, which shows
    /// through their directory mount).
    pub fn write(&self, account: &str, token: &str) -> std::io::Result<()> {
        cmdr_config::write_atomic(&self.dir(account).join(TOKEN_FILE), token.as_bytes(), 0o600)
    }

    /// The account is gone: so are its containers' directory and token.
    pub fn remove(&self, account: &str) {
        let _ = std::fs::remove_dir_all(self.dir(account));
    }

    /// Every token dies (cmdrd stops); the directories stay for the next run.
    pub fn remove_tokens(&self) {
        if let Err(err) = Self::clear_tokens(&self.root) {
            tracing::warn!(dir = %self.root.display(), error = %err, "cannot remove the containers' tokens");
        }
    }
}

fn read_dir_or_empty(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                || err.kind() == std::io::ErrorKind::NotADirectory =>
        {
            Ok(Vec::new())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_of_the_network_only() {
        assert!(from_network(&"169.254.170.7:5000".parse().expect("addr")));
        assert!(from_network(&"169.254.170.2:5000".parse().expect("addr")));
        assert!(!from_network(&"169.254.171.7:5000".parse().expect("addr")));
        assert!(!from_network(&"10.0.0.7:5000".parse().expect("addr")));
        assert!(from_network(
            &"[::ffff:169.254.170.9]:1".parse().expect("addr")
        ));
    }

    #[test]
    fn directories_outlive_tokens_on_the_same_port_only() {
        let root = std::env::temp_dir().join(format!("cmdr-containers-{}", std::process::id()));
        let dirs = ContainerDirs::new(root.clone(), 4144).expect("dirs");
        let acme = dirs.create("acme").expect("create");
        dirs.write("acme", "t1").expect("write");
        assert!(dirs.token_present("acme"));
        // A restart: tokens go, directories stay for the same port.
        ContainerDirs::clear_tokens(&root).expect("clear");
        assert!(acme.is_dir() && !dirs.token_present("acme"));
        let same = ContainerDirs::new(root.clone(), 4144).expect("same port");
        assert!(same.has("acme"));
        // Another port: the old directories go.
        let moved = ContainerDirs::new(root.clone(), 4145).expect("new port");
        assert!(!acme.exists() && !moved.has("acme"));
        moved.create("prod").expect("create");
        moved.remove("prod");
        assert!(!moved.has("prod"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
