//! No secret the tests wrote appears in any log, state file, event stream or output.

use crate::sandbox::{Sandbox, creds};

const SECRET_TOKENS: [&str; 2] = ["SECRET-SESSION-TOKEN-ONE", "SECRET-SESSION-TOKEN-TWO"];

#[test]
fn secrets_never_leak() {
    let mut sb = Sandbox::with_profile(SECRET_TOKENS[0]);
    sb.start();
    sb.add_account("acme", &["--on-change", "auto"]);
    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", SECRET_TOKENS[1]));
    watch.wait_type("token_accepted");
    // A broken file whose bad line holds a secret: the error must not quote it.
    sb.write_credentials(&format!(
        "[acme\naws_session_token = {}\n",
        SECRET_TOKENS[1]
    ));
    watch.wait_type("file_error");
    let outputs: Vec<String> = [
        vec!["status", "--json"],
        vec!["profiles", "--json"],
        vec!["accounts", "list", "--json"],
        vec!["accounts", "show", "acme"],
        vec!["profiles"],
        vec!["doctor", "--json"],
        vec!["doctor"],
    ]
    .iter()
    .map(|args| {
        let out = sb.ctl(args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .collect();
    sb.stop();
    let events = serde_json::to_string(&watch.seen).expect("events");
    let log = sb.log_text();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the test must run with RUST_LOG=trace"
    );
    let state = std::fs::read_to_string(sb.state_file()).expect("state");
    let secret_key = "wJalrXUtnFEMI-SECRET-acme";
    for secret in SECRET_TOKENS.iter().chain([&secret_key]) {
        for (name, text) in [("log", &log), ("state", &state), ("events", &events)] {
            assert!(!text.contains(secret), "{secret} leaked into the {name}");
        }
        for text in &outputs {
            assert!(
                !text.contains(secret),
                "{secret} leaked into cmdrctl output: {text}"
            );
        }
    }
}
