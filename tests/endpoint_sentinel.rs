//! The endpoint's sentinel (`crates/cmdrd/src/endpoint/sentinel.rs`): when cmdrd and its
//! guard are killed together (`systemctl --user kill -s KILL cmdrd`, systemd-oomd: a kill
//! of the service's whole cgroup), the sentinel `cmdrctl exec` started in the caller's
//! session removes the port's tokens, so a process started before sends nothing to whoever
//! binds the port next; it follows a restart on the same port and ends with a clean stop.
//! Walkthrough of 2026-12-06: nothing was left to remove the token files, and another
//! user's server on the port received acme's token from a running boto3 loop.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::endpoint::{Loop, alice_and_bob, clients_dir};
use crate::endpoint_guard::{alive, child_env, guard_pid, port_of};
use crate::sandbox::{Sandbox, bin};

/// Kills cmdrd and its guard with one `kill -9`, as a kill of their cgroup does.
fn kill_both(sb: &mut Sandbox, token_file: &Path) {
    let guard = guard_pid(token_file).expect("a guard runs beside cmdrd");
    let status = sb.json(&["status"]);
    let daemon = status["pid"].as_u64().expect("cmdrd's pid in status");
    let ok = Command::new("kill")
        .args(["-KILL", &guard.to_string(), &daemon.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -KILL {guard} {daemon}");
    sb.kill9(); // reaps it
    sb.wait_until("the guard is gone too", || !alive(guard));
}

/// The pids of the sentinels of the socket beside `token_file`
/// (`SOCKET_DIR/cmdrd.endpoint/PORT/NAME`).
fn sentinels(token_file: &Path) -> Vec<i32> {
    let dir = token_file
        .ancestors()
        .nth(3)
        .expect("the socket's directory")
        .to_string_lossy()
        .into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).is_some_and(|a| a == "--sentinel-endpoint")
            && args.get(2).is_some_and(|s| s.starts_with(&dir))
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Another program listening on `port`, keeping what each connection sent.
pub fn squat(port: u16) -> Arc<Mutex<Vec<String>>> {
    let squatter = TcpListener::bind(("127.0.0.1", port)).expect("take the port");
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in squatter.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = vec![0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    received
}

/// cmdrd and its guard killed together, a Rust SDK process started with `exec` before:
/// the token file goes, the port is free, and a server that binds it receives no token
/// while the process fails closed. Fails against the build before the sentinel: the token
/// file stayed and the squatter received it.
#[test]
fn cmdrd_and_its_guard_killed_together_leave_no_token_for_a_squatter() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["exec", "acme", "--"]).arg(bin("cmdr-sts-loop"));
    cmd.current_dir(clients_dir()).env("EVERY_MS", "500");
    let rust = Loop::spawn("Rust SDK", cmd);
    rust.wait_for(&alice[0].arn, Duration::from_secs(60));
    let (url, file) = child_env(&sb, "acme");
    assert_eq!(sentinels(&file).len(), 1, "one sentinel for the port");

    kill_both(&mut sb, &file);
    sb.wait_until("the sentinel removes the token file", || !file.exists());
    let received = squat(port_of(&url));
    let seen = rust.lines().len();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !rust.since(seen).iter().any(|l| l.contains("error:")) {
        assert!(
            Instant::now() < deadline,
            "the process never failed: {:?}",
            rust.lines().last()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let got = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        got.iter()
            .all(|r| !r.to_ascii_lowercase().contains("authorization")),
        "the squatter received a token: {got:?}"
    );
}

/// One sentinel per port, however many processes are started; it guards the next run on
/// the same port too (a second kill of both is covered), and ends with a clean stop.
#[test]
fn the_sentinel_follows_a_restart_and_ends_with_a_clean_stop() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    child_env(&sb, "acme");
    let first = sentinels(&file);
    assert_eq!(first.len(), 1, "one sentinel for the port: {first:?}");

    kill_both(&mut sb, &file);
    sb.wait_until("the token file is removed", || !file.exists());
    sb.start();
    let (again, file) = child_env(&sb, "acme");
    assert_eq!(again, url, "the same port after the restart");
    assert_eq!(
        sentinels(&file),
        first,
        "the same sentinel guards the next run"
    );
    kill_both(&mut sb, &file);
    sb.wait_until("the token file is removed after the second kill", || {
        !file.exists()
    });

    sb.start();
    child_env(&sb, "acme");
    sb.stop();
    sb.wait_until("the sentinel ends with a clean stop", || {
        sentinels(&file).is_empty()
    });
}
