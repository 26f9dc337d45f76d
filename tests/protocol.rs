//! The wire as other clients see it: JSON lines from a raw socket (what an editor plugin
//! does), bad frames, a subscriber that never reads, a version mismatch.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use cmdr_proto::{ClientMessage, Outcome, Request, Response, ServerMessage};

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

/// A daemon newer than this cmdrctl sends an event type cmdrctl does not know:
/// `watch --json` skips it and goes on (the contract: clients ignore unknown types). The
/// "newer daemon" is this test on the socket, speaking the binary codec; its event is a
/// real one with the type index changed to one this build lacks, fields left in place.
#[test]
fn watch_ignores_an_event_type_from_a_newer_daemon() {
    use cmdr_proto::{Codec, Event, EventKind, encode};
    let sb = Sandbox::new();
    let listener = fake_daemon(&sb);
    let watch = sb
        .command("cmdrctl")
        .args(["watch", "--once", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cmdrctl watch");
    let mut peer = Peer::greet(&listener, &[]);
    assert_eq!(peer.answer(Response::Subscribed), Request::Subscribe);
    let frame = |message: &ServerMessage| encode(Codec::Binary, message).expect("encode");
    let at = "2026-12-02T10:00:00Z";
    let event = |kind| {
        ServerMessage::Event(Event {
            at: at.into(),
            kind,
        })
    };
    let mut newer = frame(&event(EventKind::TokenAccepted {
        account: "future".into(),
        profile: "future".into(),
    }));
    // Length, ServerMessage::Event, the `at` string (length byte + bytes), the type index.
    newer[4 + 2 + at.len()] = 120;
    peer.stream.write_all(&newer).expect("newer event");
    peer.send(&event(EventKind::TokenAccepted {
        account: "acme".into(),
        profile: "acme".into(),
    }));
    peer.send(&event(EventKind::DaemonStopping));
    let out = watch.wait_with_output().expect("watch output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        ["token_accepted", "daemon_stopping"],
        "stdout {stdout}\nstderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines[0]["account"], "acme");
}

/// This test as the daemon on the sandbox's socket (a daemon of another version).
pub fn fake_daemon(sb: &Sandbox) -> std::os::unix::net::UnixListener {
    let socket = sb.socket();
    let dir = socket.parent().expect("dir");
    std::fs::create_dir_all(dir).expect("socket dir");
    crate::sandbox::set_mode(dir, 0o700);
    std::os::unix::net::UnixListener::bind(&socket).expect("bind")
}

/// One client of the fake daemon, in the binary codec.
pub struct Peer {
    pub stream: UnixStream,
    decoder: cmdr_proto::FrameDecoder,
}

impl Peer {
    /// Accepts the next client, reads its hello and welcomes it with `features`.
    pub fn greet(listener: &std::os::unix::net::UnixListener, features: &[&str]) -> Peer {
        let (stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut peer = Peer {
            stream,
            decoder: cmdr_proto::FrameDecoder::new(cmdr_proto::Codec::Binary),
        };
        assert!(matches!(peer.next(), ClientMessage::Hello(_)));
        peer.send(&ServerMessage::Welcome(cmdr_proto::Welcome {
            protocol: cmdr_proto::PROTOCOL_VERSION,
            daemon_version: "0.0.9".into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        }));
        peer
    }

    pub fn next(&mut self) -> ClientMessage {
        loop {
            if let Some(message) = self.decoder.decode().expect("client frame") {
                return message;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "cmdrctl closed the connection");
            self.decoder.extend(&chunk[..n]);
        }
    }

    pub fn send(&mut self, message: &ServerMessage) {
        let frame = cmdr_proto::encode(cmdr_proto::Codec::Binary, message).expect("encode");
        self.stream.write_all(&frame).expect("write");
    }

    /// Reads a request and answers it with `response`; returns the request.
    pub fn answer(&mut self, response: Response) -> Request {
        let ClientMessage::Request { id, request } = self.next() else {
            panic!("expected a request");
        };
        self.send(&ServerMessage::Response {
            id,
            outcome: Outcome::Ok(response),
        });
        request
    }
}

fn profile(name: &str) -> cmdr_proto::ProfileInfo {
    cmdr_proto::ProfileInfo {
        name: name.into(),
        kind: cmdr_proto::ProfileKind::Static,
        region: None,
        sources: vec!["config".into()],
        access_key_id: None,
        fingerprint: None,
        expires_at: None,
        expiry_source: None,
    }
}

/// `cmdrctl profiles` against a daemon without the `pages` feature (an older one) asks
/// for the list in one answer; against one with it, a page at a time; and a daemon whose
/// cursor does not advance is an error, not an endless loop.
#[test]
fn profiles_from_older_and_paging_daemons() {
    use cmdr_proto::{Page, PageRequest};
    let sb = Sandbox::new();
    let listener = fake_daemon(&sb);
    let listed = |ctl: std::process::Child| {
        let out = ctl.wait_with_output().expect("cmdrctl");
        let names: Vec<String> = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        (out.status.code(), names, crate::sandbox::stderr(&out))
    };
    let spawn = || {
        sb.command("cmdrctl")
            .args(["profiles", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cmdrctl profiles")
    };

    let ctl = spawn();
    let mut older = Peer::greet(&listener, &["json-lines", "events"]);
    let asked = older.answer(Response::Profiles(vec![profile("old")]));
    assert_eq!(asked, Request::Profiles);
    assert_eq!(listed(ctl).1, ["old"]);

    let ctl = spawn();
    let mut paging = Peer::greet(&listener, &["json-lines", "events", "pages"]);
    let first = paging.answer(Response::ProfilesPage(Page {
        items: vec![profile("a")],
        next: Some("a".into()),
    }));
    let second = paging.answer(Response::ProfilesPage(Page {
        items: vec![profile("b")],
        next: None,
    }));
    assert!(matches!(
        first,
        Request::ProfilesPage(PageRequest { after: None, .. })
    ));
    assert!(
        matches!(&second, Request::ProfilesPage(PageRequest { after: Some(a), .. }) if a == "a"),
        "{second:?}"
    );
    assert_eq!(listed(ctl).1, ["a", "b"]);

    let ctl = spawn();
    let mut stuck = Peer::greet(&listener, &["pages"]);
    for _ in 0..2 {
        stuck.answer(Response::ProfilesPage(Page {
            items: vec![profile("a")],
            next: Some("a".into()),
        }));
    }
    let (code, names, stderr) = listed(ctl);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(names.is_empty());
    assert!(stderr.contains("cursor went backwards"), "{stderr}");
}

/// A subscribed client is never starved by its own request: while its `validate` waits on
/// a target that never answers, a file change still reaches it as `token_changed`, and the
/// validation's answer (a timeout) comes after, under its own id.
#[test]
fn a_slow_request_does_not_hold_up_the_connections_events() {
    // Accepts connections and never answers: an STS that hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = format!("http://{}", silent.local_addr().expect("addr"));
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\nvalidate_timeout = \"20s\"\n");
    sb.start();
    sb.add_account("acme", &["--endpoint", &target, "--region", "us-east-1"]);
    let (mut stream, mut reader) = json_client(&sb);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    send(&mut stream, hello());
    recv(&mut reader);
    send(
        &mut stream,
        json!({"request": {"id": 1, "request": "subscribe"}}),
    );
    recv(&mut reader);
    send(
        &mut stream,
        json!({"request": {"id": 2, "request": {"validate": {"name": "acme"}}}}),
    );
    // Let the validation reach the silent target, then change the token.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (_conn, _) = loop {
        silent.set_nonblocking(true).expect("nonblocking");
        match silent.accept() {
            Ok(pair) => break pair,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("the validation never reached its target: {err}"),
        }
    };
    sb.write_credentials(&crate::sandbox::creds("acme", "TOKEN-TWO"));
    let first = loop {
        let message = recv(&mut reader);
        if message
            .get("event")
            .is_some_and(|e| e["type"] == "profile_changed")
        {
            continue;
        }
        break message;
    };
    assert_eq!(first["event"]["type"], "token_changed", "{first}");
    // The validation's answer still comes, under its id (after its own event).
    let answer = loop {
        let message = recv(&mut reader);
        if message.get("response").is_some() {
            break message;
        }
    };
    assert_eq!(answer["response"]["id"], 2, "{answer}");
}
