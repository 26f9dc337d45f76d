//! The credentials endpoint's own behaviour: its protocol and refusals with the fix (as
//! the SDKs show them), SSO accounts served role credentials from the cached token, and
//! hostile endpoint clients that get nothing and stall nobody. The SDK processes that
//! follow `accept` are in `endpoint.rs`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::endpoint::{Loop, alice_and_bob, clients_dir, endpoint, exec_loop, get, user_creds};
use crate::sandbox::{Sandbox, bin, stderr};

#[test]
fn the_endpoint_answers_the_protocol_and_refuses_with_the_fix() {
    let (mut sb, _moto, users) = alice_and_bob();
    let (base, token) = endpoint(&sb, "acme");
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/v1/credentials/"));
    assert_eq!(token.len(), 64, "256 bits, hex, no newline");
    let token_file = format!(
        "{}acme",
        sb.json(&["status"])["endpoint"]["token_file"]
            .as_str()
            .expect("path")
    );
    assert_eq!(crate::sandbox::mode(Path::new(&token_file)), 0o600);
    let url = format!("{base}acme");

    let (status, body) = get(&url, Some(&token));
    assert_eq!(status, 200, "{body}");
    let creds: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(creds["AccessKeyId"], users[0].id.as_str());
    assert_eq!(creds["SecretAccessKey"], users[0].secret.as_str());
    assert_eq!(creds["Token"], "");
    let expiration = chrono_parse(creds["Expiration"].as_str().expect("Expiration"));
    let left = expiration - now_secs();
    assert!((0..=16 * 60).contains(&left), "{left} s");

    // Without the token, or with a wrong one, nothing but the status.
    let (status, body) = get(&url, None);
    assert_eq!(status, 401);
    assert!(
        !body.contains("acme") && !body.contains(&users[0].id),
        "{body}"
    );
    let (status, body) = get(&url, Some(&"0".repeat(64)));
    assert_eq!(status, 403);
    assert!(!body.contains(&users[0].id), "{body}");

    // Another account's URL, even one that does not exist: refused without a word on it.
    let (status, body) = get(&format!("{base}nobody"), Some(&token));
    assert_eq!(status, 403);
    assert!(body.contains("another account"), "{body}");

    // Missing (the profile's token is gone): a 4xx naming the state.
    std::fs::write(sb.credentials(), "").expect("empty");
    sb.wait_until("missing", || sb.account("acme")["state"] == "missing");
    let (status, body) = get(&url, Some(&token));
    assert_eq!(status, 409, "{body}");
    let refusal: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(refusal["code"], "missing");
    // The SDK's error shows cmdr's message.
    let out = sb
        .command("cmdrctl")
        .args(["exec", "acme", "--", "true"])
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gone"), "{}", stderr(&out));

    // The same URL and a new token file after a restart.
    sb.write_credentials(&user_creds("acme", &users[0]));
    sb.wait_until("ok", || sb.account("acme")["state"] == "ok");
    sb.stop();
    sb.start();
    let (base2, token2) = endpoint(&sb, "acme");
    assert_eq!(base2, base, "the port is kept across restarts");
    assert_ne!(token2, token, "the token is rotated");
    assert_eq!(get(&url, Some(&token)).0, 403);
    assert_eq!(get(&url, Some(&token2)).0, 200);
    assert!(!sb.log_text().contains(&users[0].secret));
}

#[test]
fn the_sdks_show_cmdrs_refusal() {
    let (sb, _moto, users) = alice_and_bob();
    let loops = [
        exec_loop(&sb, "boto3", &["python3", "sts_loop.py"]),
        exec_loop(&sb, "JavaScript SDK v3", &["node", "sts-loop.mjs"]),
        exec_loop(
            &sb,
            "Rust SDK",
            &[bin("cmdr-sts-loop").to_str().expect("utf8")],
        ),
    ];
    for l in &loops {
        l.wait_for(&users[0].arn, Duration::from_secs(60));
    }
    // The token vanishes and the clients' credentials run out (a fresh client asks at
    // once): what each SDK shows the user contains cmdr's reason.
    std::fs::write(sb.credentials(), "").expect("empty");
    sb.wait_until("missing", || sb.account("acme")["state"] == "missing");
    let rust = bin("cmdr-sts-loop").display().to_string();
    for (name, program) in [
        ("boto3", vec!["python3", "sts_loop.py"]),
        ("JavaScript SDK v3", vec!["node", "sts-loop.mjs"]),
        ("Rust SDK", vec![rust.as_str()]),
    ] {
        let (base, token) = endpoint(&sb, "acme");
        let token_file = sb.root.join("token");
        std::fs::write(&token_file, token).expect("token");
        let mut cmd = sb.external(program[0]);
        cmd.args(&program[1..])
            .current_dir(clients_dir())
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{base}acme"))
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1");
        let fresh = Loop::spawn(name, cmd);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = fresh.lines().first() {
                assert!(line.contains("error:"), "{name}: {line}");
                // What each SDK surfaces (README, "Long-running tools", says so): the
                // JavaScript SDK's default chain hides every provider's error behind one
                // message; the Rust SDK names the status only.
                if name.starts_with("JavaScript") {
                    assert!(
                        line.contains("Could not load credentials"),
                        "{name}: {line}"
                    );
                } else if name.starts_with("Rust") {
                    assert!(line.contains("409"), "{name}: {line}");
                } else {
                    assert!(
                        line.contains("gone from profile"),
                        "{name} does not show cmdr's reason: {line}"
                    );
                }
                break;
            }
            assert!(Instant::now() < deadline, "{name} printed nothing");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Seconds since the epoch of an RFC 3339 UTC time like `2026-12-02T08:00:00Z`.
pub fn chrono_parse(text: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", text, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("epoch")
}

/// A loopback stand-in for the SSO portal's GetRoleCredentials (moto has no portal): role
/// credentials whose key id names the bearer token they were issued for.
fn sso_portal() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut bearer = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line
                    .to_ascii_lowercase()
                    .strip_prefix("x-amz-sso_bearer_token:")
                {
                    bearer = v.trim().to_owned();
                }
            }
            let body = format!(
                r#"{{"roleCredentials":{{"accessKeyId":"ASIA{}","secretAccessKey":"role-secret-{bearer}","sessionToken":"role-session-{bearer}","expiration":{}}}}}"#,
                bearer.to_ascii_uppercase(),
                (now_secs() + 3600) * 1000
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn sso_accounts_are_served_role_credentials_from_the_cache_token() {
    let portal = sso_portal();
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(sb.aws.join("sso/cache")).expect("cache dir");
    std::fs::write(
        sb.config(),
        format!(
            "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Dev\nregion = us-east-1\nservices = portal\n\
             [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n\
             [services portal]\nsso =\n  endpoint_url = {portal}\n"
        ),
    )
    .expect("config");
    let hash = {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf %s corp | sha1sum | cut -d' ' -f1"])
            .output()
            .expect("sha1sum");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let cache = sb.aws.join(format!("sso/cache/{hash}.json"));
    let token = |t: &str| {
        format!(
            r#"{{"accessToken":"{t}","expiresAt":"2099-01-01T00:00:00Z","region":"us-east-1","startUrl":"https://corp.awsapps.com/start"}}"#
        )
    };
    std::fs::write(&cache, token("first")).expect("cache");
    sb.start();
    let out = sb.ctl(&["accounts", "add", "dev", "--profile", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (base, secret) = endpoint(&sb, "dev");
    let (status, body) = get(&format!("{base}dev"), Some(&secret));
    assert_eq!(status, 200, "{body}");
    let creds: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(creds["AccessKeyId"], "ASIAFIRST");
    assert_eq!(creds["Token"], "role-session-first");

    // `aws sso login` writes a new cache token: the account is `changed` (the role
    // credentials of the old token are still served from the cache); once accepted, the
    // next fetch gets role credentials of the new token.
    let mut watch = sb.watch();
    std::fs::write(&cache, token("second")).expect("cache");
    watch.wait_type("token_changed");
    let (_, body) = get(&format!("{base}dev"), Some(&secret));
    assert!(body.contains("ASIAFIRST"), "{body}");
    assert!(sb.ctl(&["accept", "dev"]).status.success());
    let (status, body) = get(&format!("{base}dev"), Some(&secret));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ASIASECOND"), "{body}");
    let out = sb.ctl(&[
        "exec",
        "--static",
        "dev",
        "--",
        "printenv",
        "AWS_ACCESS_KEY_ID",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ASIASECOND");

    // Signed out (the cache token is gone): misconfigured, with the fix.
    std::fs::remove_file(&cache).expect("rm cache");
    sb.wait_until("signed out", || {
        sb.account("dev")["state"] == "misconfigured"
    });
    let (status, body) = get(&format!("{base}dev"), Some(&secret));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cmdrctl login corp"), "{body}");
}

/// Raises this process's descriptor limit to its hard limit (10,000 sockets).
fn raise_nofile() -> u64 {
    cmdr_testkit::sys::raise_nofile(u64::MAX)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A local client without the token file gets nothing, however it tries; while it tries,
/// a client with the token is still served and the socket API still answers.
#[test]
fn hostile_endpoint_clients_get_nothing_and_stall_nobody() {
    let (sb, _moto, users) = alice_and_bob();
    let (base, token) = endpoint(&sb, "acme");
    let url = format!("{base}acme");
    let host = base
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("host")
        .to_owned();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);

    // Brute force: 2,000 guesses, every one 403 and none with a key in it.
    for i in 0..2000 {
        let (status, body) = get(&url, Some(&format!("{i:064x}")));
        assert_eq!(status, 403);
        assert!(!body.contains(&users[0].id));
    }
    assert_eq!(get(&url, Some(&token)).0, 200);

    // 64 KiB of headers: refused, the daemon carries on.
    let mut stream = TcpStream::connect(&host).expect("connect");
    let _ = write!(
        stream,
        "GET /v1/credentials/acme HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(!answer.contains(&users[0].id));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Pipelined garbage: an error or a close, never a key.
    let mut stream = TcpStream::connect(&host).expect("connect");
    let _ = stream.write_all(&b"\x00\xffGARBAGE\r\n\r\nGET / HTTP/9\r\n\r\n".repeat(200));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains(&users[0].id));

    // Slowloris and a flood: 10,000 connections that send half a request line and then
    // nothing, held open. The real client is still served, and so is the socket API.
    let nofile = raise_nofile();
    let flood = 10_000.min(usize::try_from(nofile).unwrap_or(0).saturating_sub(200));
    let mut held = Vec::with_capacity(flood);
    for _ in 0..flood {
        if let Ok(mut s) = TcpStream::connect(&host) {
            let _ = s.write_all(b"GET /v1/credentials/acme HT");
            held.push(s);
        }
    }
    let mut served = 0;
    for _ in 0..20 {
        let (status, body) = get(&url, Some(&token));
        assert_eq!(status, 200, "{body}");
        served += 1;
    }
    assert_eq!(served, 20);
    assert!(sb.ctl(&["status"]).status.success());
    let during = rss_kib(pid);
    drop(held);
    // Memory stays bounded: a few MiB for hundreds of live connections, not per attempt.
    assert!(
        during < before + 64 * 1024,
        "RSS grew from {before} KiB to {during} KiB under the flood"
    );
    assert!(
        flood >= 1000,
        "the test could open only {flood} connections"
    );
    assert!(!sb.log_text().contains(&users[0].secret));
}
