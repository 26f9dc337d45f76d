//! `cmdrctl paste` that cannot hurt (issues 22 and 23): a temporary key without its token,
//! no secret in any message or in `doctor`, identical pastes, what the portal and users
//! paste, warnings about the daemon's file and bound accounts, the terminal hint, the
//! clipboard cleared, and the clipboard's and other programs' writes never lost.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use cmdr_testkit::skip::{need, skip};

use crate::sandbox::{Sandbox, stderr, stdout};

pub fn paste(sb: &Sandbox, args: &[&str], input: &[u8]) -> Output {
    let mut child = sb
        .command("cmdrctl")
        .arg("paste")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take().expect("stdin").write_all(input);
    no_secret(child.wait_with_output().expect("wait"))
}

/// Every secret these tests paste holds the marker, every token `TOKEN-`: no message of
/// paste (errors, warnings, notes, `--json`) may show either.
fn no_secret(out: Output) -> Output {
    let all = both(&out);
    for secret in ["wJalrXUtnFEMI", "TOKEN-", "SECRETPART"] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
    out
}

fn both(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
fn a_temporary_key_without_its_token_is_refused() {
    let sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let before = std::fs::read(sb.credentials()).expect("read");
    let out = paste(
        &sb,
        &[],
        b"[acme]\naws_access_key_id = ASIAPASTEDNOTOKEN\naws_secret_access_key = wJalrXUtnFEMI-SECRET-notoken\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("`aws_session_token` is missing"), "{err}");
    assert!(err.contains("copy the whole block again"), "{err}");
    assert!(!err.contains("wJalrXUtnFEMI"), "{err}");
    assert_eq!(std::fs::read(sb.credentials()).expect("read"), before);
}

/// Issue 22: "unexpected key `secrettokenpart2+xyz/qq`" showed part of a token wrapped onto
/// a second line; `doctor` on such a file listed it as a key, in text and `--json`.
#[test]
fn a_wrapped_secret_is_reported_by_line_only() {
    let sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let parts = ["IQoJb3JpZ2luX2VjEJrSECRETPART1", "secrettokenpart2+xyz/qq"];
    let block = format!(
        "[acme]\naws_access_key_id = ASIAWRAPPED\naws_secret_access_key = wJalrXUtnFEMI-SECRET-wrap\naws_session_token = {}\n{}==\n",
        parts[0], parts[1]
    );
    sb.remember_secrets(&block);
    let out = paste(&sb, &[], block.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 5 looks like the rest of line 4's value"),
        "{}",
        stderr(&out)
    );
    // The same mistake in the file itself: doctor names the line, never the text.
    let file = format!(
        "[acme]\naws_access_key_id = ASIAWRAPPED\naws_secret_access_key = wJalrXUtnFEMI-SECRET-wrap\naws_session_token = {}\n{}==\nregion = eu-west-1\n",
        parts[0], parts[1]
    );
    sb.write_credentials(&file);
    let text = sb.ctl(&["doctor"]);
    let json = sb.ctl(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["profiles"]["acme"]["region"], "eu-west-1");
    assert_eq!(
        report["profiles"]["acme"]["aws_access_key_id"],
        "ASIAWRAPPED"
    );
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "{}:5: a key whose name is not shown",
            sb.credentials().display()
        )),
        "{warnings}"
    );
    for out in [&out, &text, &json] {
        let all = both(out);
        for part in parts
            .iter()
            .chain(&["xyz/qq", "SECRETPART", "wJalrXUtnFEMI"])
        {
            assert!(!all.contains(part), "{part} in {all}");
        }
    }
}

#[test]
fn an_identical_paste_changes_nothing_and_rotates_no_backup() {
    let sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let original = std::fs::read(sb.credentials()).expect("read");
    let block = "[acme]\naws_access_key_id = ASIAIDENTICAL\naws_secret_access_key = wJalrXUtnFEMI-SECRET-same\naws_session_token = TOKEN-IDENTICAL-PASTE\n";
    sb.remember_secrets(block);
    let out = paste(&sb, &["--json"], block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(first["changed"], true);
    let written = std::fs::read(sb.credentials()).expect("read");
    let inode = |p: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("stat"))
    };
    let ino = inode(&sb.credentials());
    // Five re-pastes used to push the real previous file out of the five backups.
    for _ in 0..6 {
        let out = paste(&sb, &["--json"], block.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
        let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(again["changed"], false);
        assert_eq!(again["backup"], serde_json::Value::Null);
    }
    assert_eq!(std::fs::read(sb.credentials()).expect("read"), written);
    assert_eq!(inode(&sb.credentials()), ino, "the file was not rewritten");
    let backups: Vec<_> = std::fs::read_dir(sb.data_dir.join("backups"))
        .expect("backups")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read(&backups[0]).expect("backup"), original);
}

#[test]
fn what_the_portal_and_users_paste_is_accepted() {
    let sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let block = "[profile acme]\naws_access_key_id = ASIAPROFILEHDR\naws_secret_access_key = wJalrXUtnFEMI-SECRET-hdr\naws_session_token = TOKEN-PROFILE-HEADER\naws_expiration = 2030-01-02T03:04:05Z\n\nexport AWS_PROFILE=acme\n";
    sb.remember_secrets(block);
    let out = paste(&sb, &["--json"], block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(done["profile"], "acme");
    assert_eq!(done["expires_at"], "2030-01-02T03:04:05Z");
    let doctor = sb.json(&["doctor"]);
    assert_eq!(
        doctor["profiles"]["acme"]["aws_access_key_id"],
        "ASIAPROFILEHDR"
    );
    assert_eq!(
        doctor["profiles"]["acme"]["x_security_token_expires"],
        "2030-01-02T03:04:05Z"
    );
    // A name boto3 and the AWS CLI read but the Rust SDK drops: the truth, and --profile.
    let out = paste(
        &sb,
        &[],
        "[acmé-prød]\naws_access_key_id = AKIAUNICODE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-uni\n".as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("boto3 and the AWS CLI read"), "{err}");
    assert!(err.contains("--profile NAME"), "{err}");
    sb.write_credentials("[acmé-prød]\naws_access_key_id = AKIAUNICODE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-uni\n");
    let report = sb.json(&["doctor"]);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(
            "ignored by the AWS SDK for Rust and cmdr (boto3 and the AWS CLI do read it)"
        ),
        "{warnings}"
    );
    // And that is the truth: boto3 reads it.
    if !need("python3", "Debian package `python3`") {
        return;
    }
    let boto = sb
        .external("python3")
        .args(["-c", "import boto3; print(boto3.Session(profile_name='acmé-prød').get_credentials().access_key)"])
        .output()
        .expect("python3");
    if stderr(&boto).contains("No module named 'boto3'") {
        return skip("boto3 is not installed (pip install boto3; scripts/test does)");
    }
    assert!(boto.status.success(), "{}", stderr(&boto));
    assert_eq!(stdout(&boto).trim(), "AKIAUNICODE");
}

#[test]
fn paste_warns_when_the_daemon_watches_another_file() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let block = "[acme]\naws_access_key_id = ASIAOTHERFILE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-other\naws_session_token = TOKEN-OTHER-FILE\n";
    sb.remember_secrets(block);
    let other = sb.aws.join("credentials-work");
    // Without a daemon: it works and says nothing about one.
    let mut cmd = sb.command("cmdrctl");
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &other);
    let out = run_with_input(cmd, block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("watches"), "{}", stderr(&out));
    sb.start();
    let mut cmd = sb.command("cmdrctl");
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &other);
    let out = run_with_input(cmd, block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the running cmdrd watches {}",
            sb.credentials().display()
        )),
        "{err}"
    );
    assert!(err.contains("AWS_SHARED_CREDENTIALS_FILE"), "{err}");
    // The file the daemon watches: no warning.
    let out = paste(&sb, &[], block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("watches"), "{}", stderr(&out));
}

/// A paste into a credentials file that others can read says so, and `status` says it too
/// (walkthrough of 2026-12-06: only `doctor` did, and another user read the pasted secret).
/// The file's mode is the user's: kept as it was.
#[test]
fn a_paste_into_a_file_others_can_read_warns() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    crate::sandbox::set_mode(&sb.credentials(), 0o644);
    sb.start();
    let status = sb.json(&["status"]);
    let expected = "is readable by other users (mode 644)";
    assert!(
        status["warnings"].to_string().contains(expected),
        "{status}"
    );
    let block = "[acme]\naws_access_key_id = ASIAEXPOSEDFILE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-exposed\naws_session_token = TOKEN-EXPOSED-FILE\n";
    sb.remember_secrets(block);
    let out = paste(&sb, &[], block.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("warning: {}", sb.credentials().display())),
        "{err}"
    );
    assert!(err.contains(expected), "{err}");
    let mode = std::fs::metadata(sb.credentials())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "paste changed the file's mode");
    crate::sandbox::set_mode(&sb.credentials(), 0o600);
    let out = paste(&sb, &[], block.as_bytes());
    assert!(
        !stderr(&out).contains("readable by other users"),
        "{}",
        stderr(&out)
    );
    let status = sb.json(&["status"]);
    assert!(
        !status["warnings"].to_string().contains("readable"),
        "{status}"
    );
}

fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .arg("paste")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let _ = child.stdin.take().expect("stdin").write_all(input);
    no_secret(child.wait_with_output().expect("wait"))
}

#[test]
fn service_install_warns_about_the_shells_aws_paths() {
    let sb = Sandbox::new();
    let other = sb.aws.join("credentials-work");
    let out = sb
        .command("cmdrctl")
        .args(["service", "install", "--dry-run", "--platform", "linux"])
        .env("AWS_SHARED_CREDENTIALS_FILE", &other)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("AWS_SHARED_CREDENTIALS_FILE") && err.contains("under [paths]"),
        "{err}"
    );
    // Set in config.toml too: it reaches the service, no warning.
    sb.write_cmdr_config(&format!("[paths]\ncredentials = \"{}\"\n", other.display()));
    let out = sb
        .command("cmdrctl")
        .args(["service", "install", "--dry-run", "--platform", "linux"])
        .env("AWS_SHARED_CREDENTIALS_FILE", &other)
        .output()
        .expect("run");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// `--clear-clipboard` with a recording xclip: cleared after the paste only if the
/// clipboard still holds what was pasted.
#[test]
fn the_clipboard_is_cleared_only_if_it_still_holds_the_paste() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE-KEEP");
    let bin = sb.root.join("fake-bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let clip = sb.root.join("clipboard");
    // `-out` prints the clipboard (or, once, `next` instead when it exists: another copy
    // happened); `-in` replaces it with stdin.
    let xclip = format!(
        "#!/bin/sh\ncase \"$*\" in\n*-out*) if [ -f {n}.armed ]; then rm {n}.armed; cat {c}; elif [ -f {n} ]; then cat {n}; else cat {c}; fi;;\n*-in*) cat > {c};;\nesac\n",
        c = clip.display(),
        n = sb.root.join("next").display()
    );
    let path = bin.join("xclip");
    std::fs::write(&path, xclip).expect("write");
    crate::sandbox::set_mode(&path, 0o755);
    sb.set_env(
        "PATH",
        &format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    sb.set_env("DISPLAY", ":99");
    let block = "[acme]\naws_access_key_id = ASIACLIPCLEAR\naws_secret_access_key = wJalrXUtnFEMI-SECRET-clip\naws_session_token = TOKEN-CLIP-CLEAR\n";
    sb.remember_secrets(block);
    std::fs::write(&clip, block).expect("clip");
    // Without the flag: kept, with a note saying how.
    let out = no_secret(sb.ctl(&["paste", "--clipboard"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--clear-clipboard"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&clip).expect("clip"), block);
    // With it: cleared.
    let out = no_secret(sb.ctl(&["paste", "--clipboard", "--clear-clipboard"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cleared the clipboard"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&clip).expect("clip"), "");
    // The setting, while something else was copied meanwhile: left alone.
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\n[paste]\nclear_clipboard = true\n");
    std::fs::write(&clip, block).expect("clip");
    std::fs::write(sb.root.join("next"), "something else\n").expect("next");
    std::fs::write(sb.root.join("next.armed"), "").expect("armed");
    let out = no_secret(sb.ctl(&["paste", "--clipboard"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds something else"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&clip).expect("clip"), block);
}

/// A bare `cmdrctl paste` on a terminal (python's pty gives it one) says what to do, does
/// not echo the block (no secret on screen or in the scrollback), and the terminal's echo
/// is back afterwards — after Ctrl-C too.
#[test]
fn a_paste_into_a_terminal_is_not_echoed_and_echo_comes_back() {
    if !need("python3", "Debian package `python3`") {
        return;
    }
    let sb = Sandbox::new();
    let run = |mode: &str| -> serde_json::Value {
        let out = sb
            .external("python3")
            .arg(crate::endpoint::clients_dir().join("pty_paste.py"))
            .arg(crate::sandbox::bin("cmdrctl"))
            .arg(mode)
            .output()
            .expect("python3");
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("one JSON line")
    };
    let pasted = run("paste");
    assert_eq!(pasted["echo_during"], false, "{pasted}");
    assert_eq!(pasted["secret_shown"], false, "{pasted}");
    assert_eq!(pasted["code"], 0, "{pasted}");
    assert_eq!(pasted["echo_after"], true, "{pasted}");
    assert!(
        pasted["shown"]
            .as_str()
            .is_some_and(|s| s.contains("(it is not shown), then Ctrl-D")
                && s.contains("read 3 lines")
                && s.contains("wrote profile `acme`")),
        "{pasted}"
    );
    let interrupted = run("interrupt");
    assert_eq!(interrupted["secret_shown"], false, "{interrupted}");
    assert_eq!(interrupted["signal"], 2, "{interrupted}");
    assert_eq!(interrupted["echo_after"], true, "{interrupted}");
}
