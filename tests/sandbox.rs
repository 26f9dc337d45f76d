//! The `Sandbox`: a temp HOME with its own XDG directories and socket, the real `cmdrd`
//! and `cmdrctl` binaries, and helpers that wait for an event or poll for a condition with a
//! deadline (a fixed sleep only where the test is about time passing).
//!
//! What every test file shares, defined once:
//! - here: [`Sandbox`] (`start`, `ctl`, `json`, `watch`, `wait_until`), [`Watch`]
//!   (`wait_type`, `wait_for`, `wait_for_within`, `until` for negatives), [`creds`],
//!   [`NOBODY`], [`long`] and [`scale`] for `CMDR_LONG_TESTS`;
//! - in `cmdr_testkit` (shared with the benchmarks): `Moto` (`Moto::start(&[])` gives
//!   `moto_server` on a free port, `url`), `free_port`, `Rng` (seeded, prints
//!   `CMDR_SEED`), `sys` (signals, root), and `skip`: a test that cannot run here calls
//!   `skip::need("tool", "Debian package …")`, `skip::need_root("what")` or
//!   `skip::skip("reason")`, which print one `skipped: …` line, and fail in CI.
//!
//! Waiting: on an event (`Watch::wait_type`), else a poll with a deadline
//! (`wait_until`). A negative ("no X arrives") is checked up to a marker event caused
//! after it (`Watch::until`), never over a quiet window, so it cannot pass by being slow.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use cmdr_testkit::TempHome;
use cmdr_testkit::sys;
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(15);

/// The uid (and gid) of `nobody`: tests that act as another user run as it.
pub const NOBODY: u32 = 65534;

/// The long variants run only with `CMDR_LONG_TESTS=1`.
pub fn long() -> bool {
    std::env::var_os("CMDR_LONG_TESTS").is_some_and(|v| v != "0")
}

/// `short` normally, `long` with `CMDR_LONG_TESTS=1`.
pub fn scale(short: usize, long_: usize) -> usize {
    if long() { long_ } else { short }
}

pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests (scripts/test does)",
        path.display()
    );
    path
}

/// The temp HOME's paths (`root`, `home`, `aws`, `run_dir`, `data_dir`, `log`) and
/// `socket()`, `credentials()`… come from [`TempHome`], through `Deref`.
pub struct Sandbox {
    temp: TempHome,
    daemon: Option<Child>,
    extra_env: Vec<(String, String)>,
    /// Runs every command (daemon and clients) as this uid/gid (tests/faults.rs).
    pub run_as: Option<u32>,
    /// A program (and its arguments) that execs cmdrd, e.g. `unshare …` (tests/faults.rs).
    pub daemon_wrapper: Vec<String>,
    /// Every secret written through this sandbox: checked against the daemon's log, the
    /// state file and every event stream when the sandbox is dropped.
    secrets: Arc<Mutex<BTreeSet<String>>>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // No test may reach real AWS: validation is opt-in per test (against moto).
        Sandbox {
            temp: TempHome::new("cmdr-e2e-", "").expect("temp home"),
            daemon: None,
            extra_env: Vec::new(),
            run_as: None,
            daemon_wrapper: Vec::new(),
            secrets: Arc::default(),
        }
    }

    /// A sandbox with `~/.aws/credentials` holding `[acme]` with `token`.
    pub fn with_profile(token: &str) -> Sandbox {
        let sb = Sandbox::new();
        std::fs::create_dir_all(&sb.aws).expect("aws dir");
        sb.write_credentials(&creds("acme", token));
        sb
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    /// Replaces cmdr's `config.toml`.
    pub fn write_cmdr_config(&self, text: &str) {
        std::fs::write(self.cmdr_config(), text).expect("config");
    }

    pub fn write_credentials(&self, text: &str) {
        self.remember_secrets(text);
        std::fs::write(self.credentials(), text).expect("write credentials");
    }

    /// Records the secret values in `text` (keys and tokens) for the leak scan on drop.
    pub fn remember_secrets(&self, text: &str) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && SECRET_KEYS.contains(&key.trim())
                && value.trim().len() >= 8
            {
                secrets.insert(value.trim().to_owned());
            }
        }
    }

    fn env(&self, cmd: &mut Command) {
        self.temp.env(cmd);
        cmd.env("RUST_LOG", "trace");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        if let Some(id) = self.run_as {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(id).gid(id);
        }
    }

    pub fn command(&self, program: &str) -> Command {
        self.external(bin(program))
    }

    /// Any program, with the sandbox's environment (HOME, XDG dirs, socket).
    pub fn external(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd
    }

    /// Starts cmdrd and waits until it answers.
    pub fn start(&mut self) {
        self.start_unready();
        self.wait_ready(WAIT);
    }

    fn start_unready(&mut self) {
        assert!(self.daemon.is_none(), "daemon already started");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut daemon = match self.daemon_wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = self.external(program);
                cmd.args(args).arg(bin("cmdrd"));
                cmd
            }
            None => self.command("cmdrd"),
        };
        let child = daemon
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn cmdrd");
        self.daemon = Some(child);
    }

    /// [`Sandbox::start`] for a daemon that has much to load (a debug build on a busy
    /// machine): waits up to `limit` for it to answer.
    pub fn start_within(&mut self, limit: Duration) {
        self.start_unready();
        self.wait_ready(limit);
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.ctl(&["status"]).status.success() {
                return;
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("cmdrd exited with {status}\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("cmdrd did not answer\n{}", self.log_tail());
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.daemon.take()?;
        sys::terminate(&mut child).expect("SIGTERM and wait").code()
    }

    /// SIGTERM, then waits at most `limit` for the exit: the exit code, or `Err` with the
    /// time waited after a SIGKILL when it did not exit in time.
    pub fn stop_within(&mut self, limit: Duration) -> Result<Option<i32>, Duration> {
        let Some(mut child) = self.daemon.take() else {
            return Ok(None);
        };
        sys::signal(child.id(), sys::Signal::Term).expect("SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Ok(status.code());
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.command("cmdrctl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cmdrctl")
    }

    /// Runs cmdrctl with `--json` and parses stdout; panics with stderr on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "cmdrctl {all:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    pub fn account(&self, name: &str) -> Value {
        self.json(&["accounts", "show", name])
    }

    pub fn add_account(&self, name: &str, extra: &[&str]) {
        let mut args = vec!["accounts", "add", name, "--profile", "acme"];
        args.extend_from_slice(extra);
        let out = self.ctl(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `cmdrctl watch --json` and waits until it is subscribed.
    pub fn watch(&self) -> Watch {
        let before = self.json(&["status"])["subscribers"].as_u64().unwrap_or(0);
        let mut child = self
            .command("cmdrctl")
            .args(["watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        self.wait_until("watch subscribed", || {
            self.json(&["status"])["subscribers"].as_u64().unwrap_or(0) > before
        });
        Watch {
            child,
            rx,
            seen: Vec::new(),
            secrets: Arc::clone(&self.secrets),
        }
    }

    pub fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "timed out waiting for {what}\n--- daemon log tail ---\n{}",
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        self.temp.log_tail(30)
    }
}

impl std::ops::Deref for Sandbox {
    type Target = TempHome;

    fn deref(&self) -> &TempHome {
        &self.temp
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            return;
        }
        let mut texts = vec![("daemon log", self.log_text())];
        if let Some(state) = read_small(&self.state_file()) {
            texts.push(("state file", state));
        }
        if let Some(journal) = read_small(&self.state_file().with_extension("journal")) {
            texts.push(("state journal", journal));
        }
        // What is in the AWS files and the SSO cache now counts too, whoever wrote it (cmdrd's
        // renewals, `login`, the portal keeper): role credentials, access and refresh
        // tokens, client secrets.
        // Bounded, regular files only: tests leave `/dev/zero`, FIFOs and 2 GiB files there.
        if let Some(text) = read_small(&self.credentials()) {
            self.remember_secrets(&text);
        }
        self.remember_sso_cache();
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let hits = scan(&secrets, &texts);
        assert!(hits.is_empty(), "secrets leaked: {hits:?}");
    }
}

impl Sandbox {
    /// Records the secrets of every token file in `~/.aws/sso/cache` for the leak scan.
    pub fn remember_sso_cache(&self) {
        let Ok(entries) = std::fs::read_dir(self.aws.join("sso/cache")) else {
            return;
        };
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.flatten() {
            let Some(bytes) = read_small(&entry.path()).map(String::into_bytes) else {
                continue;
            };
            let Ok(Value::Object(token)) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            for field in ["accessToken", "refreshToken", "clientSecret"] {
                if let Some(secret) = token.get(field).and_then(Value::as_str)
                    && secret.len() >= 8
                {
                    secrets.insert(secret.to_owned());
                }
            }
        }
    }
}

/// Keys whose values are secrets.
const SECRET_KEYS: [&str; 3] = [
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
];

/// Every secret key [`creds`] writes contains this, however the test wrote the file.
const SECRET_MARKER: &str = "wJalrXUtnFEMI-SECRET";

/// Where any of `secrets` (or the marker) appears in `texts`; appends a line of figures to
/// `$CMDR_SECRET_SCAN_REPORT` when set (docs/reliability.md).
fn scan(secrets: &BTreeSet<String>, texts: &[(&str, String)]) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, text) in texts {
        for secret in secrets.iter().map(String::as_str).chain([SECRET_MARKER]) {
            if text.contains(secret) {
                hits.push(format!("{secret} in the {name}"));
            }
        }
    }
    if let Some(report) = std::env::var_os("CMDR_SECRET_SCAN_REPORT") {
        use std::io::Write as _;
        let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
        let kinds: Vec<&str> = texts.iter().map(|(n, _)| *n).collect();
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
        {
            let _ = writeln!(
                file,
                "{} secrets, {bytes} bytes ({}), {} hits",
                secrets.len() + 1,
                kinds.join(", "),
                hits.len()
            );
        }
    }
    hits
}

pub struct Watch {
    child: Child,
    rx: mpsc::Receiver<Value>,
    /// Every event received so far.
    pub seen: Vec<Value>,
    secrets: Arc<Mutex<BTreeSet<String>>>,
}

impl Watch {
    /// Waits for the next event matching `pred`; panics after [`WAIT`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(what, WAIT, pred)
    }

    /// Waits at most `within` for the next event matching `pred` (for the few waits that
    /// are longer than [`WAIT`] by design, e.g. retries with backoff).
    pub fn wait_for_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; got {:#?}", self.seen),
            }
        }
    }

    pub fn wait_type(&mut self, kind: &str) -> Value {
        self.wait_for(kind, |e| e["type"] == kind)
    }

    /// Every event from now up to and including the first that matches `marker`. For
    /// negatives: cause the marker after the thing under test (the daemon emits events in
    /// order), then assert that what came before it holds no unwanted event. Unlike a
    /// quiet window, this cannot pass because the daemon was slow.
    pub fn until(&mut self, marker: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let from = self.seen.len();
        self.wait_for(marker, pred);
        self.seen[from..].to_vec()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            return;
        }
        // Whatever is still buffered counts too.
        while let Ok(event) = self.rx.try_recv() {
            self.seen.push(event);
        }
        let events = serde_json::to_string(&self.seen).unwrap_or_default();
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let hits = scan(&secrets, &[("event stream", events)]);
        assert!(hits.is_empty(), "secrets leaked: {hits:?}");
    }
}

/// A credentials section with fixed keys and the given session token.
pub fn creds(profile: &str, token: &str) -> String {
    format!(
        "[{profile}]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-{profile}\naws_session_token = {token}\n"
    )
}

pub fn set_mode(path: &Path, mode: u32) {
    cmdr_testkit::set_mode(path, mode).expect("chmod");
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A regular file of at most 16 MiB as text (what a test wrote there), else `None`: never
/// a device, a FIFO or a huge file a hostile test planted.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 16 << 20 {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}
