//! Regressions: The daemon and its socket: another user's daemon, subscribers, unreadable messages, one daemon per data directory, empty paths.

use std::io::Write as _;

use super::{json_session, read_json_line};
use crate::sandbox::{Sandbox, set_mode, stderr};

/// Defect 8: a connection refused because it came from another uid said "cmdrd closed the
/// connection" (exit 1); it now says the socket belongs to another user (exit 3, no daemon
/// of ours is reachable): since issue 23, cmdrctl names the directory's owner before it
/// connects. Needs root to act as another uid.
#[test]
fn another_users_daemon_is_named_as_such() {
    use std::os::unix::process::CommandExt as _;
    if !cmdr_testkit::skip::need_root("acting as another uid") {
        return;
    }
    let nobody = crate::sandbox::NOBODY;
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    set_mode(&sb.root, 0o755);
    set_mode(&sb.run_dir, 0o755);
    set_mode(sb.socket().parent().expect("dir"), 0o755);
    set_mode(&sb.socket(), 0o666);
    let ctl = crate::another_user::bin_copy("cmdrctl", &sb.root);
    let out = std::process::Command::new(&ctl)
        .arg("status")
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("CMDR_SOCKET", sb.socket())
        .uid(nobody)
        .gid(nobody)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run as nobody");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("owned by uid 0 (root), not by uid 65534"),
        "{err}"
    );
}

/// Friction: `status` counted a subscriber with no client subscribed (the daemon's own
/// desktop notifier); `watch` exited 0 when the daemon stopped (now with `--once`; without
/// it, `watch` waits for the daemon to come back: tests/newcomer.rs).
#[test]
fn status_counts_clients_and_watch_exits_3_when_the_daemon_stops() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    assert_eq!(sb.json(&["status"])["subscribers"], 0);
    let child = sb
        .command("cmdrctl")
        .args(["watch", "--once"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    sb.wait_until("watch subscribed", || {
        sb.json(&["status"])["subscribers"] == 1
    });
    sb.stop();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cmdrd stopped"), "{}", stderr(&out));
}

/// Friction: an unknown request or invalid JSON closed the connection without a word.
#[test]
fn unreadable_messages_get_a_reply_before_the_close() {
    let mut sb = Sandbox::new();
    sb.start();
    for bad in [
        &b"{\"request\":{\"id\":1,\"request\":\"frobnicate\"}}\n"[..],
        b"{not json at all\n",
    ] {
        let (mut stream, mut reader) = json_session(&sb);
        stream.write_all(bad).expect("send");
        let answer = read_json_line(&mut reader).expect("a reply before the close");
        let message = answer["refused"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("cannot read this message"), "{answer}");
        assert_eq!(read_json_line(&mut reader), None, "then the close");
    }
}

/// Two daemons on different sockets (e.g. `cmdrd` and `env -u XDG_RUNTIME_DIR cmdrd`) both
/// started and both wrote the same `state.json`; the last writer won and accounts vanished.
/// One daemon per data directory: the second exits 1 and names the first one's socket.
#[test]
fn second_daemon_on_another_socket_refused_for_the_same_data_dir() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    let other = sb.root.join("other.sock");
    // Spawned, not `output()`: before the fix the second daemon ran on, and the test must
    // fail rather than hang.
    let mut second = sb
        .command("cmdrd")
        .arg("--socket")
        .arg(&other)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second cmdrd");
    let mut exited = None;
    sb.wait_until("the second cmdrd to exit or bind", || {
        exited = second.try_wait().expect("try_wait");
        exited.is_some() || other.exists()
    });
    if exited.is_none() {
        let _ = second.kill();
        let _ = second.wait();
        panic!(
            "a second daemon started on {} with the same data directory",
            other.display()
        );
    }
    let out = second.wait_with_output().expect("second cmdrd output");
    let err = crate::sandbox::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "already running (socket {})",
            sb.socket().display()
        )),
        "{err}"
    );
    assert!(
        !other.exists(),
        "the second daemon must not bind its socket"
    );
    // The first one is unharmed and keeps its accounts.
    assert_eq!(sb.account("acme")["state"], "ok");
    sb.stop();
    let state = std::fs::read_to_string(sb.state_file()).expect("state file");
    assert!(state.contains("\"acme\""), "{state}");
}

/// Found by a new user: `[paths] socket = ""` made cmdrd bind an empty path in the
/// current directory and cmdrctl look for one; an empty path counts as unset, as an empty
/// `CMDR_SOCKET` does.
#[test]
fn empty_paths_in_the_config_count_as_unset() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_cmdr_config(
        "[daemon]\nvalidate_on_change = false\n[paths]\nsocket = \"\"\ncredentials = \"\"\n",
    );
    sb.start();
    assert!(sb.socket().exists(), "the default socket");
    let status = sb.json(&["status"]);
    assert_eq!(status["socket"], sb.socket().display().to_string());
    let files = status["files"].as_array().cloned().unwrap_or_default();
    assert!(
        files
            .iter()
            .any(|f| f["path"] == sb.credentials().display().to_string()),
        "{files:?}"
    );
}
