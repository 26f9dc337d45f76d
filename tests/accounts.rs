//! Accounts over the real socket: ask → changed → accept, auto, edit, remove, errors,
//! persistence across restarts and changes made while the daemon was down.

use crate::sandbox::{Sandbox, creds, stderr, stdout};

#[test]
fn ask_changed_accept() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--region", "us-west-2"]);
    let account = sb.account("acme");
    for key in [
        "name",
        "profile",
        "region",
        "target",
        "endpoint",
        "on_change",
        "state",
        "fingerprint",
        "accepted_fingerprint",
        "expires_at",
        "expiry_source",
    ] {
        assert!(account.get(key).is_some(), "missing {key} in {account}");
    }
    assert_eq!(account["state"], "ok");
    assert_eq!(account["region"], "us-west-2");
    assert_eq!(account["target"], "aws");
    assert_eq!(account["endpoint"], serde_json::Value::Null);
    assert_eq!(account["on_change"], "ask");

    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    let changed = watch.wait_type("token_changed");
    assert_eq!(changed["old_fingerprint"], account["fingerprint"]);
    assert_eq!(sb.account("acme")["state"], "changed");

    let accept = sb.ctl(&["accept", "acme"]);
    assert!(accept.status.success(), "{}", stderr(&accept));
    let accepted = watch.wait_type("token_accepted");
    assert_eq!(accepted["account"], "acme");
    let after = sb.account("acme");
    assert_eq!(after["state"], "ok");
    assert_eq!(after["accepted_fingerprint"], changed["new_fingerprint"]);

    let list = sb.json(&["accounts", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["name"], "acme");
}

#[test]
fn auto_accepts_at_once() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--on-change", "auto"]);
    sb.add_account("acme-ask", &[]);
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    let accepted = watch.wait_for("auto accept", |e| {
        e["type"] == "token_accepted" && e["account"] == "acme"
    });
    assert_eq!(accepted["profile"], "acme");
    assert_eq!(sb.account("acme")["state"], "ok");
    assert_eq!(sb.account("acme-ask")["state"], "changed");
}

#[test]
fn targets_edit_and_remove() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    std::fs::write(
        sb.aws.join("credentials"),
        format!(
            "{}{}",
            creds("acme", "TOKEN-ONE"),
            creds("acme-dev", "TOKEN-DEV")
        ),
    )
    .expect("write");
    sb.start();
    sb.add_account("local", &["--localstack"]);
    let local = sb.account("local");
    assert_eq!(local["target"], "localstack");
    assert_eq!(local["endpoint"], "http://localhost:4566");

    sb.add_account("custom", &["--endpoint", "http://127.0.0.1:5000"]);
    assert_eq!(sb.account("custom")["target"], "endpoint");

    let mut watch = sb.watch();
    let out = sb.ctl(&[
        "accounts",
        "edit",
        "local",
        "--profile",
        "acme-dev",
        "--region",
        "eu-west-3",
        "--aws",
        "--on-change",
        "auto",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    watch.wait_type("account_updated");
    let edited = sb.account("local");
    assert_eq!(edited["profile"], "acme-dev");
    assert_eq!(edited["region"], "eu-west-3");
    assert_eq!(edited["target"], "aws");
    assert_eq!(edited["on_change"], "auto");
    assert_eq!(edited["state"], "ok");

    let out = sb.ctl(&["accounts", "remove", "custom"]);
    assert!(out.status.success());
    watch.wait_type("account_removed");
    let list = sb.json(&["accounts", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[test]
fn errors_are_clear_and_exit_1_or_2() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["accounts", "add", "x", "--profile", "nope"],
            "profile `nope`",
        ),
        (
            &["accounts", "add", "bad name", "--profile", "acme"],
            "invalid account name",
        ),
        (&["accounts", "show", "ghost"], "no account named `ghost`"),
        (&["accept", "ghost"], "no account named `ghost`"),
        (&["accounts", "remove", "ghost"], "no account named `ghost`"),
        (
            &[
                "accounts",
                "add",
                "e",
                "--profile",
                "acme",
                "--endpoint",
                "ftp://x",
            ],
            "invalid endpoint",
        ),
    ];
    for (args, message) in cases {
        let out = sb.ctl(args);
        // A malformed value or an unknown profile is a usage error (2), as a taken name
        // is; a missing account a failure.
        let usage = message.starts_with("invalid") || message.starts_with("profile");
        let expected = if usage { 2 } else { 1 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
    sb.add_account("acme", &[]);
    let out = sb.ctl(&["accounts", "add", "acme", "--profile", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"));
    // Usage errors are 2 (clap).
    let out = sb.ctl(&["accounts", "add"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme",
        "--on-change",
        "sometimes",
        "--profile",
        "acme",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn restart_keeps_accounts_and_reports_changes_while_down() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    sb.add_account("auto", &["--on-change", "auto"]);
    let before = sb.account("acme");
    assert_eq!(sb.stop(), Some(0));

    sb.write_credentials(&creds("acme", "TOKEN-WHILE-DOWN"));
    sb.start();
    let acme = sb.account("acme");
    assert_eq!(acme["state"], "changed", "{acme}");
    assert_eq!(acme["accepted_fingerprint"], before["fingerprint"]);
    assert_eq!(sb.account("auto")["state"], "ok");
    let status = sb.json(&["status"]);
    let notes = status["changes_while_down"].to_string();
    assert!(
        notes.contains("token for account `acme` changed"),
        "{notes}"
    );
    assert!(notes.contains("`auto` accepted"), "{notes}");
    let text = stdout(&sb.ctl(&["status"]));
    assert!(text.contains("while cmdrd was not running"), "{text}");

    // Once acme accepts, its line is past news; the others stay.
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    let notes = sb.json(&["status"])["changes_while_down"].to_string();
    assert!(!notes.contains("token for account `acme`"), "{notes}");
    assert!(notes.contains("`auto` accepted"), "{notes}");
}

#[test]
fn corrupt_state_file_is_moved_aside() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    std::fs::write(sb.state_file(), "{ this is not json").expect("corrupt");
    sb.start();
    let list = sb.json(&["accounts", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0));
    let aside: Vec<_> = std::fs::read_dir(&sb.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(
        sb.log_text().contains("state file is corrupt"),
        "{}",
        sb.log_text()
    );
}
