//! The wire as other clients see it: JSON lines from a raw socket (what an editor plugin
//! does), bad frames, a subscriber that never reads, a version mismatch.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::sandbox::{Sandbox, creds};

fn json_client(sb: &Sandbox) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let reader = BufReader::new(stream.try_clone().expect("clone"));
    (stream, reader)
}

fn send(stream: &mut UnixStream, value: Value) {
    let mut line = serde_json::to_vec(&value).expect("json");
    line.push(b'\n');
    stream.write_all(&line).expect("write");
}

fn recv(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
}

fn hello() -> Value {
    json!({"hello": {"protocol": 1, "client": "test-plugin", "client_version": "0.0.1"}})
}

#[test]
fn json_lines_plugin_session() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let (mut stream, mut reader) = json_client(&sb);
    send(&mut stream, hello());
    let welcome = recv(&mut reader);
    assert_eq!(welcome["welcome"]["protocol"], 1, "{welcome}");
    send(
        &mut stream,
        json!({"request": {"id": 1, "request": "subscribe"}}),
    );
    assert_eq!(
        recv(&mut reader),
        json!({"response": {"id": 1, "outcome": {"ok": "subscribed"}}})
    );
    send(
        &mut stream,
        json!({"request": {"id": 2, "request": "list_accounts"}}),
    );
    let list = recv(&mut reader);
    assert_eq!(list["response"]["id"], 2);
    assert_eq!(
        list["response"]["outcome"]["ok"]["accounts"][0]["name"],
        "acme"
    );

    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    let event = loop {
        let message = recv(&mut reader);
        if message["event"]["type"] == "token_changed" {
            break message["event"].clone();
        }
    };
    assert_eq!(event["account"], "acme");

    send(
        &mut stream,
        json!({"request": {"id": 3, "request": {"accept": {"name": "acme"}}}}),
    );
    let reply = loop {
        let message = recv(&mut reader);
        if message.get("response").is_some() {
            break message;
        }
    };
    assert_eq!(
        reply["response"]["outcome"]["ok"]["account"]["state"], "ok",
        "{reply}"
    );

    send(
        &mut stream,
        json!({"request": {"id": 4, "request": {"show_account": {"name": "nope"}}}}),
    );
    let reply = loop {
        let message = recv(&mut reader);
        if message.get("response").is_some() {
            break message;
        }
    };
    assert_eq!(reply["response"]["outcome"]["err"]["code"], "not_found");
}

#[test]
fn version_mismatch_is_refused_clearly() {
    let mut sb = Sandbox::new();
    sb.start();
    let (mut stream, mut reader) = json_client(&sb);
    send(
        &mut stream,
        json!({"hello": {"protocol": 99, "client": "future", "client_version": "9.0"}}),
    );
    let refused = recv(&mut reader);
    let message = refused["refused"]["message"].as_str().expect("refused");
    assert!(
        message.contains("protocol") && message.contains("99"),
        "{message}"
    );
}

#[test]
fn bad_frames_close_only_that_connection() {
    let mut sb = Sandbox::new();
    sb.start();
    let cases: Vec<Vec<u8>> = vec![
        // A 4 GiB length prefix: refused before allocating.
        vec![0xff, 0xff, 0xff, 0xfe, 1, 2, 3],
        // Garbage after a valid length.
        vec![0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
        // Not JSON on the JSON codec.
        b"{not json at all\n".to_vec(),
        // A request before hello.
        b"{\"request\":{\"id\":1,\"request\":\"status\"}}\n".to_vec(),
    ];
    for bytes in cases {
        let mut stream = UnixStream::connect(sb.socket()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.write_all(&bytes).expect("write");
        let mut rest = Vec::new();
        // The daemon closes the connection (possibly after a refusal).
        let _ = stream.read_to_end(&mut rest);
        assert!(
            sb.ctl(&["status"]).status.success(),
            "daemon must keep serving"
        );
    }
    // An oversized JSON line is cut off at the cap.
    let mut stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let big = vec![b'{'; (1 << 20) + 4096];
    let _ = stream.write_all(&big);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(sb.ctl(&["status"]).status.success());
}

#[test]
fn silent_connection_is_closed_after_the_hello_timeout() {
    let mut sb = Sandbox::new();
    sb.start();
    let mut stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    // EOF (0) once the daemon gives up on the handshake.
    assert_eq!(stream.read(&mut buf).expect("read"), 0);
}

#[test]
fn subscriber_that_never_reads_lags_and_does_not_stall_others() {
    let many = |round: usize| -> String {
        (0..400)
            .map(|p| creds(&format!("p{p}"), &format!("T{round}-{p}")))
            .collect()
    };
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&many(0));
    sb.start();
    // Subscribe on a raw connection, then stop reading.
    let (mut stuck, mut reader) = json_client(&sb);
    send(&mut stuck, hello());
    recv(&mut reader);
    send(
        &mut stuck,
        json!({"request": {"id": 1, "request": "subscribe"}}),
    );
    recv(&mut reader);

    let mut watch = sb.watch();
    for round in 1..=8 {
        sb.write_credentials(&many(round));
        // Each round reaches the healthy subscriber: 400 profile changes.
        watch.wait_for("last profile", |e| {
            e["type"] == "profile_changed" && e["profile"] == "p399"
        });
    }
    assert!(sb.ctl(&["status"]).status.success());

    // The stuck subscriber missed events: it is told so (or was dropped).
    let lagged;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                lagged = true; // dropped: also allowed
                break;
            }
            Err(err) => panic!("the stuck subscriber got neither `lagged` nor EOF: {err}"),
            Ok(_) => {
                if line.contains("\"lagged\"") {
                    lagged = true;
                    break;
                }
            }
        }
    }
    assert!(
        lagged,
        "a subscriber that fell behind must get `lagged` or be dropped"
    );
    drop(stuck);
}
