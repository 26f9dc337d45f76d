//! STS validation against a real AWS-compatible server on loopback (`moto_server`), and
//! tiny loopback stubs for the answers moto never gives (ExpiredToken, other accounts).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::Command;

use cmdr_testkit::{Moto, free_port};

use crate::sandbox::{Sandbox, creds, set_mode, stderr};

/// A loopback HTTP stub answering every request with `answer(authorization header)`.
pub fn stub(answer: fn(&str) -> (u16, String)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (mut auth, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line.clone();
                } else if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = answer(&auth);
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

fn identity_xml(account: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
         <Arn>arn:aws:iam::{account}:user/dev</Arn><UserId>AIDAEXAMPLE</UserId><Account>{account}</Account>\
         </GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
}

fn validate(sb: &Sandbox, name: &str) -> std::process::Output {
    sb.ctl(&["validate", name, "--json"])
}

#[test]
fn validates_against_moto() {
    let moto = Moto::start(&[]).expect("moto_server");
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--endpoint", &moto.url, "--region", "eu-west-1"]);
    let mut watch = sb.watch();
    let out = validate(&sb, "acme");
    assert!(out.status.success(), "{}", stderr(&out));
    let identity: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(identity["account_id"], "123456789012");
    assert_eq!(identity["arn"], "arn:aws:sts::123456789012:user/moto");
    assert!(identity["user_id"].is_string());
    let event = watch.wait_type("validated");
    assert_eq!(event["account_id"], "123456789012");
    assert_eq!(sb.account("acme")["account_id"], "123456789012");
}

#[test]
fn moto_with_auth_rejects_unknown_keys() {
    let moto = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).expect("moto_server");
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--endpoint", &moto.url]);
    let mut watch = sb.watch();
    let out = validate(&sb, "acme");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    let event = watch.wait_type("validation_failed");
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid")),
        "{event}"
    );
    assert_eq!(sb.account("acme")["state"], "invalid");
    // Accepting (e.g. after pasting good keys) clears it.
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    assert_eq!(sb.account("acme")["state"], "ok");
}

#[test]
fn expired_token_is_classified_expired() {
    let url = stub(|_| {
        (
            400,
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>ExpiredToken</Code><Message>The security token included in the request is expired</Message>\
             </Error><RequestId>r</RequestId></ErrorResponse>"
                .to_owned(),
        )
    });
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--endpoint", &url]);
    let out = validate(&sb, "acme");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("expired: The security token"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn closed_port_is_unreachable_not_invalid() {
    let port = free_port().expect("free port");
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &["--endpoint", &format!("http://127.0.0.1:{port}")]);
    let out = validate(&sb, "acme");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));
    // Offline is not invalid: the target has never answered, so `unvalidated`.
    assert_eq!(sb.account("acme")["state"], "unvalidated");
}

#[test]
fn a_different_account_pasted_is_identity_changed() {
    // Which AWS account a key belongs to, by its access key id.
    let url = stub(|auth| {
        let account = if auth.contains("Credential=AKIAFIRSTACCOUNT0") {
            "111111111111"
        } else {
            "222222222222"
        };
        (200, identity_xml(account))
    });
    let keys = |akid: &str, token: &str| {
        format!(
            "[acme]\naws_access_key_id = {akid}\naws_secret_access_key = s\naws_session_token = {token}\n"
        )
    };
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&keys("AKIAFIRSTACCOUNT0", "T1"));
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = true\n");
    sb.start();
    let mut watch = sb.watch();
    sb.add_account("acme", &["--endpoint", &url]);
    // Adding validates: the first identity is remembered.
    let first = watch.wait_type("validated");
    assert_eq!(first["account_id"], "111111111111");

    // Same account, new token: validated, no identity change.
    sb.write_credentials(&keys("AKIAFIRSTACCOUNT0", "T2"));
    watch.wait_type("token_changed");
    let again = watch.wait_type("validated");
    assert_eq!(again["account_id"], "111111111111");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    watch.wait_type("validated");

    // Another AWS account pasted into the same profile.
    sb.write_credentials(&keys("AKIASECONDACCOUNT", "T3"));
    let changed = watch.wait_type("identity_changed");
    assert_eq!(changed["old_account_id"], "111111111111");
    assert_eq!(changed["new_account_id"], "222222222222");
    // Another AWS account is a token to confirm, not one STS rejected.
    assert_eq!(sb.account("acme")["state"], "changed");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok");
    assert_eq!(account["account_id"], "222222222222");
}

#[test]
fn expiry_events_on_the_wall_clock_and_prompt() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let rfc3339 = |unix: u64| {
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    // Warn 10 minutes ahead; the token expires in 10 min + 2 s, then another in 2 s.
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\nwarn_before = \"10m\"\n");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = {}\n",
        creds("acme", "T1"),
        rfc3339(now + 600 + 2)
    ));
    // No daemon: prompt is silent.
    let out = sb.ctl(&["prompt"]);
    assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(3), true));
    sb.start();
    // Nothing bound: silent.
    let out = sb.ctl(&["prompt"]);
    assert_eq!((out.status.code(), out.stdout.is_empty()), (Some(0), true));
    let mut watch = sb.watch();
    sb.add_account("acme", &[]);
    let soon = watch.wait_type("expiring_soon");
    assert_eq!(soon["account"], "acme");
    assert_eq!(sb.account("acme")["state"], "expiring");
    let list = sb.json(&["accounts", "list"]);
    assert_eq!(list[0]["expiry_source"], "x_security_token_expires");
    assert_eq!(list[0]["expires_at"], rfc3339(now + 602));
    let prompt = String::from_utf8_lossy(&sb.ctl(&["prompt"]).stdout)
        .trim()
        .to_owned();
    assert!(
        prompt.starts_with("acme 10m") || prompt.starts_with("acme 9m"),
        "{prompt}"
    );

    sb.write_credentials(&format!(
        "{}x_security_token_expires = {}\n",
        creds("acme", "T2"),
        rfc3339(now + 3)
    ));
    watch.wait_type("token_changed");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    let expired = watch.wait_type("expired");
    assert_eq!(expired["expires_at"], rfc3339(now + 3));
    assert_eq!(sb.account("acme")["state"], "expired");
    let prompt = String::from_utf8_lossy(&sb.ctl(&["prompt"]).stdout)
        .trim()
        .to_owned();
    assert_eq!(prompt, "acme EXPIRED");
    let formatted = sb.ctl(&["prompt", "--format", "[{account}:{state}]"]);
    assert_eq!(
        String::from_utf8_lossy(&formatted.stdout).trim(),
        "[acme:expired]"
    );
}

/// A `credential_process` profile's expiry is what its process printed, learned when the
/// account is validated (the SDK runs the process then, as for any tool), and forgotten
/// when the profile changes.
#[test]
fn credential_process_expiration_is_learned_on_validate() {
    let moto = Moto::start(&[]).expect("moto_server");
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let secret = "wJalrXUtnFEMI-SECRET-process";
    sb.remember_secrets(&format!(
        "aws_secret_access_key = {secret}\naws_session_token = PROCESS-TOKEN-1\n"
    ));
    let script = sb.aws.join("process.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"ASIAPROCESSEXAMPLE1\", \
             \"SecretAccessKey\": \"{secret}\", \"SessionToken\": \"PROCESS-TOKEN-1\", \
             \"Expiration\": \"2031-05-06T07:08:09Z\"}}'\n"
        ),
    )
    .expect("script");
    set_mode(&script, 0o755);
    let config = format!(
        "[profile proc]\ncredential_process = {}\n",
        script.display()
    );
    std::fs::write(sb.config(), &config).expect("config");
    sb.start();
    let out = sb.ctl(&[
        "accounts",
        "add",
        "p",
        "--profile",
        "proc",
        "--endpoint",
        &moto.url,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sb.account("p")["expires_at"].is_null());

    let out = validate(&sb, "p");
    assert!(out.status.success(), "{}", stderr(&out));
    let account = sb.account("p");
    assert!(
        account["expires_at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2031-05-06T07:08:09")),
        "{account}"
    );
    assert_eq!(account["expiry_source"], "credential_process");
    let profiles = sb.json(&["profiles"]);
    let proc = profiles
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "proc"))
        .expect("proc");
    assert_eq!(proc["expiry_source"], "credential_process");

    let mut watch = sb.watch();
    std::fs::write(sb.config(), format!("{config}region = eu-west-1\n")).expect("config");
    watch.wait_type("profile_changed");
    assert!(sb.account("p")["expires_at"].is_null());
}
