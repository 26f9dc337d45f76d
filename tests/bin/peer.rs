//! `cmdr-test-peer`: a stranger on the socket, for the impersonation tests
//! (tests/impersonation.rs), run as another uid.
//!
//! - `relay LISTEN TARGET`: listens on the Unix socket LISTEN (mode 0666, so every user can
//!   connect), prints `listening` once it accepts, and forwards every connection to the
//!   socket TARGET, byte for byte in both directions: an attacker's relay to their own
//!   daemon.
//! - `hello SOCKET`: connects, says hello in JSON lines, and prints whatever comes back
//!   until the other side closes (at most 5 s): a raw client that checks nothing.
//! - `squat PORT STOP`: binds 127.0.0.1:PORT with SO_REUSEADDR and SO_REUSEPORT as fast as
//!   it can until the file STOP exists (at most 5 min; tests/endpoint_guard.rs): prints
//!   `trying` once its first attempt failed, then `bound` (exit 1) as soon as one
//!   succeeds, else `held N` (the attempts) at the end: a squatter waiting for the
//!   endpoint's port to come free.

#[cfg(not(unix))]
fn main() {
    eprintln!("cmdr-test-peer: Unix sockets and uids only");
    std::process::exit(2);
}

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(unix)]
mod unix {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["relay", listen, target] => relay(listen, target),
            ["hello", socket] => hello(socket),
            ["squat", port, stop] => squat(port, stop),
            _ => {
                eprintln!(
                    "usage: cmdr-test-peer relay LISTEN TARGET | hello SOCKET | squat PORT STOP"
                );
                std::process::exit(2);
            }
        }
    }

    fn relay(listen: &str, target: &str) {
        let listener = UnixListener::bind(listen).expect("bind the relay socket");
        std::fs::set_permissions(listen, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        println!("listening");
        std::io::stdout().flush().expect("stdout");
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(upstream) = UnixStream::connect(target) else {
                continue;
            };
            let (Ok(client_rx), Ok(upstream_tx)) = (client.try_clone(), upstream.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || pump(client_rx, upstream_tx));
            std::thread::spawn(move || pump(upstream, client));
        }
    }

    /// Copies `from` to `to` until either side closes.
    fn pump(mut from: UnixStream, mut to: UnixStream) {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    }

    fn squat(port: &str, stop: &str) {
        use socket2::{Domain, Protocol, Socket, Type};
        let port: u16 = port.parse().expect("port");
        let stop = std::path::Path::new(stop);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let until = std::time::Instant::now() + Duration::from_secs(300);
        let mut attempts: u64 = 0;
        while std::time::Instant::now() < until && !(attempts.is_multiple_of(256) && stop.exists())
        {
            let socket =
                Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            attempts += 1;
            if socket.bind(&addr.into()).is_ok() && socket.listen(16).is_ok() {
                println!("bound");
                std::process::exit(1);
            }
            if attempts == 1 {
                println!("trying");
                std::io::stdout().flush().expect("stdout");
            }
        }
        println!("held {attempts}");
    }

    fn hello(socket: &str) {
        let mut stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let hello = r#"{"hello":{"protocol":1,"client":"cmdr-test-peer","client_version":"0"}}"#;
        let _ = stream.write_all(format!("{hello}\n").as_bytes());
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        print!("{}", String::from_utf8_lossy(&answer));
    }
}
