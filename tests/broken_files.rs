//! A broken file never wipes state: the last good view stays, `file_error` names the path
//! and line, `file_recovered` follows the fix.

use crate::sandbox::{Sandbox, creds, set_mode, stderr, stdout};

#[test]
fn broken_then_fixed() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();

    let broken = format!(
        "{}[half-written\naws_session_token = X\n",
        creds("acme", "TOKEN-TWO")
    );
    sb.write_credentials(&broken);
    let error = watch.wait_type("file_error");
    assert_eq!(error["path"], sb.credentials().display().to_string());
    assert_eq!(error["line"], 5);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));

    // The last good view is kept: same profile, same token, account still ok.
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok");
    assert_eq!(account["fingerprint"], account["accepted_fingerprint"]);
    let status = sb.json(&["status"]);
    let cred_status = status["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["kind"] == "credentials")
        .expect("credentials")
        .clone();
    assert_eq!(cred_status["health"], "error");
    assert_eq!(cred_status["error_line"], 5);

    sb.write_credentials(&creds("acme", "TOKEN-THREE"));
    let recovered = watch.wait_type("file_recovered");
    assert_eq!(recovered["path"], sb.credentials().display().to_string());
    watch.wait_type("token_changed");
    assert_eq!(sb.account("acme")["state"], "changed");
    // Exactly one file_error for one broken episode.
    let errors = watch
        .seen
        .iter()
        .filter(|e| e["type"] == "file_error")
        .count();
    assert_eq!(errors, 1, "{:?}", watch.seen);
}

/// While one file is broken the other still counts. The daemon keeps the broken file's last
/// good version without its secrets; the tokens come from the view, so fingerprints stay,
/// and a bound account still hands out its keys, as does one bound meanwhile.
#[test]
fn the_other_file_still_counts_while_one_is_broken() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_credentials(&format!(
        "{}\n{}",
        creds("acme", "TOKEN-ONE"),
        creds("other", "TOKEN-OTHER")
    ));
    sb.start();
    sb.add_account("acme", &[]);
    let before = sb.json(&["profiles"]);
    let mut watch = sb.watch();
    sb.write_credentials(&format!("{}[half-written\n", creds("acme", "TOKEN-TWO")));
    watch.wait_type("file_error");

    std::fs::write(
        sb.config(),
        "[profile acme]\nregion = eu-north-1\n[profile other]\nregion = sa-east-1\n",
    )
    .expect("write config");
    watch.wait_for("acme's profile_changed", |e| {
        e["type"] == "profile_changed" && e["profile"] == "acme"
    });
    let after = sb.json(&["profiles"]);
    for name in ["acme", "other"] {
        let find = |list: &serde_json::Value| {
            list.as_array()
                .and_then(|l| l.iter().find(|p| p["name"] == name))
                .cloned()
                .expect("profile")
        };
        let (b, a) = (find(&before), find(&after));
        assert_eq!(a["fingerprint"], b["fingerprint"], "{name}");
        assert_eq!(a["kind"], "session", "{name}");
    }
    assert_eq!(
        after
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == "acme"))
            .map(|p| p["region"].clone()),
        Some(serde_json::json!("eu-north-1"))
    );
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok");
    let env = sb.ctl(&["env", "acme"]);
    assert!(stdout(&env).contains("TOKEN-ONE"), "{}", stderr(&env));

    // Binding the other profile now: its keys are read from the file, which is broken, so
    // they come with the next view that has them.
    let out = sb.ctl(&["accounts", "add", "other", "--profile", "other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let from = watch.seen.len();
    sb.write_credentials(&format!(
        "{}\n{}",
        creds("acme", "TOKEN-ONE"),
        creds("other", "TOKEN-OTHER")
    ));
    watch.wait_type("file_recovered");
    // No token change follows: the marker is a region change read after the recovery.
    std::fs::write(
        sb.config(),
        "[profile acme]\nregion = eu-north-1\n[profile other]\nregion = us-west-2\n",
    )
    .expect("write config");
    watch.until("other's profile_changed", |e| {
        e["type"] == "profile_changed" && e["profile"] == "other"
    });
    let since = &watch.seen[from..];
    assert!(
        !since.iter().any(|e| e["type"] == "token_changed"),
        "{since:?}"
    );
    let env = sb.ctl(&["env", "other"]);
    assert!(
        stdout(&env).contains("TOKEN-OTHER"),
        "{:?} {} {} {}",
        env.status,
        stdout(&env),
        stderr(&env),
        sb.account("other")
    );
}

#[test]
fn unreadable_file_is_an_error_not_a_crash() {
    // Root reads anything: only meaningful for other users.
    if cmdr_testkit::sys::is_root() {
        let mut sb = Sandbox::with_profile("TOKEN-ONE");
        sb.start();
        // A directory where the file should be is unreadable as a file, even for root.
        let mut watch = sb.watch();
        std::fs::remove_file(sb.credentials()).expect("rm");
        std::fs::create_dir(sb.credentials()).expect("mkdir");
        let error = watch.wait_type("file_error");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or("")
                .contains("directory"),
            "{error}"
        );
        assert_eq!(sb.json(&["profiles"]).as_array().map(Vec::len), Some(1));
        std::fs::remove_dir(sb.credentials()).expect("rmdir");
        sb.write_credentials(&creds("acme", "TOKEN-ONE"));
        watch.wait_type("file_recovered");
        return;
    }
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    let mut watch = sb.watch();
    set_mode(&sb.credentials(), 0o000);
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    watch.wait_type("file_error");
    set_mode(&sb.credentials(), 0o600);
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    watch.wait_type("file_recovered");
}

#[test]
fn broken_at_start_is_reported_and_recovers() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    sb.stop();
    sb.write_credentials("[acme\n");
    sb.start();
    let status = sb.json(&["status"]);
    let files = status["files"].as_array().expect("files");
    assert!(
        files
            .iter()
            .any(|f| f["kind"] == "credentials" && f["health"] == "error"),
        "{status}"
    );
    // The account is missing because the file does not parse, not because the profile is
    // gone: the reason names the file, and does not send the user to `accounts edit`.
    let show = stdout(&sb.ctl(&["accounts", "show", "acme"]));
    assert!(show.contains("line 1"), "{show}");
    assert!(show.contains(".aws/credentials"), "{show}");
    assert!(!show.contains("is gone"), "{show}");
    let refused = sb.ctl(&["env", "acme"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("as cmdrd could read them"),
        "{}",
        stderr(&refused)
    );
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "TOKEN-ONE"));
    watch.wait_type("file_recovered");
    sb.wait_until("account ok", || sb.account("acme")["state"] == "ok");
}
