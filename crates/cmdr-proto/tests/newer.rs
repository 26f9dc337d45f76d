//! What a newer daemon adds within the protocol version, as an older client reads it, and
//! the closed names' JSON spelling (split from `golden.rs`).

use cmdr_proto::*;

/// A newer daemon's event type, its account state and its error code reach an older
/// client as `Unknown`, in both codecs, and the messages after them still decode.
#[test]
fn an_older_client_reads_what_a_newer_daemon_adds() {
    // Binary: a known event with its type index replaced by one this build lacks; its
    // fields stay in the frame. Layout: length, ServerMessage::Event (3), `at` (length
    // byte + 20 bytes), then the event type index.
    let at = "2026-12-02T10:00:00Z";
    let known = ServerMessage::Event(Event {
        at: at.into(),
        kind: EventKind::TokenAccepted {
            account: "acme".into(),
            profile: "acme".into(),
        },
    });
    let mut newer = encode(Codec::Binary, &known).expect("encode");
    assert_eq!(newer[4..6], [3, 20]);
    let index = 4 + 2 + at.len();
    assert!(newer[index] < 20, "a known type index");
    newer[index] = 100;
    let mut decoder = FrameDecoder::new(Codec::Binary);
    decoder.extend(&newer);
    decoder.extend(&encode(Codec::Binary, &known).expect("encode"));
    let first: ServerMessage = decoder.decode().expect("decodes").expect("whole frame");
    assert_eq!(
        first,
        ServerMessage::Event(Event {
            at: at.into(),
            kind: EventKind::Unknown
        })
    );
    let second: ServerMessage = decoder.decode().expect("decodes").expect("whole frame");
    assert_eq!(second, known);

    // JSON lines: a new type with fields, a new state and a new error code.
    let lines = concat!(
        r#"{"event":{"type":"token_rotated","at":"t","account":"acme","how":{"deep":[1,2]}}}"#,
        "\n",
        r#"{"event":{"type":"daemon_stopping","at":"t"}}"#,
        "\n",
        r#"{"response":{"id":1,"outcome":{"err":{"code":"rate_limited","message":"later"}}}}"#,
        "\n",
        r#"{"response":{"id":2,"outcome":{"ok":{"status":{"daemon_version":"9","protocol":1,"pid":1,"started_at":"t","uptime_secs":1,"socket":"s","socket_note":null,"files":[{"kind":"sso_device","path":"p","exists":true,"health":"degraded","error_line":null,"error":null}],"profiles":0,"accounts":[{"state":"suspended","count":1}],"changes_while_down":[],"subscribers":0,"endpoint":null}}}}}"#,
        "\n",
    );
    let mut decoder = FrameDecoder::new(Codec::JsonLines);
    decoder.extend(lines.as_bytes());
    let mut got: Vec<ServerMessage> = Vec::new();
    while let Some(message) = decoder.decode().expect("decodes") {
        got.push(message);
    }
    assert_eq!(got.len(), 4);
    assert!(matches!(
        &got[0],
        ServerMessage::Event(Event {
            kind: EventKind::Unknown,
            ..
        })
    ));
    assert!(matches!(
        &got[1],
        ServerMessage::Event(Event {
            kind: EventKind::DaemonStopping,
            ..
        })
    ));
    assert!(matches!(
        &got[2],
        ServerMessage::Response {
            outcome: Outcome::Err(ErrorReply {
                code: ErrorCode::Unknown,
                ..
            }),
            ..
        }
    ));
    let ServerMessage::Response {
        outcome: Outcome::Ok(Response::Status(status)),
        ..
    } = &got[3]
    else {
        panic!("{:?}", got[3]);
    };
    assert_eq!(status.files[0].kind, FileKind::Unknown);
    assert_eq!(status.files[0].health, FileHealth::Unknown);
    assert_eq!(status.accounts[0].state, AccountState::Unknown);
}

/// The enums serialise to exactly the names JSON carried when they were strings.
#[test]
fn closed_names_keep_their_json_spelling() {
    fn json<T: serde::Serialize>(value: T) -> String {
        serde_json::to_string(&value).expect("json")
    }
    assert_eq!(json(AccountState::Misconfigured), r#""misconfigured""#);
    assert_eq!(json(TargetKind::Localstack), r#""localstack""#);
    assert_eq!(json(OnChange::Auto), r#""auto""#);
    assert_eq!(json(FileKind::SsoCache), r#""sso_cache""#);
    assert_eq!(json(FileHealth::Error), r#""error""#);
    assert_eq!(json(ProfileKind::AssumeRole), r#""assume-role""#);
    assert_eq!(
        json(ProfileKind::CredentialProcess),
        r#""credential-process""#
    );
    assert_eq!(ProfileKind::WebIdentity.label(), "web-identity");
    assert_eq!(json(ProfileKind::Login), r#""login""#);
    assert_eq!(
        serde_json::from_str::<ProfileKind>(r#""quantum""#).expect("decodes"),
        ProfileKind::Unknown
    );
}
