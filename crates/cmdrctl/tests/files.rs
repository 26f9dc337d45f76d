//! cmdrctl's file commands, no daemon needed, on every platform (Windows under Wine in
//! scripts/cross-check, where tests/ does not run): `doctor --json` reads and redacts,
//! `paste` writes a block into the credentials file and keeps every other byte.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The real cmdrctl with the AWS files, cmdr's config and data in `dir` and no daemon.
fn cmdrctl(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmdrctl"));
    cmd.env("AWS_CONFIG_FILE", dir.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
        .env("CMDR_SOCKET", dir.join("no-daemon"))
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env_remove("AWS_PROFILE");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn doctor_reads_and_redacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config"),
        "[profile acme]\nregion = eu-west-1\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("credentials"),
        "[acme]\naws_access_key_id = AKIAFILESTEST\naws_secret_access_key = files-secret-key\n",
    )
    .expect("credentials");
    std::fs::write(dir.path().join("cmdr.toml"), "").expect("cmdr config");
    let out = cmdrctl(dir.path())
        .args(["doctor", "--json", "--config"])
        .arg(dir.path().join("cmdr.toml"))
        .output()
        .expect("doctor");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let acme = &report["profiles"]["acme"];
    assert_eq!(acme["region"], "eu-west-1", "{report}");
    assert_eq!(acme["aws_access_key_id"], "AKIAFILESTEST");
    assert_eq!(acme["aws_secret_access_key"], "<redacted>");
    assert!(!text(&out).contains("files-secret-key"));
}

#[test]
fn paste_fills_a_section_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[other]\nregion = eu-west-1\n\n[acme]\n# to be filled\n",
    )
    .expect("credentials");
    std::fs::write(dir.path().join("cmdr.toml"), "").expect("cmdr config");
    let mut child = cmdrctl(dir.path())
        .args(["paste", "--config"])
        .arg(dir.path().join("cmdr.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paste");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"[acme]\naws_access_key_id=ASIAFILES\naws_secret_access_key=files-paste-secret\naws_session_token=files-paste-token\n",
        )
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("files-paste-secret"));
    let written = std::fs::read_to_string(&credentials).expect("read");
    assert_eq!(
        written,
        "[other]\nregion = eu-west-1\n\n[acme]\naws_access_key_id = ASIAFILES\naws_secret_access_key = files-paste-secret\naws_session_token = files-paste-token\n# to be filled\n"
    );
}
