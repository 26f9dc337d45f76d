//! What a new user hit (issue 22 item 5), one test per defect: re-validation and retries
//! of unreachable targets, the reason in `accounts show`, renew and refusals that name a
//! command that works, renamed profiles, `watch` across restarts, regions, exit codes,
//! `--json`, `prompt --format`, `env`'s shell, and `service install` without systemd.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use cmdr_testkit::skip::{have, skip};
use cmdr_testkit::{Moto, free_port};

use crate::protocol::{Peer, fake_daemon};
use crate::renew::Recorder;
use crate::sandbox::{Sandbox, WAIT, creds, stderr, stdout};
use crate::sts::stub;

fn with_validation(sb: &Sandbox) {
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
}

/// Defect: `accounts edit --endpoint` kept the old verdict until a manual `validate`.
#[test]
fn editing_the_endpoint_validates_the_account_again() {
    let moto = Moto::start(&[]).expect("moto_server");
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    with_validation(&sb);
    sb.start();
    let mut watch = sb.watch();
    let dead = format!("http://127.0.0.1:{}", free_port().expect("free port"));
    sb.add_account("acme", &["--endpoint", &dead, "--region", "eu-west-1"]);
    watch.wait_type("validation_failed");
    assert_eq!(sb.account("acme")["state"], "unvalidated");
    let out = sb.ctl(&["accounts", "edit", "acme", "--endpoint", &moto.url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let event = watch.wait_for("validated after the edit", |e| {
        e["type"] == "validated" && e["account"] == "acme"
    });
    assert_eq!(event["account_id"], "123456789012");
    assert_eq!(sb.account("acme")["state"], "ok");
}

/// Defect: an account added before LocalStack started stayed `unvalidated` until a manual
/// `validate`. The daemon retries on a backoff timer until the target answers.
#[test]
fn an_unvalidated_account_is_validated_once_its_target_starts() {
    let port = free_port().expect("free port");
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    with_validation(&sb);
    sb.start();
    let mut watch = sb.watch();
    let url = format!("http://127.0.0.1:{port}");
    sb.add_account("acme", &["--endpoint", &url, "--region", "eu-west-1"]);
    watch.wait_type("validation_failed");
    assert_eq!(sb.account("acme")["state"], "unvalidated");
    // The target comes up later; nobody runs `validate`.
    let _moto = Moto::start_on(port, &[]).expect("moto_server");
    // Retries come 2, 4, 8, 16 s apart: a slow moto start may fall just after one, so
    // allow one more gap than the usual wait.
    let event = watch.wait_for_within("validated by a retry", Duration::from_secs(40), |e| {
        e["type"] == "validated"
    });
    assert_eq!(event["account"], "acme");
    assert_eq!(sb.account("acme")["state"], "ok");
    assert!(
        sb.log_text().contains("will validate again"),
        "the retry is the daemon's own"
    );
}

/// Defect: `accounts show` said `misconfigured` or `invalid` without saying why.
#[test]
fn accounts_show_gives_the_reason_of_misconfigured_and_invalid() {
    let rejecting = stub(|_| {
        (
            403,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid</Message>\
             </Error><RequestId>r</RequestId></ErrorResponse>"
                .to_owned(),
        )
    });
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    std::fs::write(sb.config(), "[profile bare]\nregion = eu-west-1\n").expect("config");
    sb.start();
    let out = sb.ctl(&["accounts", "add", "bare", "--profile", "bare"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("gives no credentials"),
        "add says why too"
    );
    let shown = sb.json(&["accounts", "show", "bare"]);
    assert_eq!(shown["state"], "misconfigured");
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gives no credentials"), "{shown}");
    let text = stdout(&sb.ctl(&["accounts", "show", "bare"]));
    assert!(
        text.contains("why") && text.contains("gives no credentials"),
        "{text}"
    );

    sb.add_account("acme", &["--endpoint", &rejecting]);
    let out = sb.ctl(&["validate", "acme"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let shown = sb.json(&["accounts", "show", "acme"]);
    assert_eq!(shown["state"], "invalid");
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("invalid"), "{shown}");
    assert!(reason.contains("cmdrctl accept acme"), "{shown}");
}

/// Defect: `validate` on a profile without credentials said the SDK's "the credential
/// provider was not enabled".
#[test]
fn validate_without_credentials_speaks_cmdrs_words() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(sb.config(), "[profile bare]\nregion = eu-west-1\n").expect("config");
    sb.start();
    let dead = format!("http://127.0.0.1:{}", free_port().expect("free port"));
    let out = sb.ctl(&[
        "accounts",
        "add",
        "bare",
        "--profile",
        "bare",
        "--endpoint",
        &dead,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sb.ctl(&["validate", "bare"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(!said.contains("not enabled"), "{said}");
    assert!(
        said.contains("profile `bare` gives no credentials"),
        "{said}"
    );
}

/// Defects: `renew` without a portal only said to set one; with the AWS CLI v1 it ran
/// `aws sso login`, which v1 does not have.
#[test]
fn renew_says_what_to_do_without_a_portal_or_with_aws_cli_v1() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    std::fs::write(
        sb.config(),
        "[profile corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n\
         sso_account_id = 111111111111\nsso_role_name = Dev\nregion = eu-west-1\n",
    )
    .expect("config");
    // xdg-open is recorded; `aws` is the real one (v1 here), found later on PATH.
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0)], false);
    sb.start();
    sb.add_account("acme", &[]);
    let out = sb.ctl(&["renew", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("has no portal") && said.contains("cmdrctl paste"),
        "{said}"
    );
    assert!(rec.calls().is_empty(), "nothing is run: {:?}", rec.calls());
    // Signed out of SSO: the reason names `renew` (which knows what works here), not an
    // `aws sso login` that the AWS CLI v1 lacks.
    let out = sb.ctl(&["accounts", "add", "corp", "--profile", "corp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = sb.json(&["accounts", "show", "corp"]);
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("profile `corp` is not signed in to SSO: run `cmdrctl renew corp`"),
        "{shown}"
    );

    let version = std::process::Command::new("aws").arg("--version").output();
    let v1 = version.is_ok_and(|o| {
        String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).starts_with("aws-cli/1.")
    });
    if !v1 {
        return skip("the v1 half: the AWS CLI on PATH is not v1 (pip install awscli)");
    }
    let out = sb.ctl(&["renew", "corp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("has no `sso login`"), "{said}");
    assert!(!stderr(&out).contains("Invalid choice"), "{}", stderr(&out));
    assert_eq!(rec.calls(), ["xdg-open https://corp.awsapps.com/start"]);
}

/// Defect: the `expired` refusal told an account without a portal to run `cmdrctl renew`,
/// which fails for it.
#[test]
fn the_expired_refusal_names_no_command_that_would_fail() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2020-01-01T00:00:00Z\n",
        creds("acme", "TOKEN-OLD")
    ));
    sb.start();
    sb.add_account("acme", &[]);
    assert_eq!(sb.account("acme")["state"], "expired");
    let out = sb.ctl(&["env", "acme", "--shell", "bash"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(said.contains("cmdrctl paste"), "{said}");
    assert!(!said.contains("cmdrctl renew"), "{said}");
    // With a portal, renew works, and is named.
    let out = sb.ctl(&[
        "accounts",
        "edit",
        "acme",
        "--portal",
        "https://acme.awsapps.com/start",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&sb.ctl(&["env", "acme", "--shell", "bash"]));
    assert!(said.contains("cmdrctl renew acme"), "{said}");
}

/// Defect: after renaming `[acme]` to `[acme-new]`, `missing` did not say where it went.
#[test]
fn missing_after_a_rename_suggests_editing_the_profile() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    // The same keys under another section name.
    sb.write_credentials(&creds("acme", "TOKEN-ONE").replace("[acme]", "[acme-new]"));
    watch.wait_for("the rename", |e| e["type"] == "profile_added");
    sb.wait_until("acme missing", || sb.account("acme")["state"] == "missing");
    let shown = sb.json(&["accounts", "show", "acme"]);
    let reason = shown["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cmdrctl accounts edit acme --profile acme-new"),
        "{shown}"
    );
}

/// Defects: `watch` ended when the daemon restarted; text `watch` did not say what to do.
#[test]
fn watch_reconnects_after_a_restart_and_names_the_command() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let mut child = sb
        .command("cmdrctl")
        .arg("watch")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    let (tx, rx) = mpsc::channel();
    let stdout_pipe = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    sb.wait_until("watch subscribed", || {
        sb.json(&["status"])["subscribers"] == 1
    });
    sb.stop();
    sb.start();
    sb.wait_until("watch subscribed again", || {
        sb.json(&["status"])["subscribers"] == 1
    });
    assert!(
        child.try_wait().expect("wait").is_none(),
        "watch is still running"
    );
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    let deadline = std::time::Instant::now() + WAIT;
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx.recv_timeout(left).expect("a token_changed line");
        if line.contains("token_changed") {
            break line;
        }
    };
    assert!(line.contains("run `cmdrctl accept acme`"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Defect: `--region eu-west-9` was kept silently; an account without any region said
/// nothing until tools failed with NoRegionError.
#[test]
fn unknown_regions_are_warned_about_and_a_missing_region_is_named() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme",
        "--profile",
        "acme",
        "--region",
        "eu-west-9",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did you mean `eu-west-1`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.account("acme")["region"], "eu-west-9", "kept as given");
    let out = sb.ctl(&["accounts", "add", "bare", "--profile", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("NoRegionError"), "{}", stdout(&out));
    let listed = stdout(&sb.ctl(&["accounts", "list"]));
    assert!(
        listed.contains("note: no region: bare;") && listed.contains("NoRegionError"),
        "{listed}"
    );
    let out = sb.ctl(&["accounts", "edit", "acme", "--region", "eu-west-1"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("NoRegionError"), "{}", stdout(&out));
}

/// Defects: an unknown profile exited 1 while a duplicate name exited 2; `--json` was
/// ignored by commands without JSON; `prompt --format` printed typos; `env` wrote POSIX
/// lines for a csh.
#[test]
fn usage_errors_exit_2_in_one_format() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let cases: [&[&str]; 6] = [
        &["accounts", "add", "x", "--profile", "nope"],
        &["accounts", "add", "acme", "--profile", "acme"],
        &["hook", "bash", "--json"],
        &["service", "install", "--dry-run", "--json"],
        &["completions", "bash", "--json"],
        &["exec", "acme", "--json", "--", "true"],
    ];
    for args in cases {
        let out = sb.ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("cmdrctl: "),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    let out = sb.ctl(&["prompt", "--format", "{acount} {left}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown field `{acount}`"),
        "{}",
        stderr(&out)
    );

    sb.set_env("SHELL", "/bin/tcsh");
    let out = sb.ctl(&["env", "acme"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("--shell"), "{}", stderr(&out));
    let out = sb.ctl(&["env", "acme", "--shell", "fish"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("set -gx AWS_ACCESS_KEY_ID"));
    sb.set_env("SHELL", "/usr/bin/fish");
    let out = sb.ctl(&["env", "acme"]);
    assert!(
        stdout(&out).contains("set -gx AWS_ACCESS_KEY_ID"),
        "$SHELL picks fish"
    );
}

/// Defect: `service install` without a systemd user session said only "start cmdrd
/// another way".
#[test]
fn service_install_without_a_user_session_says_what_works_instead() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let mut sb = Sandbox::new();
    // A `systemctl` that cannot reach a user manager, as under su or in a container.
    let rec = Recorder::install(&mut sb, &[], false);
    let fake = rec.dir.join("systemctl");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n",
    )
    .expect("fake systemctl");
    crate::sandbox::set_mode(&fake, 0o755);
    let out = sb.ctl(&["service", "install"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stderr(&out);
    for part in [
        "Failed to connect to bus",
        "loginctl enable-linger",
        "login file",
        "--dry-run",
    ] {
        assert!(said.contains(part), "{part} missing in {said}");
    }
    assert!(
        !sb.home.join(".config/systemd/user/cmdrd.service").exists(),
        "nothing is written"
    );
    if have("systemctl") {
        // The real one, if any, is not reached: the fake came first on PATH.
        assert!(!said.contains("not on PATH"), "{said}");
    }
}

/// `accounts show` asks for the reason with a request of its own; a daemon older than it
/// refuses that request (and closes), and `show` still shows the account.
#[test]
fn accounts_show_falls_back_for_an_older_daemon() {
    use cmdr_proto::{AccountInfo, AccountState, OnChange, Request, Response, ServerMessage};
    let sb = Sandbox::new();
    let listener = fake_daemon(&sb);
    let show = sb
        .command("cmdrctl")
        .args(["accounts", "show", "acme"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cmdrctl");
    let mut older = Peer::greet(&listener, &[]);
    assert!(matches!(
        older.next(),
        cmdr_proto::ClientMessage::Request {
            request: Request::AccountDetail { .. },
            ..
        }
    ));
    older.send(&ServerMessage::Refused {
        message: "cannot read this message".into(),
    });
    drop(older);
    let mut again = Peer::greet(&listener, &[]);
    let asked = again.answer(Response::Account(AccountInfo {
        name: "acme".into(),
        profile: "acme".into(),
        region: Some("eu-west-1".into()),
        target: cmdr_proto::TargetKind::Aws,
        endpoint: None,
        on_change: OnChange::Ask,
        state: AccountState::Ok,
        fingerprint: None,
        accepted_fingerprint: None,
        accepted_at: None,
        expires_at: None,
        expiry_source: None,
        account_id: None,
        portal: None,
        profile_kind: None,
    }));
    assert_eq!(
        asked,
        Request::ShowAccount {
            name: "acme".into()
        }
    );
    let out = show.wait_with_output().expect("show");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("eu-west-1"), "{}", stdout(&out));
}
