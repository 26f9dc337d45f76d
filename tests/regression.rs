//! One test per fixed bug.

use crate::sandbox::{Sandbox, creds};

/// The accepted token's credentials were not restored when the file was broken at start
/// and then fixed without a token change.
#[test]
fn accepted_token_restored_after_broken_start() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    sb.write_credentials("[acme\n");
    sb.start();
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "T1"));
    watch.wait_type("profile_added");
    assert_eq!(sb.account("acme")["state"], "ok");
    assert!(
        !watch.seen.iter().any(|e| e["type"] == "token_changed"),
        "{:?}",
        watch.seen
    );
}

/// `paste` into a credentials file whose target section had a header but no key lines
/// wrote the file back without any keys (found by the `paste` fuzz property).
#[test]
fn paste_into_a_section_without_keys() {
    use std::io::Write as _;
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials("[other]\nregion = eu-west-1\n\n[acme]\n# to be filled\n");
    let mut child = sb
        .command("cmdrctl")
        .arg("paste")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let block = "[acme]\naws_access_key_id=ASIAREGRESSION\naws_secret_access_key=regression-secret-key\naws_session_token=regression-session-token\n";
    sb.remember_secrets(block);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(block.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert_eq!(
        text,
        "[other]\nregion = eu-west-1\n\n[acme]\naws_access_key_id = ASIAREGRESSION\naws_secret_access_key = regression-secret-key\naws_session_token = regression-session-token\n# to be filled\n"
    );
}

/// `~/.aws` removed and recreated at once can get the same inode number back: the watch
/// was thought alive and writes went unseen until the 60 s safety rescan.
#[test]
fn aws_dir_recreated_at_once_is_watched_again() {
    let mut sb = Sandbox::with_profile("T0");
    sb.start();
    sb.add_account("acme", &[]);
    for round in 1..=5 {
        std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
        std::fs::create_dir_all(&sb.aws).expect("mkdir");
        sb.write_credentials(&creds("acme", &format!("T{round}-a")));
        // Let the daemon settle on this directory, then write again into it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        sb.write_credentials(&creds("acme", &format!("T{round}-b")));
        let start = std::time::Instant::now();
        let expected = {
            let mut fresh = Sandbox::with_profile(&format!("T{round}-b"));
            fresh.start();
            fresh.json(&["profiles"])[0]["fingerprint"].clone()
        };
        while sb.json(&["profiles"])[0]["fingerprint"] != expected {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: the write after recreating ~/.aws was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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
