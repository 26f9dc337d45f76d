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
