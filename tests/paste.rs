//! `cmdrctl paste`: byte-for-byte preservation, symlinks, modes, backups, concurrent
//! pastes, malformed input that changes nothing, and the daemon seeing the result.

use std::io::Write as _;
use std::process::{Child, Output, Stdio};

use crate::sandbox::{Sandbox, mode, set_mode, stderr};

/// Starts `cmdrctl paste ARGS` with `input` on its stdin.
fn start_paste(sb: &Sandbox, args: &[&str], input: &[u8]) -> Child {
    let mut child = sb
        .command("cmdrctl")
        .arg("paste")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A refused option ends cmdrctl before it reads stdin: a broken pipe here is fine.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child
}

fn paste(sb: &Sandbox, args: &[&str], input: &[u8]) -> Output {
    start_paste(sb, args, input)
        .wait_with_output()
        .expect("wait")
}

fn block(profile: &str, token: &str) -> String {
    format!(
        "\r\n[{profile}]\r\naws_access_key_id=ASIAPASTED{profile}\r\naws_secret_access_key = pasted-secret\r\naws_session_token =  {token}\r\n\r\n"
    )
}

/// Backups live in cmdr's data directory, never beside the credentials file.
fn backups(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    let beside: Vec<_> = std::fs::read_dir(&sb.aws)
        .expect("aws")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("cmdr"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    let Ok(dir) = std::fs::read_dir(sb.data_dir.join("backups")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("cmdr-backup"))
        .map(|e| e.path())
        .collect()
}

#[test]
fn only_the_target_section_changes() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let prefix = "# work accounts\r\n[a]\r\naws_access_key_id=AKIAA\r\naws_secret_access_key   =   x ; odd spacing\r\n\r\n";
    let section = "[acme]\r\nregion = eu-west-1\r\naws_access_key_id = OLD\r\n# keep this\r\naws_secret_access_key = OLD\r\naws_session_token = OLD\r\n\r\n";
    let suffix = ";; trailing\r\n[acme-dev]\r\naws_access_key_id = AKIADEV\r\naws_secret_access_key = y\r\n[acme]\r\noutput = json\r\n";
    let before = format!("{prefix}{section}{suffix}");
    std::fs::write(sb.credentials(), &before).expect("write");
    set_mode(&sb.credentials(), 0o640);
    let out = paste(&sb, &[], block("acme", "NEWTOKEN").as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(sb.credentials()).expect("read");
    assert!(after.starts_with(prefix), "{after}");
    assert!(
        after.contains("[acme]\r\nregion = eu-west-1\r\n"),
        "{after}"
    );
    assert!(after.contains("# keep this\r\n"), "{after}");
    assert!(
        after
            .contains("[acme-dev]\r\naws_access_key_id = AKIADEV\r\naws_secret_access_key = y\r\n")
    );
    assert!(
        after.ends_with("aws_session_token = NEWTOKEN\r\n"),
        "{after:?}"
    );
    assert!(!after.contains("OLD"), "{after}");
    assert_eq!(mode(&sb.credentials()), 0o640, "mode kept");
    // The SDK view agrees.
    let doctor = sb.json(&["doctor"]);
    assert_eq!(
        doctor["profiles"]["acme"]["aws_access_key_id"],
        "ASIAPASTEDacme"
    );
    assert_eq!(doctor["profiles"]["acme"]["output"], "json");
    assert_eq!(
        doctor["profiles"]["a"]["aws_secret_access_key"],
        "<redacted>"
    );
    let backups = backups(&sb);
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&backups[0]).expect("backup"),
        before
    );
    assert_eq!(mode(&backups[0]), 0o600);
}

#[test]
fn new_file_and_directory_are_private_and_expiry_is_recorded() {
    let sb = Sandbox::new();
    let out = paste(
        &sb,
        &[
            "--profile",
            "fresh",
            "--expires-at",
            "2030-01-02T03:04:05+01:00",
        ],
        b"aws_access_key_id = A1\naws_secret_access_key = S1\naws_session_token = T1\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&sb.credentials()), 0o600);
    assert_eq!(mode(&sb.aws), 0o700);
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert_eq!(
        text,
        "[fresh]\naws_access_key_id = A1\naws_secret_access_key = S1\naws_session_token = T1\nx_security_token_expires = 2030-01-02T02:04:05Z\n"
    );
    assert!(backups(&sb).is_empty());
}

#[test]
fn symlinked_file_is_written_through() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let dotfiles = sb.home.join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("dotfiles");
    std::fs::write(dotfiles.join("credentials"), "[other]\nx = 1\n").expect("write");
    std::os::unix::fs::symlink("../dotfiles/credentials", sb.credentials()).expect("link");
    let out = paste(&sb, &[], block("acme", "T").as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(sb.credentials())
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    let text = std::fs::read_to_string(dotfiles.join("credentials")).expect("read");
    assert!(text.starts_with("[other]\nx = 1\n\n[acme]\n"), "{text}");
}

#[test]
fn malformed_input_changes_nothing() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let original = "[acme]\naws_access_key_id = OLD\naws_secret_access_key = OLD\n";
    std::fs::write(sb.credentials(), original).expect("write");
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty"),
        (b"\x00\x01\x02\x03", "not text"),
        (b"[acme]\naws_access_key_id = A\n", "aws_secret_access_key"),
        (
            b"[a]\naws_access_key_id = A\naws_secret_access_key = S\n[b]\naws_access_key_id = B\n",
            "one profile",
        ),
        (
            b"aws_access_key_id = A\naws_secret_access_key = S\n",
            "--profile",
        ),
    ];
    for (input, message) in cases {
        let out = paste(&sb, &[], input);
        // No profile named anywhere is a usage error (2); a bad block a failure (1).
        let expected = if *message == "--profile" { 2 } else { 1 };
        assert_eq!(out.status.code(), Some(expected), "{input:?}");
        assert!(
            stderr(&out).contains(message),
            "{input:?}: {}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_to_string(sb.credentials()).expect("read"),
            original
        );
    }
    let out = paste(
        &sb,
        &["--expires-in", "soon"],
        block("acme", "T").as_bytes(),
    );
    // A malformed value: a usage error, refused before anything is read or written.
    assert_eq!(out.status.code(), Some(2));
    // A broken file is not written into.
    std::fs::write(sb.credentials(), "[broken\n").expect("write");
    let out = paste(&sb, &[], block("acme", "T").as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not parse"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(sb.credentials()).expect("read"),
        "[broken\n"
    );
    assert!(backups(&sb).is_empty());
}

#[test]
fn concurrent_pastes_lose_nothing_and_backups_are_bounded() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(sb.credentials(), "# top\n").expect("write");
    let children: Vec<_> = (0..10)
        .map(|i| {
            start_paste(
                &sb,
                &[],
                block(&format!("p{i}"), &format!("T{i}")).as_bytes(),
            )
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let doctor = sb.json(&["doctor"]);
    for i in 0..10 {
        assert_eq!(
            doctor["profiles"][format!("p{i}")]["aws_access_key_id"],
            format!("ASIAPASTEDp{i}")
        );
    }
    assert!(
        std::fs::read_to_string(sb.credentials())
            .expect("read")
            .starts_with("# top\n")
    );
    assert_eq!(backups(&sb).len(), 5);
}

#[test]
fn the_daemon_sees_a_paste() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    let out = paste(&sb, &[], block("acme", "PASTED").as_bytes());
    assert!(out.status.success());
    watch.wait_type("token_changed");
    assert_eq!(sb.account("acme")["state"], "changed");
}
