//! The endpoint's tokens (issue "Trust II", items 1 and 2): one per account, refused at
//! every other account's URL; removed when cmdrd stops; and when another program holds
//! the port at restart, every token of the old port is dead, so running processes fail
//! closed instead of sending a token to whoever holds the old port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::endpoint::{Loop, alice_and_bob, clients_dir, get, user_creds};
use crate::endpoint_guard::{alive, nobody_binds_for_two_seconds};
use crate::endpoint_sentinel::{buddies, sentinels, squat};
use crate::sandbox::{Sandbox, bin, stderr, stdout};

/// What `cmdrctl exec NAME` gives its child: the URL and the token file.
fn child_env(sb: &Sandbox, name: &str) -> (String, PathBuf) {
    let out = sb
        .command("cmdrctl")
        .args([
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "printf '%s\\n%s\\n' \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" \"$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE\"",
        ])
        .output()
        .expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let url = lines.next().expect("url").to_owned();
    let file = PathBuf::from(lines.next().expect("token file"));
    (url, file)
}

#[test]
fn each_account_has_its_own_token_refused_at_every_other_url() {
    let (sb, moto, alice_users) = alice_and_bob();
    let bob = &alice_users[1];
    let mut creds = user_creds("acme", &alice_users[0]);
    creds.push_str(&user_creds("bobs", bob));
    sb.write_credentials(&creds);
    sb.wait_until("profile bobs", || {
        sb.ctl(&[
            "accounts",
            "add",
            "prod",
            "--profile",
            "bobs",
            "--endpoint",
            &moto.url,
        ])
        .status
        .success()
    });
    let (acme_url, acme_file) = child_env(&sb, "acme");
    let (prod_url, prod_file) = child_env(&sb, "prod");
    assert_ne!(acme_file, prod_file);
    let acme_token = std::fs::read_to_string(&acme_file).expect("acme token");
    let prod_token = std::fs::read_to_string(&prod_file).expect("prod token");
    assert_ne!(acme_token, prod_token);

    // A child of `exec acme` gets acme and nothing else.
    assert_eq!(get(&acme_url, Some(&acme_token)).0, 200);
    let (status, body) = get(&prod_url, Some(&acme_token));
    assert_eq!(status, 403, "{body}");
    assert!(
        !body.contains(&bob.id) && !body.contains(&bob.secret),
        "{body}"
    );
    let (status, body) = get(&prod_url, Some(&prod_token));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&bob.id));

    // Rotating one account's token (removed and bound again) leaves the other's alone.
    assert!(sb.ctl(&["accounts", "remove", "prod"]).status.success());
    assert!(!prod_file.exists(), "a removed account's token file goes");
    assert_eq!(get(&prod_url, Some(&prod_token)).0, 403);
    assert!(
        sb.ctl(&[
            "accounts",
            "add",
            "prod",
            "--profile",
            "bobs",
            "--endpoint",
            &moto.url
        ])
        .status
        .success()
    );
    let (_, again) = child_env(&sb, "prod");
    let new_prod = std::fs::read_to_string(&again).expect("new prod token");
    assert_ne!(new_prod, prod_token);
    assert_eq!(get(&prod_url, Some(&new_prod)).0, 200);
    assert_eq!(
        std::fs::read_to_string(&acme_file).expect("acme"),
        acme_token
    );
    assert_eq!(get(&acme_url, Some(&acme_token)).0, 200);
}

#[test]
fn tokens_die_with_the_daemon_and_a_crash_leaves_none_usable() {
    let (mut sb, _moto, _users) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let token = std::fs::read_to_string(&file).expect("token");
    sb.stop();
    assert!(!file.exists(), "the token file goes when cmdrd stops");
    sb.start();
    let again = std::fs::read_to_string(&file).expect("a new token at the same path");
    assert_ne!(again, token);
    assert_eq!(get(&url, Some(&token)).0, 403);
    assert_eq!(get(&url, Some(&again)).0, 200);
    // kill -9: the endpoint's guard (crates/cmdrd/src/endpoint/guard.rs) removes the
    // token file and keeps the port, so nobody else can listen there; the next start
    // takes the same port over with new tokens.
    sb.kill9();
    sb.wait_until("the crashed run's token file is removed", || !file.exists());
    let port = port_of(&url);
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_err(),
        "the port stays held after the crash"
    );
    sb.start();
    let (after, _) = child_env(&sb, "acme");
    assert_eq!(after, url, "the same URL after the crash");
    let fresh = std::fs::read_to_string(&file).expect("a new token at the same path");
    assert_eq!(
        get(&url, Some(&again)).0,
        403,
        "a crashed run's token is dead"
    );
    assert_eq!(get(&url, Some(&fresh)).0, 200);
}

fn port_of(url: &str) -> u16 {
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// After `kill -9` of cmdrd, another program cannot take the port a running process
/// fetches from (the guard holds it, and the token file is gone: the process fails
/// closed, never sending a token or taking foreign keys); started again, cmdrd takes the
/// same port and the process follows it as the same account without a restart.
#[test]
fn after_a_crash_nobody_takes_the_port_and_a_running_process_follows_the_restart() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let (url, file) = child_env(&sb, "acme");
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["exec", "acme", "--"]).arg(bin("cmdr-sts-loop"));
    cmd.current_dir(clients_dir()).env("EVERY_MS", "500");
    let rust = Loop::spawn("Rust SDK", cmd);
    rust.wait_for(&alice[0].arn, Duration::from_secs(60));

    sb.kill9();
    sb.wait_until("token file removed", || !file.exists());
    // An attacker retrying the bind gets nowhere while cmdrd is down.
    nobody_binds_for_two_seconds(port_of(&url), "a crashed cmdrd");
    let seen = rust.lines().len();
    sb.start();
    let status = sb.json(&["status"]);
    assert!(status["endpoint"]["moved_from"].is_null(), "{status}");
    // The process keeps going as acme, on new tokens in the same file: what it had
    // before the crash lasted at most 16 s (crates/cmdrd/src/endpoint.rs `lifetime_for`),
    // so a call answered as acme 20 s after the restart used credentials it fetched from
    // the new cmdrd.
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(120);
    loop {
        let last = rust.since(seen).last().cloned().unwrap_or_default();
        if restarted.elapsed() > Duration::from_secs(20) && last.ends_with(&alice[0].arn) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not follow the restarted cmdrd: {:?}",
            rust.since(seen)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Another program takes the endpoint's port while cmdrd restarts. The old port's tokens
/// are gone before anything listens: a Rust SDK process started before the restart fails
/// closed (it cannot read its token file) and the squatter never receives a token.
#[test]
fn a_squatted_port_at_restart_gets_no_token_and_says_so() {
    let (mut sb, _moto, alice) = alice_and_bob();
    let (old_url, old_file) = child_env(&sb, "acme");
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["exec", "acme", "--"]).arg(bin("cmdr-sts-loop"));
    cmd.current_dir(clients_dir()).env("EVERY_MS", "500");
    let rust = Loop::spawn("Rust SDK", cmd);
    rust.wait_for(&alice[0].arn, Duration::from_secs(60));
    // A watcher that outlives the restart (it reconnects).
    let mut across = sb.watch();

    sb.stop();
    // With no sentinel (stopped: SIGTERM takes its buddy along, which would start another
    // after a `kill -9`): it would keep the port for this uid (`endpoint_sentinel.rs`),
    // and nobody could take it.
    let running: Vec<i32> = sentinels(&old_file)
        .into_iter()
        .chain(buddies(&old_file))
        .collect();
    for pid in sentinels(&old_file) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    sb.wait_until("no sentinel", || !running.iter().any(|pid| alive(*pid)));
    let port: u16 = old_url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    let received = squat(port);
    sb.start();

    let status = sb.json(&["status"]);
    let endpoint = &status["endpoint"];
    assert_eq!(endpoint["moved_from"], old_url.trim_end_matches("acme"));
    assert_ne!(endpoint["url"], old_url.trim_end_matches("acme"));
    assert!(!old_file.exists(), "the old port's token file is gone");
    let text = stdout(&sb.ctl(&["status"]));
    assert!(text.contains("endpoint moved"), "{text}");
    // And in an event: it happened before anyone could subscribe, so every subscriber
    // (the one that reconnected, and one that comes later) is told first.
    for watch in [&mut across, &mut sb.watch()] {
        let moved = watch.wait_type("endpoint_moved");
        assert_eq!(moved["old_url"], endpoint["moved_from"], "{moved}");
        assert_eq!(moved["new_url"], endpoint["url"], "{moved}");
    }
    // `watch` in text says which command fixes it.
    let mut text_watch = sb
        .command("cmdrctl")
        .arg("watch")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn watch");
    let out = text_watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = std::io::BufRead::lines(std::io::BufReader::new(out)).next();
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    let _ = text_watch.kill();
    let _ = text_watch.wait();
    let first = first.ok().flatten().expect("a line").expect("text");
    assert!(
        first.contains("endpoint_moved") && first.contains("-> run `cmdrctl exec"),
        "{first}"
    );

    // The process started before fails closed at its next refresh (the Rust SDK refreshes
    // within seconds of a fetch) and sends nothing to the squatter.
    let seen = rust.lines().len();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !rust.since(seen).iter().any(|l| l.contains("error:")) {
        assert!(
            Instant::now() < deadline,
            "the old process never failed: {:?}",
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
    // Started again, it follows the new port.
    let (new_url, _) = child_env(&sb, "acme");
    assert_ne!(new_url, old_url);
}
