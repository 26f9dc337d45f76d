//! `cmdrctl console NAME`: the federation sign-in against a loopback sign-in server (the
//! `[console] signin_url` setting points at it): the Session JSON it receives holds the
//! account's accepted session, the URL carries its SigninToken and goes to the browser (or
//! stdout with `--print`), and nothing of either reaches the log. Refusals for long-lived
//! keys and LocalStack targets.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::renew::Recorder;
use crate::sandbox::{Sandbox, creds, stderr, stdout};

const SIGNIN_TOKEN: &str = "SIGNIN-TOKEN-0123456789";

/// A federation endpoint on loopback: records each request's query, answers
/// `{"SigninToken"}` (or `status` when it is not 200).
fn signin_server(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/federation", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the headers.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = line.split(' ').nth(1).unwrap_or("").to_owned();
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(target);
            let body = format!("{{\"SigninToken\":\"{SIGNIN_TOKEN}\"}}");
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

fn query_value(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn sandbox(signin: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_cmdr_config(&format!(
        "[daemon]\nvalidate_on_change = false\n[console]\nsignin_url = \"{signin}\"\n"
    ));
    sb.write_credentials(&format!(
        "{}[static]\naws_access_key_id = AKIASTATIC0000000000\naws_secret_access_key = static-secret-0123456789\n",
        creds("acme", "SESSION-TOKEN-acme-0123456789")
    ));
    sb.start();
    sb.add_account("acme", &["--region", "eu-west-1"]);
    assert!(
        sb.ctl(&["accounts", "add", "keys", "--profile", "static"])
            .status
            .success()
    );
    sb.add_account("local", &["--localstack"]);
    sb
}

#[test]
fn console_signs_in_with_the_accepted_session_and_keeps_the_link_secret() {
    let (signin, seen) = signin_server(200);
    let mut sb = sandbox(&signin);

    let out = sb.ctl(&["console", "acme", "--print"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_owned();
    assert!(url.starts_with(&format!("{signin}?Action=login&")), "{url}");
    assert_eq!(
        query_value(&url, "SigninToken").as_deref(),
        Some(SIGNIN_TOKEN)
    );
    assert_eq!(
        query_value(&url, "Destination").as_deref(),
        Some("https://console.aws.amazon.com/console/home?region=eu-west-1")
    );
    let asked = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        query_value(&asked[0], "Action").as_deref(),
        Some("getSigninToken")
    );
    let session: Value =
        serde_json::from_str(&query_value(&asked[0], "Session").expect("Session")).expect("json");
    assert_eq!(session["sessionId"], "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(session["sessionKey"], "wJalrXUtnFEMI-SECRET-acme");
    assert_eq!(session["sessionToken"], "SESSION-TOKEN-acme-0123456789");

    // --json with --print; without --print it goes to the browser, not stdout.
    let json = sb.json(&["console", "acme", "--print"]);
    assert!(
        json["url"]
            .as_str()
            .is_some_and(|u| u.contains(SIGNIN_TOKEN))
    );
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0)], false);
    let out = sb.ctl(&["console", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(SIGNIN_TOKEN) && !stderr(&out).contains(SIGNIN_TOKEN));
    let calls = rec.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("xdg-open ") && calls[0].contains(SIGNIN_TOKEN));
    // No browser could open: the error says so without the URL (a bearer secret).
    rec.set("xdg-open", 3);
    let out = sb.ctl(&["console", "acme"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot open a browser"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains(SIGNIN_TOKEN) && !stderr(&out).contains(SIGNIN_TOKEN));

    // Never in the log (the sandbox scans it for the keys on drop).
    let log = sb.log_text();
    assert!(!log.contains(SIGNIN_TOKEN) && !log.contains("SESSION-TOKEN-acme"));
}

#[test]
fn console_refuses_long_lived_keys_localstack_and_says_what_failed() {
    let (signin, seen) = signin_server(200);
    let sb = sandbox(&signin);
    let out = sb.ctl(&["console", "keys", "--print"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("long-lived"), "{}", stderr(&out));
    let out = sb.ctl(&["console", "local", "--print"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not AWS"), "{}", stderr(&out));
    assert!(seen.lock().unwrap_or_else(|e| e.into_inner()).is_empty());

    // A refusing federation endpoint: the status, never the session.
    let (refusing, _) = signin_server(400);
    let sb = sandbox(&refusing);
    let out = sb.ctl(&["console", "acme", "--print"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("HTTP 400"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("SESSION-TOKEN") && !stderr(&out).contains("SECRET"));
}
