//! Another user on the same machine: with the socket's permissions deliberately opened, a
//! process of another uid is refused by cmdrctl's own check of the socket directory, and a
//! raw client of that uid by the daemon's peer-credential check; a socket directory
//! that is a symlink or owned by someone else is refused at start. Needs root to act as
//! another uid (CI runs as root); skipped with a message otherwise.

use std::os::unix::process::CommandExt as _;
use std::process::{Output, Stdio};
use std::time::Instant;

use cmdr_testkit::skip::need_root;

use crate::sandbox::{NOBODY, Sandbox, WAIT, bin, set_mode};

/// A copy of binary `name` in `dir` that any user can execute. `cp` writes it in a process
/// of its own: a copy written here could still be open for writing in a child forked
/// meanwhile by another test, and exec would fail with "text file busy".
pub(crate) fn bin_copy(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let copy = dir.join(format!("{name}-copy"));
    let status = std::process::Command::new("cp")
        .arg(bin(name))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success(), "copy {name}");
    set_mode(&copy, 0o755);
    copy
}

/// Runs cmdrd until it exits on its own (it must refuse to start); kills it after `WAIT`.
fn daemon_must_exit(sb: &Sandbox) -> Output {
    let mut child = sb
        .command("cmdrd")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cmdrd");
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "cmdrd started on an unsafe socket directory\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn another_uid_is_refused_even_with_open_permissions() {
    if !need_root("acting as another uid") {
        return;
    }
    let mut sb = Sandbox::with_profile("SECRET-ANOTHER-USER-TOKEN");
    sb.start();
    sb.add_account("acme", &[]);
    // Open everything on the way to the socket: only the peer check is left.
    set_mode(&sb.root, 0o755);
    set_mode(&sb.run_dir, 0o755);
    set_mode(sb.socket().parent().expect("socket dir"), 0o755);
    set_mode(&sb.socket(), 0o666);
    // A copy of cmdrctl the other user can certainly execute.
    let ctl = bin_copy("cmdrctl", &sb.root);
    let other_home = sb.root.join("other-home");
    std::fs::create_dir_all(&other_home).expect("home");
    std::os::unix::fs::chown(&other_home, Some(NOBODY), Some(NOBODY)).expect("chown");

    for args in [
        vec!["status"],
        vec!["accounts", "list", "--json"],
        vec!["env", "acme", "--force"],
    ] {
        let out = std::process::Command::new(&ctl)
            .args(&args)
            .env_clear()
            .env("HOME", &other_home)
            .env("CMDR_SOCKET", sb.socket())
            .uid(NOBODY)
            // std also drops the supplementary groups when it changes the uid as root.
            .gid(NOBODY)
            .stdin(Stdio::null())
            .output()
            .expect("run cmdrctl as nobody");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "uid {NOBODY} got an answer: {stdout}"
        );
        assert!(!stdout.contains("SECRET-ANOTHER-USER-TOKEN"), "{stdout}");
        assert!(!stdout.contains("acme"), "{stdout}");
        // cmdrctl itself refuses a socket directory that is not its user's.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains("owned by uid 0"), "{stderr}");
    }
    // A raw client checks nothing: the daemon's own peer check refuses it.
    let peer = bin_copy("cmdr-test-peer", &sb.root);
    let out = std::process::Command::new(&peer)
        .arg("hello")
        .arg(sb.socket())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("raw hello as nobody");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        !answer.contains("welcome"),
        "uid {NOBODY} was welcomed: {answer}"
    );
    sb.wait_until("refusal logged", || {
        sb.log_text()
            .contains("refused a connection from another user")
    });
    assert!(
        sb.log_text().contains("peer_uid=Some(65534)"),
        "{}",
        sb.log_text()
    );
    // The owner is still served.
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn symlinked_socket_directory_is_refused() {
    let sb = Sandbox::new();
    let elsewhere = sb.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    set_mode(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, sb.run_dir.join("cmdr")).expect("symlink");
    refused_as_unsafe(&sb, "symlink", &elsewhere);
}

#[test]
fn socket_directory_owned_by_another_user_is_refused() {
    if !need_root("acting as another uid") {
        return;
    }
    let sb = Sandbox::new();
    let dir = sb.run_dir.join("cmdr");
    std::fs::create_dir_all(&dir).expect("mkdir");
    set_mode(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    refused_as_unsafe(&sb, "owned by uid 65534", &dir);
}

/// The daemon refuses to start, naming the unsafe socket directory and `why`, and leaves
/// no socket in `dir`.
fn refused_as_unsafe(sb: &Sandbox, why: &str, dir: &std::path::Path) {
    let out = daemon_must_exit(sb);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unsafe socket directory") && stderr.contains(why),
        "{stderr}"
    );
    assert!(!dir.join("cmdrd.sock").exists());
}
