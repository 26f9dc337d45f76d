//! One test per fixed bug.

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
    assert!(
        !watch.seen.iter().any(|e| e["type"] == "token_changed"),
        "{:?}",
        watch.seen
    );
}

/// `paste` into a credentials file whose target section had a header but no key lines
/// wrote the file back without any keys (found by the `paste` fuzz property).
#[test]
fn paste_into_a_section_without_keys() {
    use std::io::Write as _;
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials("[other]\nregion = eu-west-1\n\n[acme]\n# to be filled\n");
    let mut child = sb
        .command("cmdrctl")
        .arg("paste")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let block = "[acme]\naws_access_key_id=ASIAREGRESSION\naws_secret_access_key=regression-secret-key\naws_session_token=regression-session-token\n";
    sb.remember_secrets(block);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(block.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert_eq!(
        text,
        "[other]\nregion = eu-west-1\n\n[acme]\naws_access_key_id = ASIAREGRESSION\naws_secret_access_key = regression-secret-key\naws_session_token = regression-session-token\n# to be filled\n"
    );
}

/// `~/.aws` removed and recreated at once can get the same inode number back: the watch
/// was thought alive and writes went unseen until the 60 s safety rescan.
#[test]
fn aws_dir_recreated_at_once_is_watched_again() {
    let mut sb = Sandbox::with_profile("T0");
    sb.start();
    sb.add_account("acme", &[]);
    for round in 1..=5 {
        std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
        std::fs::create_dir_all(&sb.aws).expect("mkdir");
        sb.write_credentials(&creds("acme", &format!("T{round}-a")));
        // Let the daemon settle on this directory, then write again into it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        sb.write_credentials(&creds("acme", &format!("T{round}-b")));
        let start = std::time::Instant::now();
        let expected = {
            let mut fresh = Sandbox::with_profile(&format!("T{round}-b"));
            fresh.start();
            fresh.json(&["profiles"])[0]["fingerprint"].clone()
        };
        while sb.json(&["profiles"])[0]["fingerprint"] != expected {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "round {round}: the write after recreating ~/.aws was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
    sb.start();
    let localstack = format!("http://127.0.0.1:{port}");
    for (name, policy) in [("local", "ask"), ("auto", "auto")] {
        let out = sb.ctl(&[
            "accounts", "add", name, "--profile", "local", "--localstack", &localstack,
            "--on-change", policy,
        ]);
        assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    }
    let mut watch = sb.watch();
    std::fs::remove_file(sb.credentials()).expect("rm");
    sb.wait_until("missing", || {
        sb.account("local")["state"] == "missing" && sb.account("auto")["state"] == "missing"
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
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
    let events = watch.drain(std::time::Duration::from_millis(500));
    let bad: Vec<&serde_json::Value> = watch
        .seen
        .iter()
        .chain(&events)
        .filter(|e| {
            (e["type"] == "token_changed" && e["new_fingerprint"].is_null())
                || e["type"] == "token_accepted"
        })
        .collect();
    assert!(bad.is_empty(), "a vanished token is no new token: {bad:#?}");
}

/// States were used for the wrong things: a role without a region and a profile with no
/// credentials at all were `invalid` (STS never said so); each is `misconfigured`, with
/// its reason.
#[test]
fn profiles_that_cannot_give_credentials_are_misconfigured() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile bare]\nregion = us-east-1\n\
         [profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\n\
         [profile base]\nregion = us-east-1\n",
    )
    .expect("config");
    sb.write_credentials(
        "[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-base\n",
    );
    sb.start();
    let out = sb.ctl(&["accounts", "add", "bare", "--profile", "bare"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    assert_eq!(sb.account("bare")["state"], "misconfigured");
    let out = sb.ctl(&["env", "bare"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        crate::sandbox::stderr(&out).contains("gives no credentials"),
        "{}",
        crate::sandbox::stderr(&out)
    );
    // The role has no region anywhere: resolving it fails before any network.
    let out = sb.ctl(&["accounts", "add", "role", "--profile", "role"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let out = sb.ctl(&["validate", "role"]);
    assert_eq!(out.status.code(), Some(1));
    let role = sb.account("role");
    assert_eq!(role["state"], "misconfigured", "{role}");
}
