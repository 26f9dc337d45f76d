//! [`Moto`]: `moto_server` on a free loopback port, the AWS-compatible STS (and IAM)
//! endpoint of the tests and the benchmarks; killed when dropped.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `moto_server` may take to answer (a cold Python start on a loaded machine).
const START: Duration = Duration::from_secs(60);

/// A running `moto_server -H 127.0.0.1 -p PORT`; `url` is `http://127.0.0.1:PORT`.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    /// On a free port, with `env` added to its environment (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0` to make it check credentials).
    pub fn start(env: &[(&str, &str)]) -> io::Result<Moto> {
        Moto::start_on(free_port()?, env)
    }

    /// On a given port (a target that comes up after an account was bound to it). Returns
    /// once the port accepts connections.
    pub fn start_on(port: u16, env: &[(&str, &str)]) -> io::Result<Moto> {
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run moto_server (pip install 'moto[server]'; scripts/test does): {e}"
                ),
            )
        })?;
        // Dropped (and killed) on every early return below.
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + START;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "moto_server exited with {status} before listening on port {port}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("moto_server did not listen on port {port} within {START:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free at the time of the call (the listener that found it is closed).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
