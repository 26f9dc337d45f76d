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
