//! env, exec and credential-process hand out the accepted credentials, to real shells, a
//! real child process and the real AWS CLI — the accepted token also while the account is
//! `changed`; `exec` gives the child the credentials endpoint unless `--static`.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;

use cmdr_testkit::skip::need;
use cmdr_testkit::sys;

use crate::sandbox::{Sandbox, WAIT, creds, stderr, stdout};

/// A secret that needs quoting in every shell.
const NASTY_SECRET: &str = r#"wJal'r"X$U`t\n F;|&"#;

fn nasty() -> (Sandbox, String) {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&format!(
        "[acme]\naws_access_key_id = ASIAEXAMPLEKEY\naws_secret_access_key = {NASTY_SECRET}\naws_session_token = TOKEN-ONE\n\
         [static]\naws_access_key_id = AKIASTATICKEY\naws_secret_access_key = plain\n"
    ));
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1", "--localstack"]);
    let out = sb.ctl(&["accounts", "add", "static", "--profile", "static"]);
    assert!(out.status.success());
    let ctl = crate::sandbox::bin("cmdrctl").display().to_string();
    (sb, ctl)
}

const PRINT: &str = "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL CMDR_ACCOUNT";

fn expected_acme() -> Vec<String> {
    [
        "ASIAEXAMPLEKEY",
        NASTY_SECRET,
        "TOKEN-ONE",
        "eu-west-1",
        "eu-west-1",
        "http://localhost:4566",
        "acme",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn values(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(str::to_owned).collect()
}

#[test]
fn env_is_evaluated_by_real_shells() {
    let (sb, ctl) = nasty();
    let posix = |shell: &str| {
        let script = format!(
            "export AWS_SESSION_TOKEN=stale; eval \"$('{ctl}' env acme --shell {shell})\"; for v in {PRINT}; do eval \"printf '%s\\n' \\\"\\${{$v}}\\\"\"; done"
        );
        sb.external(shell)
            .args(["-c", &script])
            .output()
            .expect(shell)
    };
    let out = posix("bash");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(values(&out), expected_acme());
    if need("zsh", "Debian package `zsh`") {
        let out = posix("zsh");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(values(&out), expected_acme());
    }
    if need("fish", "Debian package `fish`") {
        let script = format!(
            "set -gx AWS_SESSION_TOKEN stale; '{ctl}' env acme --shell fish | source; for v in {PRINT}; printf '%s\\n' $$v; end"
        );
        let out = sb
            .external("fish")
            .args(["-c", &script])
            .output()
            .expect("fish");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(values(&out), expected_acme());
    }
    // A static account unsets what does not apply, e.g. a stale session token.
    let script = format!(
        "export AWS_SESSION_TOKEN=stale AWS_ENDPOINT_URL=http://old; eval \"$('{ctl}' env static --shell bash)\"; echo \"[${{AWS_SESSION_TOKEN-unset}}] [${{AWS_ENDPOINT_URL-unset}}] [$AWS_ACCESS_KEY_ID]\""
    );
    let out = sb
        .external("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert_eq!(stdout(&out).trim(), "[unset] [unset] [AKIASTATICKEY]");
}

#[test]
fn exec_passes_env_exit_code_and_signals() {
    let (sb, _) = nasty();
    let out = sb.ctl(&[
        "exec",
        "--static",
        "acme",
        "--",
        "sh",
        "-c",
        "printf '%s' \"$AWS_SECRET_ACCESS_KEY\"; exit 42",
    ]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(stdout(&out), NASTY_SECRET);

    // By default the child gets the endpoint, and no keys (nor anything that would
    // shadow the endpoint in an SDK).
    let out = sb
        .command("cmdrctl")
        .args([
            "exec",
            "acme",
            "--",
            "sh",
            "-c",
            "printf '%s|%s|%s|%s|%s' \"$AWS_CONTAINER_CREDENTIALS_FULL_URI\" \"${AWS_SECRET_ACCESS_KEY-unset}\" \"${AWS_PROFILE-unset}\" \"$AWS_REGION\" \"$(cat \"$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE\" | wc -c)\"",
        ])
        .env("AWS_PROFILE", "other")
        .env("AWS_SECRET_ACCESS_KEY", "stale")
        .output()
        .expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    let fields: Vec<String> = stdout(&out).split('|').map(str::to_owned).collect();
    assert!(
        fields[0].starts_with("http://127.0.0.1:") && fields[0].ends_with("/v1/credentials/acme"),
        "{fields:?}"
    );
    assert_eq!(fields[1..], ["unset", "unset", "eu-west-1", "64"]);

    // `--static`: the keys, and no profile or endpoint left to win over them.
    let out = sb
        .command("cmdrctl")
        .args([
            "exec",
            "acme",
            "--static",
            "--",
            "sh",
            "-c",
            "printf '%s|%s|%s' \"${AWS_PROFILE-unset}\" \"${AWS_CONTAINER_CREDENTIALS_FULL_URI-unset}\" \"${AWS_ACCESS_KEY_ID:+set}\"",
        ])
        .env("AWS_PROFILE", "other")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/stale")
        .output()
        .expect("exec --static");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "unset|unset|set");

    let out = sb.ctl(&["exec", "acme", "--", "no-such-program-cmdr"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("no-such-program-cmdr"));

    // The child replaces cmdrctl (same pid, no parent in between): a signal to "cmdrctl"
    // reaches the child's own handler, and its exit code is the one seen. A cmdrctl that
    // waited on a child instead would die of the SIGTERM itself: no code 7.
    let mut child = sb
        .command("cmdrctl")
        .args([
            "exec",
            "acme",
            "--",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(WAIT);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
    let status = sys::terminate(&mut child).expect("SIGTERM and wait");
    // A child left behind by a cmdrctl that did not exec (the failure this test catches).
    let _ = sys::signal_group(child.id(), sys::Signal::Term);
    assert_eq!(ready.as_deref().map(str::trim), Ok("ready"), "{status:?}");
    assert_eq!(
        status.code(),
        Some(7),
        "the child did not get the SIGTERM: {status:?}"
    );
    assert_ne!(comm.trim(), "cmdrctl", "cmdrctl is still the process");
}

#[test]
fn the_accepted_token_is_handed_out_while_changed() {
    let (sb, _) = nasty();
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    watch.wait_type("token_changed");
    assert_eq!(sb.account("acme")["state"], "changed");
    // What tools are using is the accepted token, not the new one in the file.
    let out = sb.ctl(&["credential-process", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["SessionToken"], "TOKEN-ONE");
    assert!(
        json["Expiration"].is_string(),
        "always an Expiration: {json}"
    );
    let out = sb.ctl(&[
        "exec",
        "--static",
        "acme",
        "--",
        "printenv",
        "AWS_SESSION_TOKEN",
    ]);
    assert_eq!(stdout(&out).trim(), "TOKEN-ONE");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&sb.ctl(&["credential-process", "acme"]).stdout).expect("json");
    assert_eq!(json["SessionToken"], "TOKEN-TWO");
    assert_eq!(json["Version"], 1);
    // Refused where no accepted token is at hand: the token is gone from the file.
    std::fs::write(sb.credentials(), "").expect("empty");
    sb.wait_until("missing", || sb.account("acme")["state"] == "missing");
    for args in [
        vec!["env", "acme"],
        vec!["credential-process", "acme"],
        vec!["exec", "acme", "--", "true"],
    ] {
        let out = sb.ctl(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("gone"), "{}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn credential_process_feeds_the_real_aws_cli() {
    let moto = cmdr_testkit::Moto::start(&[]).expect("moto_server");
    let (sb, ctl) = nasty();
    std::fs::write(
        sb.config(),
        format!("[profile viacmdr]\ncredential_process = {ctl} credential-process static\nregion = us-east-1\n"),
    )
    .expect("config");
    let out = sb
        .external("aws")
        .args([
            "sts",
            "get-caller-identity",
            "--profile",
            "viacmdr",
            "--endpoint-url",
            &moto.url,
            "--output",
            "json",
        ])
        .output()
        .expect("aws cli (pip install awscli; scripts/test does)");
    assert!(out.status.success(), "{}", stderr(&out));
    let identity: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(identity["Account"], "123456789012");
}

/// Keys that expire carry `AWS_CREDENTIAL_EXPIRATION` (prompts such as starship read it)
/// in `env`'s output and in `exec --static`'s child; long-lived keys unset it.
#[test]
fn expiring_keys_carry_aws_credential_expiration() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2099-01-02T03:04:05Z\n[forever]\naws_access_key_id = AKIAFOREVER000000000\naws_secret_access_key = forever-secret-0123456789\n",
        crate::sandbox::creds("acme", "TOKEN-EXP")
    ));
    sb.start();
    sb.add_account("acme", &[]);
    assert!(
        sb.ctl(&["accounts", "add", "forever", "--profile", "forever"])
            .status
            .success()
    );
    let json = sb.json(&["env", "acme"]);
    assert_eq!(
        json["AWS_CREDENTIAL_EXPIRATION"], "2099-01-02T03:04:05Z",
        "{json}"
    );
    let out = sb
        .command("cmdrctl")
        .args([
            "exec",
            "--static",
            "acme",
            "--",
            "sh",
            "-c",
            "printf %s \"$AWS_CREDENTIAL_EXPIRATION\"",
        ])
        .output()
        .expect("exec");
    assert_eq!(crate::sandbox::stdout(&out), "2099-01-02T03:04:05Z");
    let json = sb.json(&["env", "forever"]);
    assert!(json["AWS_CREDENTIAL_EXPIRATION"].is_null(), "{json}");
}
