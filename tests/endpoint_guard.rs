//! The endpoint's crash guard (`crates/cmdrd/src/endpoint/guard.rs`), as an attacker
//! found it: a guard killed while cmdrd runs is replaced (else the next crash would free
//! the port); a late guard removes only its own port's tokens, never a later run's; and
//! only the guard the pid file names (pid and start time) is stopped.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cmdr_testkit::skip::need_root;

use crate::another_user::bin_copy;
use crate::endpoint::{alice_and_bob, get};
use crate::sandbox::{NOBODY, Sandbox, set_mode, stderr, stdout};

/// The account's endpoint URL and token file, as `exec` gives them.
pub fn child_env(sb: &Sandbox, name: &str) -> (String, PathBuf) {
    let out = sb
        .command("cmdrctl")
        .args(["exec", name, "--", "sh", "-c"])
        .arg("printf '%s\\n%s\\n' \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" \"$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE\"")
        .output()
        .expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let url = lines.next().expect("url").to_owned();
    (url, PathBuf::from(lines.next().expect("token file")))
}

pub fn port_of(url: &str) -> u16 {
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// `…/cmdrd.endpoint-guard.pid`, from a token file `…/cmdrd.endpoint/PORT/NAME`.
fn pid_file(token_file: &Path) -> PathBuf {
    let root = token_file
        .parent()
        .and_then(Path::parent)
        .expect("token root");
    let mut name = root.as_os_str().to_owned();
    name.push("-guard.pid");
    PathBuf::from(name)
}

/// The live guard's pid, from its pid file.
pub fn guard_pid(token_file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file(token_file)).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = state
        .rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .to_owned();
    (comm.trim() == "cmdr-guard" && state != "Z").then_some(pid)
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit(')').next()?.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// `kill SIGNAL PID…`: every pid at the same moment.
pub fn signal(pids: &[i32], signal: &str) {
    let ok = Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(i32::to_string))
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {signal} {pids:?}");
}

/// No program, not even one of this uid (a plain bind, `SO_REUSEADDR` as std sets it),
/// can bind `port` on loopback for two seconds: the port of `whose` stays held.
pub fn nobody_binds_for_two_seconds(port: u16, whose: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_err(),
            "another program took the port of {whose}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Another user (`nobody`) binding a port as fast as it can, with SO_REUSEADDR and
/// SO_REUSEPORT (`cmdr-test-peer squat`), from `start` until `never_bound`.
pub struct Squatter {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    stop: PathBuf,
    _stop_dir: tempfile::TempDir,
}

impl Squatter {
    /// Starts it; returns once it has tried and failed (someone holds the port).
    pub fn start(sb: &Sandbox, port: u16) -> Squatter {
        set_mode(&sb.root, 0o755);
        let peer = bin_copy("cmdr-test-peer", &sb.root);
        let stop_dir = tempfile::tempdir().expect("tempdir");
        set_mode(stop_dir.path(), 0o755);
        let stop = stop_dir.path().join("stop");
        let mut child = Command::new(&peer)
            .arg("squat")
            .arg(port.to_string())
            .arg(&stop)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the squatter");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first, "trying", "someone of ours holds the port");
        Squatter {
            child,
            lines,
            stop,
            _stop_dir: stop_dir,
        }
    }

    /// Stops it and asserts it never bound the port.
    pub fn never_bound(mut self) {
        std::fs::write(&self.stop, "").expect("stop the squatter");
        let last = self.lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = self.child.wait();
        assert!(
            last.starts_with("held "),
            "another user took the port: {last}"
        );
    }
}

/// A guard killed while cmdrd runs is replaced within seconds, so a crash after that
/// still finds the port held and the tokens removed.
#[test]
fn a_guard_killed_while_cmdrd_runs_is_replaced() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let first = guard_pid(&file).expect("a guard runs beside cmdrd");
    signal(&[first], "-KILL");
    sb.wait_until("another guard runs", || {
        guard_pid(&file).is_some_and(|pid| pid != first)
    });
    assert!(
        !alive(first),
        "the killed guard was reaped, not left a zombie"
    );
    assert!(
        stdout(&sb.ctl(&["status"])).contains("endpoint"),
        "cmdrd kept serving"
    );
    sb.kill9();
    sb.wait_until("the token file is removed after the crash", || {
        !file.exists()
    });
    assert!(
        TcpListener::bind(("127.0.0.1", port_of(&url))).is_err(),
        "the replacement guard holds the port after the crash"
    );
    sb.start();
    assert_eq!(
        child_env(&sb, "acme").0,
        url,
        "the same URL after the restart"
    );
}

/// After a crash, another user binding the port as fast as it can, with SO_REUSEADDR and
/// SO_REUSEPORT, never gets it: not while the guard holds it, and not while the next
/// cmdrd takes it over (its listener joins the guard's before the guard goes; the kernel
/// lets only sockets of one uid share a port). Walkthrough of 2026-12-06: the guard was
/// retired before the bind, and a squatter won that gap on its first try.
#[test]
fn another_user_never_gets_the_port_across_a_crash_and_restart() {
    if !need_root("binding as another uid") {
        return;
    }
    let (mut sb, _moto, alice) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    sb.kill9();
    sb.wait_until("the token file is removed after the crash", || {
        !file.exists()
    });
    let squatter = Squatter::start(&sb, port_of(&url));
    sb.start();
    let (again, token_file) = child_env(&sb, "acme");
    squatter.never_bound();
    assert_eq!(again, url, "the same URL after the restart");
    let token = std::fs::read_to_string(&token_file).expect("the new run's token");
    let (code, body) = get(&url, Some(&token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&alice[0].id), "{body}");
}

/// A guard that did not let go when the next cmdrd retired it (here: stopped) and acts
/// later removes only the tokens of its own port: the new run, on another port, keeps
/// serving.
#[test]
fn a_late_guard_removes_only_its_own_ports_tokens() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let old = guard_pid(&file).expect("a guard");
    sb.kill9();
    sb.wait_until("the token file is removed after the crash", || {
        !file.exists()
    });
    signal(&[old], "-STOP");
    // The next cmdrd cannot retire the stopped guard: its port stays taken, so it moves.
    sb.start();
    let (moved, new_file) = child_env(&sb, "acme");
    assert_ne!(moved, url);
    let token = std::fs::read_to_string(&new_file).expect("the new run's token");
    signal(&[old], "-CONT");
    sb.wait_until("the old guard ends (its SIGTERM was pending)", || {
        !alive(old)
    });
    assert!(
        new_file.exists(),
        "the old guard removed the new run's token"
    );
    assert_eq!(get(&moved, Some(&token)).0, 200);
}

/// Only the guard the pid file names is stopped at start: a process of ours that is named
/// `cmdr-guard` but started at another time (a reused pid) is left alone.
#[test]
fn only_the_guard_the_pid_file_names_is_stopped() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let (_, file) = child_env(&sb, "acme");
    sb.stop();
    // A process named cmdr-guard (`comm` comes from the file name): a copy of sleep.
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("cmdr-guard");
    std::fs::copy("/bin/sleep", &fake).expect("copy sleep");
    let mut other: Child = Command::new(&fake).arg("600").spawn().expect("spawn");
    let pid = other.id() as i32;
    std::fs::write(pid_file(&file), format!("{pid} 1\n")).expect("pid file");
    sb.start();
    let stopped = !alive(pid);
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        !stopped,
        "cmdrd stopped a process the pid file did not name"
    );
}
