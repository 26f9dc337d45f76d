//! Regressions: Accounts and their states: `misconfigured` reasons, no-op accepts and edits, targets, `auto` accounts.

use serde_json::Value;

use crate::sandbox::{Sandbox, creds, stderr, stdout};

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

/// Found trying the product as a new user: an assume-role profile with a region (in the
/// profile and the account) was `misconfigured: Missing Region`, because the SDK's
/// provider was given no region for its STS call. It now gets the account's; offline the
/// call is unreachable (`unvalidated`), online STS judges the keys, never "Missing Region".
#[test]
fn a_role_with_a_region_is_not_missing_one() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nsource_profile = base\nregion = eu-west-1\n\
         [profile base]\nregion = eu-west-1\n",
    )
    .expect("config");
    sb.write_credentials(
        "[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI-SECRET-role\n",
    );
    sb.start();
    let out = sb.ctl(&["accounts", "add", "role", "--profile", "role"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let out = sb.ctl(&["validate", "role"]);
    let stderr = crate::sandbox::stderr(&out);
    assert!(!stderr.contains("Missing Region"), "{stderr}");
    let role = sb.account("role");
    assert_ne!(role["state"], "misconfigured", "{role}");
}

// ---- What a new user following README.md hit (the contract: PRODUCT.md, "Public contract") ----

/// Friction: `accept` without a new token re-accepted and emitted `token_accepted`;
/// `accounts edit` without a change emitted `account_updated`.
#[test]
fn accept_and_edit_without_a_change_emit_nothing() {
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1"]);
    let mut watch = sb.watch();
    let out = sb.ctl(&["accept", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing to accept"),
        "{}",
        stdout(&out)
    );
    let out = sb.ctl(&["accounts", "edit", "acme", "--region", "eu-west-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A real change afterwards: events arrive in order, so anything the two no-ops had
    // emitted would come before it.
    let out = sb.ctl(&["accounts", "edit", "acme", "--on-change", "auto"]);
    assert!(out.status.success(), "{}", stderr(&out));
    watch.wait_type("account_updated");
    let types: Vec<&Value> = watch.seen.iter().map(|e| &e["type"]).collect();
    assert_eq!(types, ["account_updated"], "{:?}", watch.seen);

    // With a new token in the file, accept does accept.
    sb.write_credentials(&creds("acme", "T2"));
    watch.wait_type("token_accepted");
    sb.ctl(&["accounts", "edit", "acme", "--on-change", "ask"]);
    sb.write_credentials(&creds("acme", "T3"));
    watch.wait_for("T3 changed", |e| {
        e["type"] == "token_changed" && e["account"] == "acme"
    });
    let out = sb.ctl(&["accept", "acme"]);
    assert!(
        stdout(&out).contains("accepted account acme"),
        "{}",
        stdout(&out)
    );
    watch.wait_type("token_accepted");
}

/// Friction: after switching an account to another target, the account id STS reported
/// for the old target stayed.
#[test]
fn switching_target_forgets_the_account_id() {
    let moto = cmdr_testkit::Moto::start(&[]).expect("moto_server");
    let mut sb = Sandbox::with_profile("T1");
    sb.start();
    sb.add_account("acme", &["--endpoint", &moto.url, "--region", "eu-west-1"]);
    let out = sb.ctl(&["validate", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.account("acme")["account_id"], "123456789012");
    let out = sb.ctl(&["accounts", "edit", "acme", "--localstack"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.account("acme")["account_id"], Value::Null);
}

/// Friction: the refusal for an expired `auto` account told it to run `accept`, which an
/// `auto` account never needs.
#[test]
fn expired_auto_account_is_not_told_to_accept() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2020-01-01T00:00:00Z\n",
        creds("acme", "T1")
    ));
    sb.start();
    sb.add_account("auto", &["--on-change", "auto"]);
    sb.add_account("ask", &[]);
    let auto = sb.ctl(&["env", "auto"]);
    assert_eq!(auto.status.code(), Some(1));
    assert!(
        stderr(&auto).contains("paste a new one") && !stderr(&auto).contains("cmdrctl accept"),
        "{}",
        stderr(&auto)
    );
    let ask = sb.ctl(&["env", "ask"]);
    assert!(
        stderr(&ask).contains("cmdrctl accept ask"),
        "{}",
        stderr(&ask)
    );
}

/// Walkthrough of 2026-12-06: `paste` then `accounts add` at once failed 1 time in 3 ("not
/// in the AWS config or credentials file"), and every time in a fresh HOME (no `~/.aws`
/// when the daemon started). An unknown profile now waits for a fresh read first.
#[test]
fn an_account_added_right_after_a_paste_finds_the_profile() {
    let mut sb = Sandbox::new();
    sb.start();
    for i in 0..10 {
        let block = format!(
            "[race{i}]\naws_access_key_id = ASIAIOSFODNN7RACE{i:03}\naws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYRACE{i:06}\naws_session_token = TOKEN-RACE-{i}-0123456789\n"
        );
        sb.remember_secrets(&block);
        let pasted = crate::paste_trust::paste(&sb, &[], block.as_bytes());
        assert!(pasted.status.success(), "{}", stderr(&pasted));
        let name = format!("race{i}");
        let added = sb.ctl(&["accounts", "add", &name, "--profile", &name]);
        assert!(added.status.success(), "round {i}: {}", stderr(&added));
    }
    // A profile that is really not there is still refused (after the fresh read).
    let out = sb.ctl(&["accounts", "add", "ghost", "--profile", "nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
}
