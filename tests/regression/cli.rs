//! Regressions: cmdrctl's input and output: closed pipes, `--json` shapes, malformed values and exit codes, `prompt`, hooks, `doctor`, `env`.

use std::io::Write as _;

use serde_json::Value;

use super::{ctl_with_input, json_session, read_json_line};
use crate::sandbox::{Sandbox, creds, stderr, stdout};

/// Defect 3: `cmdrctl status | head -1` panicked (exit 101, a backtrace) when the reader
/// had gone; so did `completions bash | head -1`. Now it ends quietly, killed by SIGPIPE
/// like other Unix tools. The pipe's read end is closed before cmdrctl starts, so every
/// run writes into a closed pipe.
#[test]
fn closed_pipe_ends_quietly_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    for args in [
        &["status"][..],
        &["accounts", "list"],
        &["profiles", "--json"],
        &["completions", "bash"],
        &["doctor"],
        &["prompt", "--all"],
    ] {
        let (read, write) = cmdr_testkit::sys::pipe().expect("pipe");
        drop(read);
        let out = sb
            .command("cmdrctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "cmdrctl {args:?}: {:?}\n{err}",
            out.status
        );
        assert!(err.is_empty(), "cmdrctl {args:?}: {err}");
    }
}

/// Defect 5: `--json` was accepted and ignored by `env`, `prompt` and `paste`.
#[test]
fn json_shapes_of_env_prompt_and_paste() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let env = sb.json(&["env", "acme"]);
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(env["AWS_SESSION_TOKEN"], "T1");
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["CMDR_ACCOUNT"], "acme");
    assert_eq!(env["AWS_SECURITY_TOKEN"], Value::Null);
    assert_eq!(env["AWS_ENDPOINT_URL"], Value::Null);

    let prompt = sb.json(&["prompt"]);
    let entries = prompt.as_array().expect("array");
    assert_eq!(entries.len(), 1, "{prompt}");
    assert_eq!(entries[0]["account"], "acme");
    assert_eq!(entries[0]["state"], "ok");
    assert!(entries[0].get("expires_at").is_some() && entries[0]["left"].is_string());

    let out = ctl_with_input(
        &sb,
        &[
            "paste",
            "--profile",
            "fresh",
            "--expires-in",
            "1h",
            "--json",
        ],
        "aws_access_key_id = AKIAPASTEDJSON\naws_secret_access_key = pasted-json-secret\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pasted: Value = serde_json::from_slice(&out.stdout).expect("paste --json");
    assert_eq!(pasted["profile"], "fresh");
    assert_eq!(
        pasted["path"],
        sb.credentials().display().to_string().as_str()
    );
    assert!(pasted["backup"].is_string(), "{pasted}");
    assert!(
        pasted["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

/// Defect 6: malformed values were accepted (and saved) or refused with a misleading rule.
/// Every one is now refused where it enters, with exit 2 and the rule: on the command
/// line, and over the socket (a client that skips cmdrctl).
#[test]
fn malformed_values_are_refused_with_the_rule() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "accounts",
                "add",
                "a1",
                "--profile",
                "acme",
                "--endpoint",
                "http://",
            ],
            "no host",
        ),
        (
            &[
                "accounts",
                "add",
                "a2",
                "--profile",
                "acme",
                "--region",
                "eu west 1",
            ],
            "like `eu-west-1`",
        ),
        (
            &[
                "accounts",
                "add",
                "a3",
                "--profile",
                "acme",
                "--region",
                "eu-west-1\n",
            ],
            "like `eu-west-1`",
        ),
        (
            &[
                "accounts",
                "add",
                "a4",
                "--profile",
                "acme",
                "--region",
                "eu\u{1b}[2J",
            ],
            "like `eu-west-1`",
        ),
        (
            &["accounts", "add", "--profile", "acme", "--", "-dash"],
            "starting with a letter or digit",
        ),
        (
            &["accounts", "add", "ç", "--profile", "acme"],
            "ASCII letters",
        ),
        (
            &["paste", "--profile", "p", "--expires-in", "0"],
            "positive duration",
        ),
        (
            &[
                "paste",
                "--profile",
                "p",
                "--expires-at",
                "2020-01-01T00:00:00Z",
            ],
            "in the future",
        ),
    ];
    for (args, rule) in cases {
        let out = ctl_with_input(&sb, args, "");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(rule), "{args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{args:?}: {err}");
    }
    assert_eq!(sb.json(&["accounts", "list"]), serde_json::json!([]));

    // The same rules hold for requests over the socket.
    let (mut stream, mut reader) = json_session(&sb);
    let requests = [
        r#"{"name":"s1","profile":"acme","region":"eu west 1","target":{"target":"aws","endpoint":null},"on_change":"ask"}"#,
        r#"{"name":"s2","profile":"acme","region":null,"target":{"target":"endpoint","endpoint":"http://"},"on_change":"ask"}"#,
        r#"{"name":"-s3","profile":"acme","region":null,"target":{"target":"aws","endpoint":null},"on_change":"ask"}"#,
    ];
    for (id, spec) in requests.iter().enumerate() {
        let line =
            format!("{{\"request\":{{\"id\":{id},\"request\":{{\"add_account\":{spec}}}}}}}\n");
        stream.write_all(line.as_bytes()).expect("send");
        let answer = read_json_line(&mut reader).expect("answer");
        let error = &answer["response"]["outcome"]["err"];
        assert_eq!(error["code"], "bad_request", "{answer}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid ")),
            "{answer}"
        );
    }
    assert_eq!(sb.json(&["accounts", "list"]), serde_json::json!([]));
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let edit = r#"{"request":{"id":9,"request":{"edit_account":{"name":"acme","edit":{"profile":null,"region":"EU WEST","clear_region":false,"target":null,"on_change":null}}}}}"#;
    stream
        .write_all(format!("{edit}\n").as_bytes())
        .expect("send");
    let answer = read_json_line(&mut reader).expect("answer");
    assert_eq!(
        answer["response"]["outcome"]["err"]["code"], "bad_request",
        "{answer}"
    );
    assert_eq!(sb.account("acme")["region"], "eu-west-1");
}

/// Defect 8: a duplicate name and a bad endpoint exited 1; only a usage error exits 2.
#[test]
fn malformed_values_exit_2() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    let duplicate = sb.ctl(&["accounts", "add", "acme", "--profile", "acme"]);
    assert_eq!(duplicate.status.code(), Some(2), "{}", stderr(&duplicate));
    assert!(stderr(&duplicate).contains("already exists"));
    let endpoint = sb.ctl(&["accounts", "edit", "acme", "--endpoint", "localhost:4566"]);
    assert_eq!(endpoint.status.code(), Some(2), "{}", stderr(&endpoint));
    assert!(stderr(&endpoint).contains("http://"));
    // Not malformed, just absent: a failure, exit 1.
    let missing = sb.ctl(&["accounts", "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
}

/// Friction: `prompt` with several accounts printed all of them (`acme 11h59m local moto
/// 11h59m`). It shows the shell's account (`CMDR_ACCOUNT`), else the one expiring first;
/// `--all` shows every one; `--format` keeps working.
#[test]
fn prompt_shows_one_account() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let soon = (epoch_now() + 3 * 3600).to_string();
    let later = (epoch_now() + 9 * 3600).to_string();
    let text = format!(
        "{}x_security_token_expires = {}\n\n{}x_security_token_expires = {}\n",
        creds("acme", "TA"),
        rfc3339(&later),
        creds("moto", "TM"),
        rfc3339(&soon),
    );
    sb.write_credentials(&text);
    sb.start();
    sb.add_account("acme", &[]);
    let out = sb.ctl(&["accounts", "add", "moto", "--profile", "moto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let prompt = |sb: &Sandbox, args: &[&str]| stdout(&sb.ctl(args)).trim_end().to_owned();
    assert!(
        prompt(&sb, &["prompt"]).starts_with("moto 2h5"),
        "{}",
        prompt(&sb, &["prompt"])
    );
    assert_eq!(
        prompt(&sb, &["prompt", "--format", "[{account}]"]),
        "[moto]"
    );
    assert_eq!(
        prompt(
            &sb,
            &["prompt", "--account", "acme", "--format", "{account}"]
        ),
        "acme"
    );
    assert_eq!(
        prompt(&sb, &["prompt", "--all", "--format", "{account}"]),
        "acme moto"
    );
    sb.set_env("CMDR_ACCOUNT", "acme");
    assert_eq!(
        prompt(&sb, &["prompt", "--format", "{account}:{state}"]),
        "acme:ok"
    );
    let all = sb.json(&["prompt", "--all"]);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

/// Seconds since the epoch (as text) in RFC 3339 UTC, through `date` (no chrono here).
fn rfc3339(epoch: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Friction: `hook powershell` was refused while `env --shell powershell` worked.
#[test]
fn hook_for_powershell() {
    let sb = Sandbox::new();
    for shell in ["powershell", "pwsh"] {
        let out = sb.ctl(&["hook", shell]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("function global:prompt"), "{text}");
        assert!(text.contains("--shell powershell --if-changed"), "{text}");
    }
}

/// Friction: `doctor` said "no problems found" for an expiry it cannot read (and quietly
/// estimated one), and printed sub-properties as raw strings.
#[test]
fn doctor_warns_about_unreadable_expiry_and_shows_sub_properties() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = tomorrow\n",
        creds("acme", "T1")
    ));
    std::fs::write(
        sb.config(),
        "[profile acme]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 20\n  max_queue_size = 1000\n",
    )
    .expect("config");
    let out = sb.ctl(&["doctor"]);
    let text = stdout(&out);
    let at = format!("{}:5:", sb.credentials().display());
    assert!(
        text.contains(&at) && text.contains("x_security_token_expires"),
        "{text}"
    );
    assert!(!text.contains("no problems found"), "{text}");
    let report = sb.json(&["doctor"]);
    assert_eq!(
        report["profiles"]["acme"]["s3"],
        serde_json::json!({"max_concurrent_requests": "20", "max_queue_size": "1000"})
    );
    assert_eq!(report["profiles"]["acme"]["region"], "eu-west-1");
}

/// Friction: `env` for an account without a region unset the user's own `AWS_REGION`.
#[test]
fn env_of_a_region_less_account_leaves_aws_region_alone() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    assert_eq!(sb.account("acme")["region"], Value::Null);
    let out = sb.ctl(&["env", "acme", "--shell", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("AWS_REGION"), "{}", stdout(&out));
    let script = format!(
        "export AWS_REGION=us-east-2; eval \"$('{}' env acme --shell bash)\"; echo \"region=$AWS_REGION\"",
        crate::sandbox::bin("cmdrctl").display()
    );
    let out = sb
        .external("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(
        stdout(&out).contains("region=us-east-2"),
        "{}",
        stdout(&out)
    );
    assert!(
        !sb.json(&["env", "acme"])
            .as_object()
            .expect("object")
            .contains_key("AWS_REGION")
    );
}

/// Walkthrough of 2026-12-06: with cmdrd started under another `XDG_RUNTIME_DIR`,
/// cmdrctl said "not running" with no way forward; it now names the running daemon's
/// socket (the note beside the data directory's lock).
#[test]
fn not_running_here_names_the_daemon_running_elsewhere() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    let elsewhere = sb.root.join("other-run");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    crate::sandbox::set_mode(&elsewhere, 0o700);
    let out = sb
        .command("cmdrctl")
        .arg("status")
        .env("XDG_RUNTIME_DIR", &elsewhere)
        .output()
        .expect("cmdrctl");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("not running"), "{err}");
    assert!(
        err.contains(&format!(
            "hint: a cmdrd runs with the socket {}",
            sb.socket().display()
        )),
        "{err}"
    );
}
