//! Running processes follow the accepted token: long-running boto3, JavaScript SDK v3 and
//! Rust SDK clients started through `cmdrctl exec` (and boto3 through `credential_process`)
//! keep the accepted token while the account is `changed` and switch after `accept`,
//! without a restart; refusals the SDKs surface; the endpoint's own guards. moto_server
//! tells which token a process holds: it answers with the identity of the signing key.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmdr_testkit::Moto;

use crate::sandbox::{Sandbox, bin, stderr};

/// How long a client may take to follow an `accept`: each is served credentials lasting
/// its refresh window plus 6 s (crates/cmdrd/src/endpoint.rs `lifetime_for`), so it comes
/// back within seconds; this leaves ample room for a loaded machine. A bound, not a
/// timing: docs/benchmarks.md measures the real figures.
const FOLLOW: Duration = Duration::from_secs(240);

/// Access keys of an IAM user created in moto.
pub struct User {
    pub arn: String,
    pub id: String,
    pub secret: String,
}

/// Creates IAM users in moto (boto3 against its endpoint).
pub fn users(moto: &Moto, names: &[&str]) -> Vec<User> {
    let out = std::process::Command::new("python3")
        .arg(clients_dir().join("moto_users.py"))
        .arg(&moto.url)
        .args(names)
        .output()
        .expect("python3 with boto3 (scripts/test installs it)");
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<(String, String, String)> =
        serde_json::from_slice(&out.stdout).expect("users json");
    list.into_iter()
        .map(|(arn, id, secret)| User { arn, id, secret })
        .collect()
}

pub fn user_creds(profile: &str, user: &User) -> String {
    format!(
        "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        user.id, user.secret
    )
}

/// The clients' own directory (tests/clients: the Python and JavaScript loops).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A running client printing `<millis> <ARN>` (or `<millis> error: …`) per call.
pub struct Loop {
    pub name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Loop {
    pub fn spawn(name: &'static str, mut cmd: std::process::Command) -> Loop {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} loop: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Loop { name, child, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the latest call answered `arn`; returns when (unix millis) it did.
    pub fn wait_for(&self, arn: &str, within: Duration) -> u128 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(last) = self.lines().last()
                && let Some((at, rest)) = last.split_once(' ')
                && rest == arn
            {
                return at.parse().unwrap_or(0);
            }
            assert!(
                Instant::now() < deadline,
                "the {} loop never answered {arn}; its last lines: {:#?}",
                self.name,
                self.lines().iter().rev().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Lines printed after the first `skip`.
    pub fn since(&self, skip: usize) -> Vec<String> {
        self.lines().into_iter().skip(skip).collect()
    }

    /// Waits until at least `n` lines follow the first `skip` (calls made since then);
    /// returns them.
    pub fn wait_lines(&self, skip: usize, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let since = self.since(skip);
            if since.len() >= n {
                return since;
            }
            assert!(
                Instant::now() < deadline,
                "the {} loop made {} of {n} calls; its last lines: {:#?}",
                self.name,
                since.len(),
                self.lines().iter().rev().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sandbox with moto, users alice and bob, and account `acme` on alice's keys.
pub fn alice_and_bob() -> (Sandbox, Moto, Vec<User>) {
    let moto = Moto::start(&[]).expect("moto_server");
    let users = users(&moto, &["alice", "bob"]);
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(
        sb.config(),
        "[profile acme]\nregion = us-east-1\n[profile viaproc]\nregion = us-east-1\n",
    )
    .expect("config");
    sb.write_credentials(&user_creds("acme", &users[0]));
    sb.start();
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme",
        "--profile",
        "acme",
        "--endpoint",
        &moto.url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    (sb, moto, users)
}

pub fn exec_loop(sb: &Sandbox, name: &'static str, program: &[&str]) -> Loop {
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["exec", "acme", "--"]).args(program);
    cmd.current_dir(clients_dir());
    Loop::spawn(name, cmd)
}

#[test]
fn running_sdk_processes_follow_the_accepted_token() {
    let (sb, moto, users) = alice_and_bob();
    let (alice, bob) = (&users[0], &users[1]);
    let ctl = bin("cmdrctl");
    // boto3 through credential_process as well as through the endpoint.
    std::fs::write(
        sb.config(),
        format!(
            "[profile acme]\nregion = us-east-1\n[profile viaproc]\nregion = us-east-1\n\
             credential_process = {} credential-process acme\n",
            ctl.display()
        ),
    )
    .expect("config");
    let mut loops = vec![
        exec_loop(&sb, "boto3", &["python3", "sts_loop.py"]),
        exec_loop(&sb, "JavaScript SDK v3", &["node", "sts-loop.mjs"]),
        exec_loop(
            &sb,
            "Rust SDK",
            &[bin("cmdr-sts-loop").to_str().expect("utf8")],
        ),
    ];
    let mut proc = sb.external("python3");
    proc.arg(clients_dir().join("sts_loop.py"))
        .env("AWS_PROFILE", "viaproc")
        .env("AWS_ENDPOINT_URL", &moto.url);
    loops.push(Loop::spawn("boto3 (credential_process)", proc));
    for l in &loops {
        l.wait_for(&alice.arn, Duration::from_secs(60));
    }

    // bob pasted: `changed`; every process stays on alice.
    let mut watch = sb.watch();
    sb.write_credentials(&user_creds("acme", bob));
    watch.wait_type("token_changed");
    assert_eq!(sb.account("acme")["state"], "changed");
    // Three calls of each (one a second) made while `changed`.
    let marks: Vec<usize> = loops.iter().map(|l| l.lines().len()).collect();
    for (l, mark) in loops.iter().zip(&marks) {
        let since = l.wait_lines(*mark, 3, Duration::from_secs(60));
        assert!(
            since.iter().all(|line| line.ends_with(&alice.arn)),
            "the {} loop left alice while `changed`: {since:#?}",
            l.name
        );
    }

    // accept: every process switches to bob, none restarted.
    let pids: Vec<u32> = loops.iter().map(|l| l.child.id()).collect();
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    for l in &loops {
        l.wait_for(&bob.arn, FOLLOW);
    }
    assert_eq!(pids, loops.iter().map(|l| l.child.id()).collect::<Vec<_>>());
    for l in &loops {
        let errors: Vec<String> = l
            .lines()
            .into_iter()
            .filter(|line| line.contains("error:"))
            .collect();
        assert!(
            errors.is_empty(),
            "the {} loop failed calls: {errors:#?}",
            l.name
        );
    }
}

/// One raw HTTP/1.1 request to the endpoint; returns (status, body).
pub fn get(url: &str, authorization: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = authorization
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// The endpoint's base URL and `account`'s own token (`token_file` in `status` is the
/// directory of the tokens: append the account's name).
pub fn endpoint(sb: &Sandbox, account: &str) -> (String, String) {
    let status = sb.json(&["status"]);
    let e = &status["endpoint"];
    let dir = e["token_file"].as_str().expect("token dir");
    let token = std::fs::read_to_string(format!("{dir}{account}")).expect("read token");
    (e["url"].as_str().expect("url").to_owned(), token)
}

/// A process started through `exec` keeps working across `cmdrd` restarts (same URL, a
/// new token in the same file) and still follows `accept` after one.
#[test]
fn a_running_process_survives_a_daemon_restart() {
    let (mut sb, _moto, users) = alice_and_bob();
    let rust = exec_loop(
        &sb,
        "Rust SDK",
        &[bin("cmdr-sts-loop").to_str().expect("utf8")],
    );
    rust.wait_for(&users[0].arn, Duration::from_secs(60));
    sb.stop();
    sb.start();
    sb.write_credentials(&user_creds("acme", &users[1]));
    sb.wait_until("changed", || sb.account("acme")["state"] == "changed");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    rust.wait_for(&users[1].arn, FOLLOW);
}
