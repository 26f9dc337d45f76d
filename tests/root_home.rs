//! root on another user's HOME (issue 23, item 4): `sudo -E cmdrd` and `sudo cmdrctl paste`
//! refuse, saying to run as that user, and write nothing: no root-owned `cmdrd.lock` or
//! `state.json` to lock the user out, the credentials file still the user's, a symlink the
//! user planted (`state.journal` → a root-owned file) never followed. With
//! `CMDR_ALLOW_ROOT=1` root may go on, and the planted link is still neither read nor
//! written. Also: a
//! `state.json` that is a symlink stays one. The root parts create their user themselves
//! and are skipped with a message when not root.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::process::Stdio;

use crate::impersonation::{sandbox_of, system_user};
use crate::sandbox::{Sandbox, stderr};

fn owner(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path).expect("lstat").uid()
}

#[test]
fn root_on_another_users_home_refuses_and_writes_nothing() {
    if !cmdr_testkit::skip::need_root("running as root on another user's HOME") {
        return;
    }
    let uid = system_user("cmdr-victim");
    let mut sb = sandbox_of(uid, "TOKEN-ROOT-HOME-ONE");
    // Commands run as root, on the user's files.
    sb.run_as = None;
    std::fs::create_dir_all(&sb.data_dir).expect("data dir");
    std::os::unix::fs::chown(&sb.data_dir, Some(uid), Some(uid)).expect("chown");
    // A root-owned file the user would like root to overwrite, and the link to it.
    let bait = sb.root.join("root-only");
    std::fs::write(&bait, "root's\n").expect("bait");
    let journal = sb.data_dir.join("state.journal");
    std::os::unix::fs::symlink(&bait, &journal).expect("plant");
    std::os::unix::fs::lchown(&journal, Some(uid), Some(uid)).expect("lchown");
    let credentials = std::fs::read(sb.credentials()).expect("credentials");
    let who = format!("uid {uid} (cmdr-victim)");

    let out = sb
        .command("cmdrd")
        .stdin(Stdio::null())
        .output()
        .expect("cmdrd");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("running as root") && err.contains(&who) && err.contains("CMDR_ALLOW_ROOT"),
        "{err}"
    );
    let mut paste = sb
        .command("cmdrctl")
        .args(["paste", "--profile", "acme"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paste");
    let block = "[acme]\naws_access_key_id = ASIAROOTPASTE\naws_secret_access_key = root-paste-secret\naws_session_token = ROOT-PASTE-TOKEN-123\n";
    sb.remember_secrets(block);
    let _ = paste
        .stdin
        .take()
        .expect("stdin")
        .write_all(block.as_bytes());
    let out = paste.wait_with_output().expect("paste");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("running as root") && err.contains(&who),
        "{err}"
    );

    // `login` and `logout` write the SSO cache and the config file: refused the same way
    // (before anything is asked of a portal), leaving no root-owned `~/.aws/sso`.
    for args in [
        &[
            "login",
            "--portal",
            "https://acme.awsapps.com/start",
            "--sso-region",
            "us-east-1",
            "--device-code",
        ][..],
        &["logout"][..],
    ] {
        let out = sb.ctl(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("running as root"), "{args:?}: {err}");
    }
    assert!(!sb.aws.join("sso").exists(), "no root-owned SSO cache");

    // Nothing written: no lock, no state, the credentials file untouched and the user's.
    assert!(!sb.data_dir.join("cmdrd.lock").exists());
    assert!(!sb.state_file().exists());
    assert_eq!(std::fs::read(sb.credentials()).expect("read"), credentials);
    assert_eq!(owner(&sb.credentials()), uid);
    assert_eq!(std::fs::read_to_string(&bait).expect("bait"), "root's\n");

    // Overridden: root goes on, but the planted journal link is refused, not followed.
    sb.set_env("CMDR_ALLOW_ROOT", "1");
    // root's socket in a directory of root's own (the user's runtime dir is refused).
    let root_run = tempfile::tempdir().expect("root's runtime dir");
    let socket = root_run.path().join("cmdrd.sock");
    sb.set_env("CMDR_SOCKET", socket.to_str().expect("utf-8"));
    sb.start();
    sb.add_account("acme", &[]);
    assert!(
        sb.log_text()
            .contains("state.journal is a symlink; refusing to follow it"),
        "{}",
        sb.log_tail()
    );
    // Root's file neither written nor copied into the user's directory.
    assert_eq!(std::fs::read_to_string(&bait).expect("bait"), "root's\n");
    for entry in std::fs::read_dir(&sb.data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                !text.contains("root's"),
                "{} has root's file",
                path.display()
            );
        }
    }
}

#[test]
fn a_symlinked_state_file_stays_a_symlink() {
    let mut sb = Sandbox::with_profile("TOKEN-STATE-LINK");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    // The state moved elsewhere (dotfiles), linked back.
    let real = sb.root.join("state-elsewhere.json");
    std::fs::rename(sb.state_file(), &real).expect("move");
    std::os::unix::fs::symlink(&real, sb.state_file()).expect("link");
    let before = std::fs::read(&real).expect("read");
    sb.start();
    // Read through the link: the account is there.
    assert_eq!(sb.account("acme")["name"], "acme");
    sb.wait_until("the refusal to replace the link is logged", || {
        sb.log_text()
            .contains("is a symlink; refusing to replace it")
    });
    sb.stop();
    assert!(
        sb.state_file()
            .symlink_metadata()
            .expect("lstat")
            .is_symlink()
    );
    assert_eq!(std::fs::read(&real).expect("read"), before);
}
