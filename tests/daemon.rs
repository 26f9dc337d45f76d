//! The daemon process: one per user, stale sockets, modes, shutdown order, exit codes.

use std::os::unix::fs::FileTypeExt as _;
use std::process::Stdio;

use crate::sandbox::{Sandbox, mode, stderr};
use serde_json::Value;

#[test]
fn socket_and_directory_modes() {
    let mut sb = Sandbox::new();
    sb.start();
    let socket = sb.socket();
    assert!(
        std::fs::symlink_metadata(&socket)
            .expect("socket")
            .file_type()
            .is_socket()
    );
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().expect("dir")), 0o700);
}

#[test]
fn second_daemon_is_refused() {
    let mut sb = Sandbox::new();
    sb.start();
    let out = sb
        .command("cmdrd")
        .stdin(Stdio::null())
        .output()
        .expect("second cmdrd");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    // The first one is unharmed.
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn stale_socket_is_reclaimed_after_kill_9() {
    let mut sb = Sandbox::new();
    sb.start();
    sb.kill9();
    assert!(sb.socket().exists(), "kill -9 leaves the socket behind");
    let out = sb.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    sb.start();
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn sigterm_tells_subscribers_and_removes_the_socket() {
    let mut sb = Sandbox::new();
    sb.start();
    let mut watch = sb.watch();
    assert_eq!(sb.stop(), Some(0));
    watch.wait_type("daemon_stopping");
    assert!(!sb.socket().exists());
}

#[test]
fn no_daemon_exit_3_with_hint() {
    let sb = Sandbox::new();
    let out = sb.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("not running") && err.contains("cmdrd"),
        "{err}"
    );
}

#[test]
fn explicit_socket_path_wins() {
    let mut sb = Sandbox::new();
    // An explicit socket path wins over everything.
    let custom = sb.root.join("sock").join("d.sock");
    sb.set_env("CMDR_SOCKET", custom.to_str().expect("utf8"));
    sb.start();
    assert!(custom.exists());
    assert_eq!(sb.json(&["status"])["socket"], custom.display().to_string());
}

#[test]
fn status_reports_version_files_and_accounts() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let status = sb.json(&["status"]);
    assert_eq!(status["daemon_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["profiles"], 1);
    assert_eq!(
        status["accounts"],
        serde_json::json!([{"state": "ok", "count": 1}])
    );
    let kinds: Vec<&str> = status["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["config", "credentials", "sso_cache", "state"]);
    let out = sb
        .command("cmdrd")
        .arg("--version")
        .output()
        .expect("version");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn paths_from_environment_and_config_file() {
    let mut sb = Sandbox::new();
    let elsewhere = sb.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::write(
        elsewhere.join("creds"),
        crate::sandbox::creds("envprof", "T"),
    )
    .expect("w");
    sb.set_env(
        "AWS_SHARED_CREDENTIALS_FILE",
        elsewhere.join("creds").to_str().expect("utf8"),
    );
    sb.start();
    assert_eq!(sb.json(&["profiles"])[0]["name"], "envprof");
    sb.stop();

    // The [paths] table of cmdr's own config file wins over the environment.
    let conf_dir = sb.home.join(".config/cmdr");
    std::fs::create_dir_all(&conf_dir).expect("conf");
    std::fs::write(
        elsewhere.join("creds2"),
        crate::sandbox::creds("fileprof", "T"),
    )
    .expect("w");
    std::fs::write(
        conf_dir.join("config.toml"),
        format!(
            "[paths]\ncredentials = \"{}\"\n",
            elsewhere.join("creds2").display()
        ),
    )
    .expect("config");
    sb.start();
    assert_eq!(sb.json(&["profiles"])[0]["name"], "fileprof");
    sb.stop();

    std::fs::write(conf_dir.join("config.toml"), "[paths]\ncredentails = 1\n").expect("config");
    let out = sb
        .command("cmdrd")
        .stdin(Stdio::null())
        .output()
        .expect("cmdrd");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid config file"),
        "{}",
        stderr(&out)
    );
}

/// A relative `AWS_SHARED_CREDENTIALS_FILE` is the same file for cmdrd and cmdrctl started
/// in the same directory (both resolve it against their working directory, as the SDKs do):
/// what `paste` writes is what the daemon watches.
#[test]
fn relative_credentials_path_resolves_alike_in_daemon_and_ctl() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(sb.home.join("rel")).expect("mkdir");
    sb.set_env("AWS_SHARED_CREDENTIALS_FILE", "rel/creds");
    sb.daemon_wrapper = ["sh", "-c", "cd \"$HOME\" && exec \"$0\""]
        .map(str::to_owned)
        .to_vec();
    let want = sb.home.join("rel").join("creds").display().to_string();
    std::fs::write(sb.home.join("rel").join("creds"), "").expect("creds");
    sb.start();
    // cmdrctl started from HOME too.
    let ctl = |args: &[&str]| {
        sb.command("cmdrctl")
            .args(args)
            .current_dir(&sb.home)
            .stdin(Stdio::null())
            .output()
            .expect("cmdrctl")
    };
    let status: Value = serde_json::from_slice(&ctl(&["status", "--json"]).stdout).expect("json");
    let path = status["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["kind"] == "credentials")
        .map(|f| f["path"].clone());
    assert_eq!(path, Some(Value::from(want.clone())), "{status}");
    let mut paste = sb
        .command("cmdrctl")
        .args(["paste", "--profile", "acme", "--json"])
        .current_dir(&sb.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("paste");
    let block = "[acme]\naws_access_key_id = ASIARELATIVE\naws_secret_access_key = rel-secret-value\naws_session_token = REL-TOKEN-0123456789\n";
    sb.remember_secrets(block);
    std::io::Write::write_all(&mut paste.stdin.take().expect("stdin"), block.as_bytes())
        .expect("write");
    let out = paste.wait_with_output().expect("paste");
    let pasted: Value = serde_json::from_slice(&out.stdout).expect("paste json");
    assert_eq!(pasted["path"], Value::from(want), "{pasted}");
    sb.wait_until("the daemon sees the pasted profile", || {
        ctl(&["profiles", "--json"])
            .stdout
            .windows(6)
            .any(|w| w == b"\"acme\"")
    });
}
