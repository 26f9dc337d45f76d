//! Daemon impersonation (issue 23, item 3), played by a real second user: an attacker
//! (`useradd`) who gets to the socket's path first with a relay to their own daemon
//! (`cmdr-test-peer relay`) must never get a victim's request, nor hand the victim keys
//! or an endpoint. The victim is a user of its own too, so `/tmp/cmdr-UID` is nobody's
//! real directory. cmdrctl exits 3 naming the offending path and its owner; cmdrd refuses
//! to start there. Needs root (CI runs as root); skipped with a message otherwise.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

use cmdr_testkit::skip::need_root;

use crate::another_user::bin_copy;
use crate::sandbox::{Sandbox, set_mode, stderr, stdout};

/// useradd takes a lock on /etc/passwd: one at a time.
static USERADD: Mutex<()> = Mutex::new(());

const ATTACKER_TOKEN: &str = "ATTACKER-SESSION-TOKEN-0123456789";
const ATTACKER_ENDPOINT: &str = "http://203.0.113.7:4566";

/// The uid of system user `name`, created without a home if missing.
pub(crate) fn system_user(name: &str) -> u32 {
    let _one = USERADD.lock().unwrap_or_else(|e| e.into_inner());
    let id = || {
        Command::new("id")
            .args(["-u", name])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if let Some(uid) = id() {
        return uid;
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(name)
        .status()
        .expect("run useradd");
    assert!(status.success(), "useradd {name}");
    id().expect("the new user's uid")
}

/// A sandbox owned by and run as `uid`.
pub(crate) fn sandbox_of(uid: u32, token: &str) -> Sandbox {
    let mut sb = Sandbox::with_profile(token);
    set_mode(&sb.root, 0o755);
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&sb.root)
        .status()
        .expect("chown");
    assert!(status.success());
    sb.run_as = Some(uid);
    sb
}

/// The attacker: their own daemon with account `acme` (their keys, their endpoint), and a
/// relay to it that they start at `listen`.
struct Attacker {
    uid: u32,
    daemon: Sandbox,
    /// cmdr-test-peer, where the attacker can run it.
    peer: PathBuf,
    relay: Option<Child>,
}

impl Attacker {
    fn new() -> Attacker {
        let uid = system_user("cmdr-attacker");
        let mut daemon = sandbox_of(uid, ATTACKER_TOKEN);
        daemon.start();
        daemon.add_account("acme", &["--endpoint", ATTACKER_ENDPOINT]);
        let peer = bin_copy("cmdr-test-peer", &daemon.root);
        Attacker {
            uid,
            daemon,
            peer,
            relay: None,
        }
    }

    fn run(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.uid);
        cmd
    }

    fn mkdir(&self, dir: &Path, mode: &str) {
        let status = self
            .run("mkdir")
            .args(["-m", mode])
            .arg(dir)
            .status()
            .expect("mkdir");
        assert!(status.success(), "the attacker creates {}", dir.display());
    }

    /// Starts the relay at `listen` and waits until it accepts.
    fn relay(&mut self, listen: &Path) {
        let mut child = self
            .run(&self.peer)
            .arg("relay")
            .arg(listen)
            .arg(self.daemon.socket())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("relay output");
        assert_eq!(line.trim(), "listening");
        self.relay = Some(child);
        // The relay works: a raw client (which checks nothing) gets the attacker's daemon.
        let out = self
            .run(&self.peer)
            .arg("hello")
            .arg(listen)
            .output()
            .expect("hello through the relay");
        assert!(stdout(&out).contains("welcome"), "{}", stdout(&out));
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        if let Some(mut relay) = self.relay.take() {
            let _ = relay.kill();
            let _ = relay.wait();
        }
    }
}

/// Removes a directory outside any sandbox (`/tmp/cmdr-UID`) when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The victim's cmdrctl `args` must be refused with exit 3 and a message naming `path`
/// and `owner`, with nothing of the attacker's on stdout.
fn victim_refused(cmd: &mut Command, args: &[&str], path: &Path, owner: &str) {
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cmdrctl");
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{args:?}: {text}\n{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains(owner),
        "the message must name {} and {owner}: {err}",
        path.display()
    );
    assert!(!text.contains(ATTACKER_TOKEN) && !text.contains(ATTACKER_ENDPOINT));
    assert!(!err.contains(ATTACKER_TOKEN) && !err.contains(ATTACKER_ENDPOINT));
}

/// The victim's cmdrd must refuse to start, naming the unsafe directory and `why`.
fn victim_daemon_refused(mut cmd: Command, why: &str) {
    let out: Output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("cmdrd");
    let err = stderr(&out);
    assert!(!out.status.success(), "cmdrd started: {err}");
    assert!(
        err.contains("unsafe socket directory") && err.contains(why),
        "{err}"
    );
}

#[test]
fn attacker_first_in_the_tmp_fallback_is_refused() {
    if !need_root("creating users and acting as them") {
        return;
    }
    let mut attacker = Attacker::new();
    let victim_uid = system_user("cmdr-victim");
    let victim = sandbox_of(victim_uid, "VICTIM-SESSION-TOKEN-0123456789");
    // XDG_RUNTIME_DIR unset: the socket falls back to /tmp/cmdr-UID, which the attacker
    // creates first, with the relay in it.
    let fallback = PathBuf::from(format!("/tmp/cmdr-{victim_uid}"));
    let _ = std::fs::remove_dir_all(&fallback);
    let _cleanup = RemoveDir(fallback.clone());
    attacker.mkdir(&fallback, "0755");
    attacker.relay(&fallback.join("cmdrd.sock"));
    let owner = "uid ".to_owned() + &attacker.uid.to_string() + " (cmdr-attacker)";
    let no_runtime_dir = |program: &str| {
        let mut cmd = victim.command(program);
        cmd.env_remove("XDG_RUNTIME_DIR");
        cmd
    };
    for args in [
        ["status"].as_slice(),
        &["env", "acme"],
        &["env", "acme", "--serve"],
    ] {
        victim_refused(&mut no_runtime_dir("cmdrctl"), args, &fallback, &owner);
    }
    victim_daemon_refused(no_runtime_dir("cmdrd"), &owner);
}

#[test]
fn attacker_in_a_world_writable_runtime_dir_is_refused() {
    if !need_root("creating users and acting as them") {
        return;
    }
    let mut attacker = Attacker::new();
    let victim = sandbox_of(
        system_user("cmdr-victim"),
        "VICTIM-SESSION-TOKEN-0123456789",
    );
    // XDG_RUNTIME_DIR is 0777 without the sticky bit: the attacker makes `cmdr` in it.
    set_mode(&victim.run_dir, 0o777);
    let dir = victim.run_dir.join("cmdr");
    attacker.mkdir(&dir, "0755");
    attacker.relay(&dir.join("cmdrd.sock"));
    let owner = format!("uid {} (cmdr-attacker)", attacker.uid);
    victim_refused(
        &mut victim.command("cmdrctl"),
        &["env", "acme"],
        &dir,
        &owner,
    );
    victim_daemon_refused(victim.command("cmdrd"), &owner);

    // Even the victim's own `cmdr` there could be swapped: the runtime dir is named.
    if let Some(mut relay) = attacker.relay.take() {
        let _ = relay.kill();
        let _ = relay.wait();
    }
    std::fs::remove_dir_all(&dir).expect("remove the attacker's dir");
    std::fs::create_dir(&dir).expect("mkdir");
    set_mode(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(victim.run_as.expect("uid")), None).expect("chown");
    let why = "not sticky";
    victim_refused(
        &mut victim.command("cmdrctl"),
        &["status"],
        &victim.run_dir,
        why,
    );
    victim_daemon_refused(victim.command("cmdrd"), why);

    // And before anyone made `cmdr` there (walkthrough of 2026-12-06): cmdrctl said "not
    // running" instead of naming the unsafe directory, and cmdrd made `cmdr` before it
    // refused.
    std::fs::remove_dir_all(&dir).expect("remove the victim's dir");
    victim_refused(
        &mut victim.command("cmdrctl"),
        &["status"],
        &victim.run_dir,
        why,
    );
    victim_daemon_refused(victim.command("cmdrd"), why);
    assert!(
        !dir.exists(),
        "cmdrd made its socket directory in an unsafe place"
    );
}

#[test]
fn a_symlinked_socket_dir_is_refused_by_the_client() {
    if !need_root("creating users and acting as them") {
        return;
    }
    let mut attacker = Attacker::new();
    let victim = sandbox_of(
        system_user("cmdr-victim"),
        "VICTIM-SESSION-TOKEN-0123456789",
    );
    // The attacker's directory, reached through a symlink where the victim's should be.
    let theirs = attacker.daemon.root.join("theirs");
    attacker.mkdir(&theirs, "0755");
    attacker.relay(&theirs.join("cmdrd.sock"));
    let dir = victim.run_dir.join("cmdr");
    std::os::unix::fs::symlink(&theirs, &dir).expect("symlink");
    victim_refused(
        &mut victim.command("cmdrctl"),
        &["env", "acme"],
        &dir,
        "symlink",
    );
}

#[test]
fn a_daemon_of_another_uid_is_refused_by_its_peer_credentials() {
    if !need_root("creating users and acting as them") {
        return;
    }
    let mut attacker = Attacker::new();
    let victim = sandbox_of(
        system_user("cmdr-victim"),
        "VICTIM-SESSION-TOKEN-0123456789",
    );
    // The victim's directory is right in every way, but the socket in it is the
    // attacker's relay (root moved it there): only the peer's credentials tell.
    let theirs = attacker.daemon.root.join("theirs");
    attacker.mkdir(&theirs, "0755");
    attacker.relay(&theirs.join("cmdrd.sock"));
    let dir = victim.run_dir.join("cmdr");
    std::fs::create_dir(&dir).expect("mkdir");
    set_mode(&dir, 0o700);
    std::os::unix::fs::chown(&dir, Some(victim.run_as.expect("uid")), None).expect("chown");
    std::fs::rename(theirs.join("cmdrd.sock"), victim.socket()).expect("move the relay");
    let owner = format!("uid {}", attacker.uid);
    for args in [["status"].as_slice(), &["env", "acme"]] {
        victim_refused(
            &mut victim.command("cmdrctl"),
            args,
            &victim.socket(),
            &owner,
        );
    }
}
