//! The endpoint's sockets handed on (`crates/cmdrd/src/endpoint/handover.rs`): after a
//! crash the next cmdrd serves the very listening socket the guard held, and once cmdrd
//! and its guard are both gone the sentinel holds that socket itself and hands it to the
//! next run. So the port is never free between runs on any Unix, without relying on
//! Linux's `SO_REUSEPORT` (macOS has no such rule: there the guard was retired before the
//! bind, and the sentinel held nothing). While nobody serves the port, a client is
//! refused at once. Shown here by the socket's inode: the same socket, never bound again.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cmdr_testkit::skip::need_root;

use crate::another_user::bin_copy;
use crate::endpoint::{Loop, alice_and_bob, clients_dir, get};
use crate::endpoint_guard::{
    alive, child_env, guard_pid, nobody_binds_for_two_seconds, port_of, signal,
};
use crate::endpoint_sentinel::{buddies, kill_both, sentinels};
use crate::sandbox::{NOBODY, Sandbox, bin, set_mode};

/// The inodes of the TCP sockets listening on 127.0.0.1:`port` (`/proc/net/tcp`).
pub fn listening_sockets(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The inodes of the sockets process `pid` holds.
pub fn held_sockets(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let link = std::fs::read_link(e.path()).ok()?;
                    let link = link.to_str()?;
                    link.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A request to `port` is answered by the connection's end, not left waiting: nobody
/// serves the port, and whoever holds it says so at once (a wait of 10 s fails).
fn refused_at_once(port: u16) {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(stream) => stream,
        Err(err) => panic!("the port is held, so the connection is accepted first: {err}"),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let _ = stream.write_all(b"GET /v1/credentials/acme HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "nobody serves the port, yet it answered: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the connection was left waiting: {err}"),
    }
}

/// A Rust SDK loop run by `exec acme` (which starts the port's sentinel), answering as
/// `arn` already; with acme's URL and token file and the port's one listening socket.
fn acme_loop(sb: &Sandbox, arn: &str) -> (Loop, String, PathBuf, Vec<u64>) {
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["exec", "acme", "--"]).arg(bin("cmdr-sts-loop"));
    cmd.current_dir(clients_dir()).env("EVERY_MS", "500");
    let rust = Loop::spawn("Rust SDK", cmd);
    rust.wait_for(arn, Duration::from_secs(60));
    let (url, file) = child_env(sb, "acme");
    let socket = listening_sockets(port_of(&url));
    assert_eq!(
        socket.len(),
        1,
        "one listening socket on the port: {socket:?}"
    );
    (rust, url, file, socket)
}

/// After `kill -9` of cmdrd, the guard refuses every connection at once, and the next
/// cmdrd takes its listening socket over: the same socket (inode) serves, and the old
/// guard is gone. Before: the guard held the socket unanswered (clients waited for their
/// timeout), and on macOS and Windows it was retired before the next cmdrd bound the
/// port, leaving a moment for another user to take it.
#[test]
fn a_restart_after_a_crash_serves_the_socket_the_guard_held() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let port = port_of(&url);
    let before = listening_sockets(port);
    assert_eq!(
        before.len(),
        1,
        "one listening socket on the port: {before:?}"
    );
    let guard = guard_pid(&file).expect("a guard runs beside cmdrd");
    assert!(
        held_sockets(guard).contains(&before[0]),
        "the guard holds it"
    );

    sb.kill9();
    sb.wait_until("the token file is removed after the crash", || {
        !file.exists()
    });
    refused_at_once(port);

    sb.start();
    let (again, token_file) = child_env(&sb, "acme");
    assert_eq!(again, url, "the same URL after the restart");
    assert_eq!(
        listening_sockets(port),
        before,
        "the same socket, not bound again"
    );
    let daemon = daemon_pid(&sb);
    assert!(held_sockets(daemon).contains(&before[0]), "cmdrd serves it");
    sb.wait_until("the old guard is retired", || !alive(guard));
    assert!(
        sb.log_text()
            .contains("took over the endpoint's listening sockets"),
        "{}",
        sb.log_tail()
    );
    let token = std::fs::read_to_string(&token_file).expect("the new run's token");
    let (code, body) = get(&url, Some(&token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&alice[0].id), "{body}");
}

/// With a process started by `exec`, the sentinel holds the port's listening socket
/// itself (taken from the guard). When cmdrd and its guard are killed together the port
/// stays held by that socket, a client is refused at once, and the next cmdrd serves the
/// same socket again, taken from the sentinel; so does the run after a clean stop. On
/// macOS the sentinel reserved nothing: the port was free after a kill of both.
#[test]
fn the_sentinel_holds_the_socket_and_hands_it_to_the_next_run() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let (rust, url, file, socket) = acme_loop(&sb, &alice[0].arn);
    let port = port_of(&url);
    let sentinel = *sentinels(&file).first().expect("a sentinel");
    sb.wait_until("the sentinel holds the listening socket", || {
        held_sockets(sentinel).contains(&socket[0])
    });

    let seen = rust.lines().len();
    kill_both(&mut sb, &file);
    sb.wait_until("the sentinel removes the token file", || !file.exists());
    sb.wait_until("the process fails closed", || {
        rust.since(seen).iter().any(|l| l.contains("error:"))
    });
    assert_eq!(
        listening_sockets(port),
        socket,
        "the port is still held by it"
    );
    refused_at_once(port);

    sb.start();
    let (again, _) = child_env(&sb, "acme");
    assert_eq!(again, url, "the same URL after the restart");
    let daemon = daemon_pid(&sb);
    assert!(
        held_sockets(daemon).contains(&socket[0]),
        "cmdrd serves the same socket"
    );
    rust.wait_for(&alice[0].arn, Duration::from_secs(120));

    sb.stop();
    assert_eq!(
        listening_sockets(port),
        socket,
        "held after a clean stop too"
    );
    refused_at_once(port);
    sb.start();
    let daemon = daemon_pid(&sb);
    assert!(
        held_sockets(daemon).contains(&socket[0]),
        "and served again"
    );
    assert_eq!(
        sentinels(&file),
        vec![sentinel],
        "the same sentinel throughout"
    );
}

/// Another user who can reach an offer (its directory and socket file opened up here,
/// which cmdrd itself never does) still gets nothing: the guard and the sentinel hand
/// the sockets on only to a peer of their own uid. Fails without that check: `nobody` was
/// handed the byte that carries the sockets.
#[test]
fn another_user_who_reaches_an_offer_gets_nothing() {
    if !need_root("connecting as another uid") {
        return;
    }
    let (mut sb, _moto, _alice) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let port = port_of(&url);
    let socket_dir = file.ancestors().nth(3).expect("the socket's directory");
    let peer = bin_copy("cmdr-test-peer", &sb.root);
    let root = sb.root.clone();
    let open_up = |offer: &Path| {
        for dir in socket_dir.ancestors().take_while(|d| d.starts_with(&root)) {
            set_mode(dir, 0o711);
        }
        set_mode(offer, 0o666);
    };
    let ask_as_nobody = |offer: &Path| {
        let out = Command::new(&peer)
            .arg("hello")
            .arg(offer)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run the peer as nobody");
        assert!(
            out.status.success(),
            "nobody could not even connect to {}: {}",
            offer.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "another user was answered at {}: {:?}",
            offer.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    };
    let guard_offer = socket_dir.join(format!("cmdrd.endpoint-{port}.guard.sock"));
    open_up(&guard_offer);
    ask_as_nobody(&guard_offer);

    // The sentinel's offer, once cmdrd and its guard are gone.
    assert!(sb.ctl(&["env", "acme", "--serve"]).status.success());
    kill_both(&mut sb, &file);
    let sentinel_offer = socket_dir.join(format!("cmdrd.endpoint-{port}.sentinel.sock"));
    sb.wait_until("the sentinel offers the sockets", || {
        sentinel_offer.exists()
    });
    open_up(&sentinel_offer);
    ask_as_nobody(&sentinel_offer);
    sb.start();
    let (again, _) = child_env(&sb, "acme");
    assert_eq!(again, url, "the next run still took the sockets over");
}

/// cmdrd's pid.
fn daemon_pid(sb: &Sandbox) -> i32 {
    i32::try_from(sb.pid().expect("cmdrd runs")).expect("pid")
}

/// The sentinel that is not `old`, once one runs and holds `socket`.
fn another_sentinel(sb: &Sandbox, file: &Path, old: i32, socket: u64) -> i32 {
    let mut next = 0;
    sb.wait_until("another sentinel replaces the killed one", || {
        next = sentinels(file).into_iter().find(|p| *p != old).unwrap_or(0);
        next != 0
    });
    sb.wait_until("the new sentinel holds the listening socket", || {
        held_sockets(next).contains(&socket)
    });
    next
}

/// A sentinel killed (`kill -9`, the OOM killer) is replaced at once by its buddy, a
/// process beside it in the same session that holds the port's sockets with it; the new
/// sentinel starts with them. So neither a kill of the sentinel with cmdrd and its guard
/// at the same moment, nor a kill of the sentinel while cmdrd is down, frees the port or
/// leaves a token. Second-user walkthroughs of 2026-12-07: with the sentinel killed first,
/// a kill of cmdrd and its guard let another user's server take the port, receive the
/// running loop's token and answer with its own keys (the loop then ran as the attacker's
/// user); with a buddy that held nothing, the same within the ~50 ms its new sentinel
/// took to start, and a sentinel killed while cmdrd was down freed the port.
#[test]
fn a_killed_sentinel_is_replaced_by_its_buddy_with_the_port_held_throughout() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let (rust, url, file, socket) = acme_loop(&sb, &alice[0].arn);
    let port = port_of(&url);
    let first = *sentinels(&file).first().expect("a sentinel");
    sb.wait_until("the buddy holds the listening socket too", || {
        buddies(&file)
            .iter()
            .any(|b| held_sockets(*b).contains(&socket[0]))
    });

    // The sentinel, cmdrd and its guard killed at the same moment.
    let seen = rust.lines().len();
    let daemon = daemon_pid(&sb);
    signal(
        &[
            first,
            daemon,
            guard_pid(&file).expect("a guard runs beside cmdrd"),
        ],
        "-KILL",
    );
    sb.kill9(); // reaps cmdrd
    sb.wait_until("the new sentinel removes the token file", || !file.exists());
    nobody_binds_for_two_seconds(port, "cmdrd, its guard and the sentinel killed together");
    assert_eq!(listening_sockets(port), socket, "the port is still held");
    let second = another_sentinel(&sb, &file, first, socket[0]);
    sb.wait_until("the process fails closed", || {
        rust.since(seen).iter().any(|l| l.contains("error:"))
    });
    sb.start();
    rust.wait_for(&alice[0].arn, Duration::from_secs(120));

    // cmdrd and its guard killed, then the sentinel while cmdrd is down.
    kill_both(&mut sb, &file);
    sb.wait_until("the sentinel removes the token file", || !file.exists());
    signal(&[second], "-KILL");
    let third = another_sentinel(&sb, &file, second, socket[0]);
    nobody_binds_for_two_seconds(port, "the sentinel killed while cmdrd is down");
    assert_eq!(listening_sockets(port), socket, "the port is still held");
    sb.start();
    rust.wait_for(&alice[0].arn, Duration::from_secs(120));
    let daemon = daemon_pid(&sb);
    assert!(
        held_sockets(daemon).contains(&socket[0]),
        "cmdrd serves the same socket"
    );
    assert_eq!(sentinels(&file), vec![third], "one sentinel, the newest");
}

/// Whatever was left at the guard's offer (a plain file, a symlink: only this user can
/// write there) is replaced at the next start, so the handover still works after a crash;
/// the offers of other ports nobody serves are removed.
/// Walkthrough of 2026-12-07: a file there switched the handover off, with a log line
/// that spoke of an address in use.
#[test]
fn a_file_left_at_the_guards_offer_is_replaced() {
    let (mut sb, _moto, _alice) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let port = port_of(&url);
    let socket_dir = file.ancestors().nth(3).expect("the socket's directory");
    let offer = socket_dir.join(format!("cmdrd.endpoint-{port}.guard.sock"));
    sb.stop();
    assert!(!offer.exists(), "a clean stop removes the offer");
    std::fs::write(&offer, "left here\n").expect("a file at the offer");
    // Offers of a port no run serves any more are swept.
    let stale: Vec<_> = ["guard", "sentinel"]
        .map(|kind| socket_dir.join(format!("cmdrd.endpoint-1.{kind}.sock")))
        .into();
    for path in &stale {
        std::os::unix::net::UnixListener::bind(path).expect("a stale offer");
    }
    sb.start();
    for path in &stale {
        assert!(!path.exists(), "{} was left", path.display());
    }
    let socket = listening_sockets(port);
    sb.kill9();
    sb.start();
    let (again, _) = child_env(&sb, "acme");
    assert_eq!(again, url, "the same URL after the crash");
    assert_eq!(
        listening_sockets(port),
        socket,
        "the guard's socket was taken over"
    );
}

/// A sentinel stopped on purpose (`kill PID`, `pkill cmdr-sentinel`: SIGTERM) takes its
/// buddy with it, so nothing starts it again; the next `exec` does.
#[test]
fn a_sentinel_stopped_with_sigterm_takes_its_buddy_along() {
    let (sb, _moto, _alice) = alice_and_bob();
    let (_, file) = child_env(&sb, "acme");
    let sentinel = *sentinels(&file).first().expect("a sentinel");
    let mut buddy = 0;
    sb.wait_until("the sentinel has a buddy", || {
        buddy = buddies(&file).first().copied().unwrap_or(0);
        buddy != 0
    });
    signal(&[sentinel], "-TERM");
    sb.wait_until("the sentinel and its buddy are gone", || {
        !alive(sentinel) && !alive(buddy)
    });
    child_env(&sb, "acme");
    assert_eq!(sentinels(&file).len(), 1, "the next exec starts one again");
}
