//! The loopback Identity Center the portal sections (and import's) run against.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::propagation::harness::clients_dir;

/// The loopback Identity Center, killed on drop.
pub struct IdentityCenter {
    child: Child,
    pub url: String,
}

impl IdentityCenter {
    /// Starts the server; with `auto_approve` every device code and authorize request is
    /// approved as it is made (its test control, as a person clicking "Allow" at once).
    pub fn start(auto_approve: bool) -> anyhow::Result<IdentityCenter> {
        let script = clients_dir().join("identity_center.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script);
        if auto_approve {
            cmd.arg("--auto-approve");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("python3 identity_center.py")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening ")
            .context("identity_center.py did not start")?
            .to_owned();
        Ok(IdentityCenter { child, url })
    }

    /// One request to a test control (or any route); the answer's body.
    fn call(&self, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).context("connect to identity_center.py")?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        if !head.starts_with("HTTP/1.1 200") {
            bail!(
                "identity_center.py {path}: {}",
                head.lines().next().unwrap_or("")
            );
        }
        Ok(body.to_owned())
    }

    pub fn post(&self, path: &str, body: &str) -> anyhow::Result<()> {
        self.call("POST", path, body).map(drop)
    }

    /// The server's call counters (`CreateToken.refresh_token`, `GetRoleCredentials`…).
    pub(super) fn counters(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.call(
            "GET",
            "/_test/counters",
            "",
        )?)?)
    }
}

impl Drop for IdentityCenter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
