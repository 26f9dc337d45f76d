//! The right account (issue "Trust I"): a process started with `cmdrctl exec acme` or in a
//! shell of `env acme --serve` runs as acme, whatever else the files and the caller's
//! environment hold — a `[default]` with keys in either file, a `[profile default]` with a
//! `credential_process`, `AWS_PROFILE`, static keys, a web-identity variable — in boto3,
//! the JavaScript SDK v3, the Rust SDK and the AWS CLI; the user's other settings in
//! `[default]` still apply. And one `accept` is enough after a restart with a token of
//! another AWS account.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::endpoint::{Loop, User, clients_dir, user_creds, users};
use cmdr_testkit::Moto;
use cmdr_testkit::skip::have;

use crate::sandbox::{Sandbox, bin, stderr, stdout};

/// The first answer of a client started by `cmd`: its ARN, or its error.
fn first_answer(name: &'static str, cmd: Command) -> String {
    let l = Loop::spawn(name, cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(line) = l.lines().first() {
            return line
                .split_once(' ')
                .map_or(line.as_str(), |(_, rest)| rest)
                .to_owned();
        }
        assert!(Instant::now() < deadline, "{name} printed nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every SDK client, started through `cmdrctl exec acme` with `extra_env` on top of the
/// sandbox's, answers alice's ARN.
fn every_client_runs_as(sb: &Sandbox, alice: &User, extra_env: &[(&str, &str)], case: &str) {
    let exec = |program: &[&str]| {
        let mut cmd = sb.command("cmdrctl");
        cmd.args(["exec", "acme", "--"]).args(program);
        cmd.current_dir(clients_dir());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    };
    let rust = bin("cmdr-sts-loop").display().to_string();
    for (name, program) in [
        ("boto3", vec!["python3", "sts_loop.py"]),
        ("JavaScript SDK v3", vec!["node", "sts-loop.mjs"]),
        ("Rust SDK", vec![rust.as_str()]),
    ] {
        let got = first_answer(name, exec(&program));
        assert_eq!(got, alice.arn, "{case}: {name} ran as someone else");
    }
    // The AWS CLI, once; `output = text` in the user's [default] still applies (JSON would
    // quote the ARN).
    let out = exec(&["aws", "sts", "get-caller-identity", "--query", "Arn"])
        .output()
        .expect("aws");
    assert!(out.status.success(), "{case}: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), alice.arn, "{case}: the AWS CLI");
}

/// A sandbox with moto, alice for `acme` and bob for whatever would outrank it.
fn with_bob_around() -> (Sandbox, Moto, User, User) {
    let moto = Moto::start(&[]).expect("moto_server");
    let mut found = users(&moto, &["alice", "bob"]);
    let bob = found.pop().expect("bob");
    let alice = found.pop().expect("alice");
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(sb.config(), "[profile acme]\nregion = us-east-1\n").expect("config");
    sb.write_credentials(&user_creds("acme", &alice));
    sb.remember_secrets(&user_creds("bob", &bob));
    sb.start();
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme",
        "--profile",
        "acme",
        "--endpoint",
        &moto.url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    (sb, moto, alice, bob)
}

/// Writes both files and waits until the daemon's view has `profile`.
fn files(sb: &Sandbox, config: &str, credentials: &str, profile: &str) {
    std::fs::write(sb.config(), config).expect("config");
    sb.write_credentials(credentials);
    sb.wait_until(profile, || {
        sb.json(&["profiles"])
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == profile))
    });
}

#[test]
fn exec_runs_as_the_account_whatever_default_and_the_environment_hold() {
    if !have("node") || !have("aws") {
        panic!("node and the AWS CLI are needed (scripts/test installs them)");
    }
    let (sb, _moto, alice, bob) = with_bob_around();
    let bob_keys = |section: &str| {
        format!(
            "[{section}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            bob.id, bob.secret
        )
    };
    let acme = user_creds("acme", &alice);

    // 1. [default] with keys in the credentials file, settings in the config file's.
    files(
        &sb,
        "[default]\noutput = text\nretry_mode = standard\n[profile acme]\nregion = us-east-1\n",
        &format!("{}{acme}", bob_keys("default")),
        "default",
    );
    every_client_runs_as(&sb, &alice, &[], "[default] keys in credentials");

    // 2. [default] with keys in the config file itself.
    files(
        &sb,
        &format!(
            "{}output = text\n[profile acme]\nregion = us-east-1\n[profile marker2]\n",
            bob_keys("default")
        ),
        &acme,
        "marker2",
    );
    every_client_runs_as(&sb, &alice, &[], "[default] keys in config");

    // 3. [profile default] with a credential_process that hands out bob's keys.
    let process = sb.root.join("bob-process.sh");
    std::fs::write(
        &process,
        format!(
            "#!/bin/sh\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\"}}'\n",
            bob.id, bob.secret
        ),
    )
    .expect("script");
    crate::sandbox::set_mode(&process, 0o700);
    files(
        &sb,
        &format!(
            "[profile default]\ncredential_process = {}\noutput = text\n[profile acme]\nregion = us-east-1\n[profile marker3]\n",
            process.display()
        ),
        &acme,
        "marker3",
    );
    every_client_runs_as(&sb, &alice, &[], "credential_process in [profile default]");

    // 4. The caller's environment: a profile of bob's, his keys, a web-identity token.
    files(
        &sb,
        "[default]\noutput = text\n[profile acme]\nregion = us-east-1\n",
        &format!("{}{acme}", bob_keys("bobprof")),
        "bobprof",
    );
    let token_file = sb.root.join("web-identity-token");
    std::fs::write(&token_file, "not-a-token").expect("token");
    let token_path = token_file.display().to_string();
    every_client_runs_as(
        &sb,
        &alice,
        &[
            ("AWS_PROFILE", "bobprof"),
            ("AWS_DEFAULT_PROFILE", "bobprof"),
            ("AWS_ACCESS_KEY_ID", &bob.id),
            ("AWS_SECRET_ACCESS_KEY", &bob.secret),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bob"),
            ("AWS_CREDENTIAL_FILE", &token_path),
        ],
        "the caller's environment",
    );

    // The same through a shell of `env --serve`, with [default] keys back in place.
    files(
        &sb,
        "[default]\noutput = text\n[profile acme]\nregion = us-east-1\n[profile marker5]\n",
        &format!("{}{acme}", bob_keys("default")),
        "marker5",
    );
    let ctl = bin("cmdrctl").display().to_string();
    let out = sb
        .external("bash")
        .args([
            "-c",
            &format!(
                "eval \"$('{ctl}' env acme --serve --shell bash)\" && aws sts get-caller-identity --query Arn"
            ),
        ])
        .env("AWS_PROFILE", "default")
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), alice.arn, "a shell of env --serve");

    // The files the child sees hold no secret at all.
    let child_dir = sb.run_dir.join("cmdr").join("cmdrd.aws");
    for name in ["config", "credentials", "boto"] {
        let text = std::fs::read_to_string(child_dir.join(name)).expect("child file");
        assert!(!text.contains(&bob.secret) && !text.contains(&alice.secret));
        assert!(!text.contains(&bob.id) && !text.contains(&alice.id));
        assert_eq!(crate::sandbox::mode(&child_dir.join(name)), 0o600);
    }
}

/// The user's `[default]` holding settings only: they reach the child (boto3's and the
/// JavaScript SDK's own readers of the shared files, and the AWS CLI).
#[test]
fn the_users_default_settings_apply_in_the_child() {
    let (sb, _moto, alice, _bob) = with_bob_around();
    files(
        &sb,
        "[default]\nretry_mode = adaptive\nmax_attempts = 7\noutput = text\ns3 =\n  addressing_style = path\n[profile acme]\nregion = us-east-1\n[services mine]\ns3 =\n  endpoint_url = http://127.0.0.1:9\n",
        &user_creds("acme", &alice),
        "default",
    );
    let exec = |program: &[&str]| {
        let mut cmd = sb.command("cmdrctl");
        cmd.args(["exec", "acme", "--"]).args(program);
        cmd.current_dir(clients_dir());
        cmd.output().expect("exec")
    };
    let out = exec(&[
        "python3",
        "-c",
        "import botocore.session as s; c = s.get_session(); print(c.get_config_variable('retry_mode'), c.get_config_variable('max_attempts'), c.get_scoped_config()['s3']['addressing_style'])",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "adaptive 7 path", "boto3");
    let out = exec(&[
        "node",
        "--input-type=module",
        "-e",
        "import { loadSharedConfigFiles } from '@smithy/core/config'; const f = await loadSharedConfigFiles(); console.log(f.configFile.default.retry_mode, f.configFile.default.max_attempts);",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "adaptive 7", "JavaScript SDK v3");
    let out = exec(&["aws", "sts", "get-caller-identity", "--query", "Arn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        alice.arn,
        "the AWS CLI, with output = text"
    );
}

/// `status` and `doctor` say when a `[default]` with keys would outrank an account for a
/// tool started outside cmdr.
#[test]
fn status_and_doctor_name_a_default_with_keys() {
    let sb = Sandbox::with_profile("tok-acme");
    std::fs::write(
        sb.credentials(),
        "[default]\naws_access_key_id = AKIADEFAULT000000000\naws_secret_access_key = defaultsecret123\n[acme]\naws_access_key_id = AKIAACME\naws_secret_access_key = acmesecret12345\n",
    )
    .expect("creds");
    sb.remember_secrets("aws_secret_access_key = defaultsecret123\n");
    let out = sb.ctl(&["doctor"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("[default]") && text.contains("cmdrctl exec"),
        "{text}"
    );
    let json = sb.json(&["doctor"]);
    assert!(
        json["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("[default]"))),
        "{json}"
    );
    let mut sb = sb;
    sb.start();
    let out = sb.ctl(&["status"]);
    assert!(
        stdout(&out).contains("[default]") && stdout(&out).contains("cmdrctl exec"),
        "{}",
        stdout(&out)
    );
}

/// Issue "Trust I", item 2: acme validated as one AWS account; with the daemon stopped a
/// token of another AWS account is pasted; after the start, one `accept` is enough: the
/// account is `ok` with the new account id, served, and a second `accept` has nothing to do.
#[test]
fn one_accept_is_enough_after_a_restart_with_another_aws_account() {
    let moto = Moto::start(&[]).expect("moto_server");
    let alice = users(&moto, &["alice"]).pop().expect("alice");
    let out = Command::new("python3")
        .arg(clients_dir().join("moto_role.py"))
        .arg(&moto.url)
        .arg("222222222222")
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", stderr(&out));
    let role: Vec<String> = serde_json::from_slice(&out.stdout).expect("json");
    let mut sb = Sandbox::new();
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_credentials(&user_creds("acme", &alice));
    sb.start();
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme",
        "--profile",
        "acme",
        "--region",
        "us-east-1",
        "--endpoint",
        &moto.url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    sb.wait_until("validated as 123456789012", || {
        sb.account("acme")["account_id"] == "123456789012"
    });
    sb.stop();
    sb.write_credentials(&format!(
        "[acme]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
        role[1], role[2], role[3]
    ));
    sb.start();
    let out = sb.ctl(&["accept", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("accepted"), "{}", stdout(&out));
    sb.wait_until("the new account id", || {
        sb.account("acme")["account_id"] == "222222222222"
    });
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok", "{account}");
    // Served at once, and nothing left to accept.
    let out = sb
        .command("cmdrctl")
        .args([
            "exec",
            "acme",
            "--",
            "aws",
            "sts",
            "get-caller-identity",
            "--query",
            "Account",
            "--output",
            "text",
        ])
        .output()
        .expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "222222222222");
    let out = sb.ctl(&["accept", "acme"]);
    assert!(
        stdout(&out).contains("nothing to accept"),
        "{}",
        stdout(&out)
    );
}
