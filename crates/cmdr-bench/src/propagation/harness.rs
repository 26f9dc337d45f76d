//! What the propagation benchmark drives: moto_server with its IAM users, the SDKs'
//! long-running client loops, one GET of the credentials endpoint, and a
//! `credential_process` wrapper that counts its runs.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub(crate) use cmdr_testkit::Moto;

use crate::daemon::Sandbox;

/// The test clients (tests/clients): the boto3 and JavaScript loops, the moto user script.
pub(crate) fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

/// (ARN, access key id, secret) of new IAM users.
pub(crate) fn users(moto: &Moto, names: &[&str]) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = Command::new("python3")
        .arg(clients_dir().join("moto_users.py"))
        .arg(&moto.url)
        .args(names)
        .output()
        .context("python3 with boto3")?;
    if !out.status.success() {
        bail!("moto_users.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub(crate) fn creds(user: &(String, String, String)) -> String {
    format!(
        "[acme]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        user.1, user.2
    )
}

/// A long-running client: every line it prints is `<unix millis> <ARN or error>`.
pub(crate) struct Client {
    pub(crate) name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<(u128, String)>>>,
}

impl Client {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command) -> anyhow::Result<Client> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start the {name} client"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((at, rest)) = line.split_once(' ') {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((at.parse().unwrap_or(0), rest.to_owned()));
                }
            }
        });
        Ok(Client { name, child, lines })
    }

    /// A client that has already answered `lines` (a `true` process stands in for it).
    #[cfg(test)]
    pub(crate) fn answered(lines: Vec<(u128, String)>) -> Client {
        Client {
            name: "test",
            child: Command::new("true").spawn().expect("spawn true"),
            lines: Arc::new(Mutex::new(lines)),
        }
    }

    /// When (unix millis) it first answered `arn` at or after `since`.
    pub(crate) fn first(&self, arn: &str, since: u128) -> Option<u128> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(at, rest)| *at >= since && rest == arn)
            .map(|(at, _)| *at)
    }

    /// When it first answered `arn` in `[since, until)`.
    pub(crate) fn first_between(&self, arn: &str, since: u128, until: u128) -> Option<u128> {
        self.first(arn, since).filter(|at| *at < until)
    }

    /// What it answered last before `at`.
    pub(crate) fn last_before(&self, at: u128) -> Option<String> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|(t, _)| *t < at)
            .map(|(_, rest)| rest.clone())
    }

    /// Calls in `[since, until)` that printed an error.
    pub(crate) fn failed_between(&self, since: u128, until: u128) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, rest)| *t >= since && *t < until && rest.starts_with("error:"))
            .count()
    }

    /// Calls it made in `[since, until)`.
    pub(crate) fn calls_between(&self, since: u128, until: u128) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| *t >= since && *t < until)
            .count()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

pub(crate) fn ctl_ok(sb: &Sandbox, args: &[&str]) -> anyhow::Result<String> {
    let out = sb.ctl().args(args).output().context("cmdrctl")?;
    if !out.status.success() {
        bail!("cmdrctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn state(sb: &Sandbox) -> String {
    ctl_ok(sb, &["accounts", "show", "acme", "--json"])
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One GET of the endpoint on a new connection, as the SDKs do; returns the status.
pub(crate) fn fetch(url: &str, token: &str) -> anyhow::Result<u16> {
    Ok(fetch_with(url, token, "")?.0)
}

/// One GET with extra header lines (each ending in CRLF); returns the status and body.
pub(crate) fn fetch_with(url: &str, token: &str, headers: &str) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("http url")?;
    let (host, path) = rest.split_once('/').context("path")?;
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}

/// How a client gets its credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `cmdrctl exec acme --`: the credentials endpoint (cmdr's way).
    Endpoint,
    /// `credential_process = cmdrctl credential-process acme` (the baseline that also follows).
    Process,
    /// `cmdrctl exec --static acme --`: the keys themselves, no endpoint (the old way).
    Static,
}

pub(crate) struct Probe {
    pub(crate) sdk: &'static str,
    pub(crate) via: Via,
    pub(crate) client: Client,
}

/// A `credential_process` wrapper that counts its runs (one line each in `<script>.count`).
pub(crate) fn counting_process(sb: &Sandbox, tag: &str) -> anyhow::Result<PathBuf> {
    let script = sb.home.join(format!("credential-process-{tag}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho >> \"$0.count\"\nexec '{}' credential-process acme\n",
            sb.bins.join("cmdrctl").display()
        ),
    )?;
    let mut perms = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms)?;
    Ok(script)
}

pub(crate) fn process_runs(script: &Path) -> usize {
    std::fs::read_to_string(script.with_extension("count")).map_or(0, |t| t.lines().count())
}

/// Seconds from now to the `Expiration` of a credentials JSON document.
pub(crate) fn lifetime_secs(body: &str) -> anyhow::Result<i64> {
    let value: serde_json::Value = serde_json::from_str(body).context("credentials JSON")?;
    let at = value["Expiration"].as_str().context("no Expiration")?;
    let at = chrono::DateTime::parse_from_rfc3339(at).context("Expiration")?;
    Ok((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds() + 1)
}

pub(crate) fn fmt_secs(s: i64) -> String {
    if s >= 120 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

pub(crate) fn wait_for(
    c: &Client,
    arn: &str,
    since: u128,
    within: Duration,
) -> anyhow::Result<u128> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(at) = c.first(arn, since) {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("the {} client never answered {arn}", c.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's debug line for one fetch (crates/cmdrd/src/endpoint.rs).
pub(super) const FETCH_LINE: &str = "served an account's credentials";

/// Endpoint fetches served so far, by client family, from the daemon's debug log.
pub(crate) fn count_fetches(log: &str) -> std::collections::BTreeMap<&'static str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(FETCH_LINE)) {
        for family in ["botocore", "js-v3", "rust", "other"] {
            if line.contains(&format!("client=\"{family}\""))
                || line.contains(&format!("client={family}"))
            {
                *out.entry(family).or_insert(0) += 1;
            }
        }
    }
    out
}
