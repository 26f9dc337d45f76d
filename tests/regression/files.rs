//! Regressions: Watching the files: a broken start, `~/.aws` recreated at once, a file deleted and recreated.

use crate::sandbox::{Sandbox, creds};

/// The accepted token's credentials were not restored when the file was broken at start
/// and then fixed without a token change.
#[test]
fn accepted_token_restored_after_broken_start() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    sb.write_credentials("[acme\n");
    sb.start();
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "T1"));
    watch.wait_type("profile_added");
    assert_eq!(sb.account("acme")["state"], "ok");
    // No token change, up to a marker read after the fix: a region for the profile.
    std::fs::write(sb.config(), "[profile acme]\nregion = eu-west-1\n").expect("config");
    watch.until("the region's profile_changed", |e| {
        e["type"] == "profile_changed"
    });
    assert!(
        !watch.seen.iter().any(|e| e["type"] == "token_changed"),
        "{:?}",
        watch.seen
    );
}

/// `~/.aws` removed and recreated at once can get the same inode number back: the watch
/// was thought alive and writes went unseen until the 60 s safety rescan.
#[test]
fn aws_dir_recreated_at_once_is_watched_again() {
    let mut sb = Sandbox::with_profile("T0");
    sb.start();
    sb.add_account("acme", &[]);
    let fingerprint = || sb.json(&["profiles"])[0]["fingerprint"].clone();
    let mut last = fingerprint();
    for round in 1..=5 {
        std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
        std::fs::create_dir_all(&sb.aws).expect("mkdir");
        sb.write_credentials(&creds("acme", &format!("T{round}-a")));
        // The daemon has read the recreated directory (a new token in its view); then a
        // second write into it, which only a live watch on the new directory sees.
        sb.wait_until("the first write into the recreated ~/.aws", || {
            let now = fingerprint();
            !now.is_null() && now != last
        });
        sb.write_credentials(&creds("acme", &format!("T{round}-b")));
        let start = std::time::Instant::now();
        let expected = {
            let mut fresh = Sandbox::with_profile(&format!("T{round}-b"));
            fresh.start();
            fresh.json(&["profiles"])[0]["fingerprint"].clone()
        };
        while fingerprint() != expected {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: the write after recreating ~/.aws was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        last = expected;
    }
}

/// Deleting and recreating the credentials file left an account on a config profile stuck
/// `invalid`: the vanished token was taken for a new one (`token_changed` with no new
/// fingerprint, an `auto` account "accepting" it), its failed validation marked the account
/// invalid, and later "unreachable" validations never cleared that.
#[test]
fn delete_and_recreate_is_missing_then_ok_again() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(sb.config(), "[profile local]\nregion = us-east-1\n").expect("config");
    let saved = "[local]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-local\n";
    sb.write_credentials(saved);
    // Validation on: nothing listens on the LocalStack port, so every validation is
    // "unreachable" — which must never make or keep the account `invalid`.
    let port = cmdr_testkit::free_port().expect("free port");
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
    sb.start();
    let localstack = format!("http://127.0.0.1:{port}");
    for (name, policy) in [("local", "ask"), ("auto", "auto")] {
        let out = sb.ctl(&[
            "accounts",
            "add",
            name,
            "--profile",
            "local",
            "--localstack",
            &localstack,
            "--on-change",
            policy,
        ]);
        assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    }
    let mut watch = sb.watch();
    std::fs::remove_file(sb.credentials()).expect("rm");
    sb.wait_until("missing", || {
        sb.account("local")["state"] == "missing" && sb.account("auto")["state"] == "missing"
    });
    sb.write_credentials(saved);
    sb.wait_until("back", || {
        ["local", "auto"]
            .iter()
            .all(|n| matches!(sb.account(n)["state"].as_str(), Some("ok" | "unvalidated")))
    });
    // Validations after the token came back answer "unreachable": never `invalid`.
    assert!(crate::sandbox::stderr(&sb.ctl(&["validate", "local"])).contains("unreachable"));
    for name in ["local", "auto"] {
        assert_eq!(sb.account(name)["state"], "unvalidated", "{name}");
    }
    let out = sb.ctl(&["env", "local"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    // Every event up to a marker caused last: an edit of the account.
    let out = sb.ctl(&["accounts", "edit", "local", "--region", "eu-west-1"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    watch.until("the marker's account_updated", |e| {
        e["type"] == "account_updated" && e["account"] == "local"
    });
    let bad: Vec<&serde_json::Value> = watch
        .seen
        .iter()
        .filter(|e| {
            (e["type"] == "token_changed" && e["new_fingerprint"].is_null())
                || e["type"] == "token_accepted"
        })
        .collect();
    assert!(bad.is_empty(), "a vanished token is no new token: {bad:#?}");
}
