//! Round trips of every message variant in both codecs, and golden encodings that must keep
//! decoding for as long as `PROTOCOL_VERSION` stays the same.

use cmdr_proto::*;

fn account_info() -> AccountInfo {
    AccountInfo {
        name: "acme".into(),
        profile: "acme".into(),
        region: Some("eu-west-1".into()),
        target: TargetKind::Localstack,
        endpoint: Some("http://localhost:4566".into()),
        on_change: OnChange::Ask,
        state: AccountState::Changed,
        fingerprint: Some("0123456789abcdef".into()),
        accepted_fingerprint: None,
        accepted_at: None,
        expires_at: Some("2026-11-29T10:00:00Z".into()),
        expiry_source: Some("x_security_token_expires".into()),
        account_id: None,
        portal: Some("https://acme.awsapps.com/start".into()),
        profile_kind: Some(ProfileKind::Session),
    }
}

fn client_messages() -> Vec<ClientMessage> {
    let spec = AccountSpec {
        name: "acme".into(),
        profile: "acme".into(),
        region: None,
        target: TargetSpec {
            target: TargetKind::Aws,
            endpoint: None,
        },
        on_change: OnChange::Auto,
        portal: Some("https://acme.awsapps.com/start".into()),
    };
    let requests = vec![
        Request::Status,
        Request::Profiles,
        Request::ListAccounts,
        Request::ShowAccount { name: "a".into() },
        Request::AddAccount(spec),
        Request::EditAccount {
            name: "a".into(),
            edit: AccountEdit {
                region: Some("us-east-1".into()),
                ..AccountEdit::default()
            },
        },
        Request::EditAccount {
            name: "a".into(),
            edit: AccountEdit {
                clear_portal: true,
                ..AccountEdit::default()
            },
        },
        Request::RemoveAccount { name: "a".into() },
        Request::Accept { name: "a".into() },
        Request::Subscribe,
        Request::Unsubscribe,
        Request::Validate { name: "a".into() },
        Request::ProfilesPage(PageRequest {
            after: None,
            limit: 1000,
        }),
        Request::AccountsPage(PageRequest {
            after: Some("acme".into()),
            limit: 1,
        }),
        Request::AcceptToken { name: "a".into() },
        Request::ChildEnv { name: "a".into() },
        Request::ConsoleUrl { name: "a".into() },
        Request::ContainerEnv { name: "a".into() },
        Request::RenewalsPage(PageRequest {
            after: None,
            limit: 1000,
        }),
        Request::RenewNow { name: "a".into() },
        Request::RenewalPlans(PageRequest {
            after: Some("acme".into()),
            limit: 1,
        }),
    ];
    let mut out = vec![ClientMessage::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        client: "test".into(),
        client_version: "0.1.0".into(),
    })];
    out.extend(
        requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| ClientMessage::Request {
                id: i as u64,
                request,
            }),
    );
    out
}

fn event_kinds() -> Vec<EventKind> {
    let a = || "acme".to_string();
    vec![
        EventKind::ProfileAdded { profile: a() },
        EventKind::ProfileRemoved { profile: a() },
        EventKind::ProfileChanged { profile: a() },
        EventKind::TokenChanged {
            account: a(),
            profile: a(),
            old_fingerprint: Some("aaaa".into()),
            new_fingerprint: Some("bbbb".into()),
            expires_at: None,
            expiry_source: None,
        },
        EventKind::TokenAccepted {
            account: a(),
            profile: a(),
        },
        EventKind::ExpiringSoon {
            account: a(),
            profile: a(),
            expires_at: "2026-11-29T10:00:00Z".into(),
        },
        EventKind::Expired {
            account: a(),
            profile: a(),
            expires_at: "2026-11-29T10:00:00Z".into(),
        },
        EventKind::Validated {
            account: a(),
            profile: a(),
            account_id: "123456789012".into(),
            arn: "arn:aws:sts::123456789012:user/moto".into(),
        },
        EventKind::ValidationFailed {
            account: a(),
            profile: a(),
            error: "expired".into(),
        },
        EventKind::IdentityChanged {
            account: a(),
            profile: a(),
            old_account_id: "1".into(),
            new_account_id: "2".into(),
        },
        EventKind::FileError {
            path: "/h/.aws/credentials".into(),
            line: Some(3),
            message: "bad".into(),
        },
        EventKind::FileRecovered {
            path: "/h/.aws/credentials".into(),
        },
        EventKind::AccountAdded {
            account: a(),
            profile: a(),
        },
        EventKind::AccountRemoved {
            account: a(),
            profile: a(),
        },
        EventKind::AccountUpdated {
            account: a(),
            profile: a(),
        },
        EventKind::Lagged { missed: 7 },
        EventKind::DaemonStopping,
        EventKind::SignedIn {
            portal: "https://acme.awsapps.com/start".into(),
            session: "acme".into(),
        },
        EventKind::SigninRequired {
            portal: "https://acme.awsapps.com/start".into(),
            session: "acme".into(),
            reason: "the refresh was refused".into(),
        },
        EventKind::TokenRenewed {
            account: a(),
            profile: a(),
            expires_at: Some("2026-11-29T10:00:00Z".into()),
        },
        EventKind::EndpointMoved {
            old_url: "http://127.0.0.1:41001/v1/credentials/".into(),
            new_url: "http://127.0.0.1:41002/v1/credentials/".into(),
        },
    ]
}

fn server_messages() -> Vec<ServerMessage> {
    let responses = vec![
        Response::Status(StatusInfo {
            daemon_version: "0.1.0".into(),
            protocol: PROTOCOL_VERSION,
            pid: 42,
            started_at: "2026-11-29T09:00:00Z".into(),
            uptime_secs: 5,
            socket: "/run/user/1000/cmdr/cmdrd.sock".into(),
            socket_note: None,
            files: vec![FileStatus {
                kind: FileKind::Credentials,
                path: "/h/.aws/credentials".into(),
                exists: true,
                health: FileHealth::Error,
                error_line: Some(3),
                error: Some("bad".into()),
            }],
            profiles: 2,
            accounts: vec![StateCount {
                state: AccountState::Ok,
                count: 1,
            }],
            changes_while_down: vec!["token for `acme` changed".into()],
            subscribers: 0,
            endpoint: None,
            warnings: vec!["config file: [default] has aws_access_key_id".into()],
            portals: vec![PortalInfo {
                session: "acme".into(),
                start_url: "https://acme.awsapps.com/start".into(),
                region: "eu-west-1".into(),
                signed_in_until: Some("2026-11-29T17:00:00Z".into()),
                refreshable: true,
                state: "signed_in".into(),
                reason: None,
            }],
        }),
        Response::Profiles(vec![ProfileInfo {
            name: "acme".into(),
            kind: ProfileKind::Session,
            region: None,
            sources: vec!["credentials".into()],
            access_key_id: Some("AKIA…MPLE".into()),
            fingerprint: Some("0123456789abcdef".into()),
            expires_at: None,
            expiry_source: None,
        }]),
        Response::Accounts(vec![account_info()]),
        Response::Account(account_info()),
        Response::AccountsPage(Page {
            items: vec![account_info()],
            next: Some("acme".into()),
        }),
        Response::Subscribed,
        Response::Done,
        Response::Validated(Identity {
            account_id: "123456789012".into(),
            arn: "arn:aws:sts::123456789012:user/moto".into(),
            user_id: "AIDAEXAMPLE".into(),
        }),
        Response::Accepted(Accepted {
            account: account_info(),
            changed: true,
        }),
        Response::ChildEnv(ChildEnv {
            account: "acme".into(),
            url: "http://127.0.0.1:4144/v1/credentials/acme".into(),
            token_file: b"/run/user/1/cmdr/cmdrd.endpoint/4144/acme".to_vec(),
            config_file: b"/run/user/1/cmdr/cmdrd.aws/config".to_vec(),
            credentials_file: b"/run/user/1/cmdr/cmdrd.aws/credentials".to_vec(),
            boto_config: b"/run/user/1/cmdr/cmdrd.aws/boto".to_vec(),
            user_config_file: vec![0xff, b'/'],
            user_credentials_file: b"/home/a/.aws/credentials".to_vec(),
            region: Some("eu-west-1".into()),
            endpoint: None,
            expires_at: None,
        }),
        Response::ConsoleUrl(ConsoleUrl {
            url: "https://signin.aws.amazon.com/federation?Action=login".into(),
        }),
        Response::RenewalsPage(Page {
            items: vec![RenewalFacts {
                account: "acme".into(),
                auto_renew: true,
                session: Some("acme".into()),
                signin_expires_at: Some("2026-11-29T18:00:00Z".into()),
            }],
            next: None,
        }),
        Response::Renewed(Renewed {
            account: account_info(),
            expires_at: Some("2026-11-29T10:00:00Z".into()),
        }),
        Response::RenewalPlans(Page {
            items: vec![RenewalPlan {
                account: "acme".into(),
                auto_renew: true,
                session: Some("acme".into()),
                signin_expires_at: None,
                renews_at: None,
            }],
            next: None,
        }),
    ];
    let mut out = vec![
        ServerMessage::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            daemon_version: "0.1.0".into(),
            features: vec!["json-lines".into()],
        }),
        ServerMessage::Refused {
            message: "no".into(),
        },
        ServerMessage::Response {
            id: 9,
            outcome: Outcome::Err(ErrorReply {
                code: ErrorCode::NotFound,
                message: "no account".into(),
            }),
        },
    ];
    out.extend(responses.into_iter().map(|r| ServerMessage::Response {
        id: 1,
        outcome: Outcome::Ok(r),
    }));
    out.extend(event_kinds().into_iter().map(|kind| {
        ServerMessage::Event(Event {
            at: "2026-11-29T09:00:00Z".into(),
            kind,
        })
    }));
    out
}

fn round_trip<T>(messages: Vec<T>)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for codec in [Codec::Binary, Codec::JsonLines] {
        let mut decoder = FrameDecoder::new(codec);
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend(encode(codec, m).expect("encode"));
        }
        // Feed byte by byte: every prefix must be "need more", never an error.
        let mut decoded = Vec::new();
        for byte in stream {
            decoder.extend(&[byte]);
            while let Some(m) = decoder.decode::<T>().expect("decode") {
                decoded.push(m);
            }
        }
        assert_eq!(decoded, messages, "{codec:?}");
    }
}

#[test]
fn every_variant_round_trips() {
    round_trip(client_messages());
    round_trip(server_messages());
}

#[test]
fn codec_is_detected_from_the_first_byte() {
    let hello = &client_messages()[0];
    for codec in [Codec::Binary, Codec::JsonLines] {
        let mut decoder = FrameDecoder::detecting();
        decoder.extend(&encode(codec, hello).expect("encode"));
        assert_eq!(decoder.codec(), Some(codec));
        assert_eq!(
            decoder.decode::<ClientMessage>().expect("decode").as_ref(),
            Some(hello)
        );
    }
}

#[test]
fn oversized_frames_are_refused_before_allocating() {
    let mut decoder = FrameDecoder::new(Codec::Binary);
    decoder.extend(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decoder.decode::<ClientMessage>(),
        Err(ProtoError::TooLarge { .. })
    ));

    let mut decoder = FrameDecoder::new(Codec::JsonLines);
    decoder.extend(&vec![b' '; MAX_FRAME_LEN + 1]);
    assert!(matches!(
        decoder.decode::<ClientMessage>(),
        Err(ProtoError::TooLarge { .. })
    ));
}

/// What is sent stops encoding at the limit (a message too large costs no more memory
/// than the limit); a frame exactly at the limit is sent and read back.
#[test]
fn encoding_stops_at_the_limit() {
    let message = |len: usize| ServerMessage::Refused {
        message: "x".repeat(len),
    };
    for codec in [Codec::Binary, Codec::JsonLines] {
        let over = encode_within(codec, &message(10 << 20), 1 << 20);
        assert!(
            matches!(over, Err(ProtoError::TooLargeToSend { max }) if max == 1 << 20),
            "{over:?}"
        );
        let body = |len| {
            let frame = encode_within(codec, &message(len), usize::MAX).expect("encode");
            frame.len() - if codec == Codec::Binary { 4 } else { 1 }
        };
        let exact = 1000 - (body(1000) - 1000);
        assert_eq!(body(exact), 1000);
        let frame = encode_within(codec, &message(exact), 1000).expect("at the limit");
        assert!(encode_within(codec, &message(exact + 1), 1000).is_err());
        let mut decoder = FrameDecoder::with_max(codec, 1000);
        decoder.extend(&frame);
        let back: ServerMessage = decoder.decode().expect("decodes").expect("complete");
        assert_eq!(back, message(exact));
    }
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let mut decoder = FrameDecoder::new(Codec::Binary);
    decoder.extend(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert!(matches!(
        decoder.decode::<ClientMessage>(),
        Err(ProtoError::Malformed(_))
    ));
    let mut decoder = FrameDecoder::new(Codec::JsonLines);
    decoder.extend(b"{\"hello\": 12}\n");
    assert!(matches!(
        decoder.decode::<ClientMessage>(),
        Err(ProtoError::Malformed(_))
    ));
}

/// Every event type is round-tripped above (`event_kinds`): the list follows the enum's
/// golden names (`EVENT_TYPES`, checked against the enum in `tests/events.rs`).
#[test]
fn every_event_type_round_trips() {
    let names: Vec<String> = event_kinds().iter().map(EventKind::type_name).collect();
    assert_eq!(names, cmdr_proto::EVENT_TYPES);
}

/// Frozen encodings. If one of these fails, the change broke compatibility: bump
/// `PROTOCOL_VERSION` or make the change additive.
#[test]
fn golden_encodings_keep_decoding() {
    let cases: &[(&str, &str)] = &[
        ("hello", GOLDEN_HELLO_BIN),
        ("accept", GOLDEN_ACCEPT_BIN),
        ("event", GOLDEN_EVENT_BIN),
        ("profiles page", GOLDEN_PROFILES_PAGE_BIN),
    ];
    for (name, hex) in cases {
        let bytes = unhex(hex);
        let mut decoder = FrameDecoder::detecting();
        decoder.extend(&bytes);
        match *name {
            "event" => {
                let m: ServerMessage = decoder.decode().expect("decodes").expect("complete");
                assert!(
                    matches!(
                        m,
                        ServerMessage::Event(Event {
                            kind: EventKind::TokenAccepted { .. },
                            ..
                        })
                    ),
                    "{m:?}"
                );
                assert_eq!(encode(Codec::Binary, &m).expect("encode"), bytes, "{name}");
            }
            _ => {
                let m: ClientMessage = decoder.decode().expect("decodes").expect("complete");
                assert_eq!(encode(Codec::Binary, &m).expect("encode"), bytes, "{name}");
            }
        }
    }
    for (json, is_client) in [
        (GOLDEN_HELLO_JSON, true),
        (GOLDEN_ACCEPT_JSON, true),
        (GOLDEN_STATUS_JSON, true),
        (GOLDEN_EVENT_JSON, false),
        (GOLDEN_RESPONSE_JSON, false),
        (GOLDEN_PROFILES_PAGE_JSON, true),
        (GOLDEN_PAGE_JSON, false),
        (GOLDEN_SIGNIN_REQUIRED_JSON, false),
        (GOLDEN_TOKEN_RENEWED_JSON, false),
        (GOLDEN_ENDPOINT_MOVED_JSON, false),
    ] {
        let mut decoder = FrameDecoder::detecting();
        decoder.extend(json.as_bytes());
        decoder.extend(b"\n");
        let reencoded = if is_client {
            let m: ClientMessage = decoder.decode().expect("decodes").expect("complete");
            encode(Codec::JsonLines, &m).expect("encode")
        } else {
            let m: ServerMessage = decoder.decode().expect("decodes").expect("complete");
            encode(Codec::JsonLines, &m).expect("encode")
        };
        assert_eq!(String::from_utf8(reencoded).expect("utf8").trim_end(), json);
    }
}

/// JSON written before `portal`/`profile_kind` existed (an editor plugin's request, an old
/// daemon's answer) still decodes: the new fields are optional.
#[test]
fn json_without_the_portal_fields_decodes() {
    let add = r#"{"request":{"id":2,"request":{"add_account":{"name":"acme","profile":"acme","region":null,"target":{"target":"aws","endpoint":null},"on_change":"ask"}}}}"#;
    let edit = r#"{"request":{"id":3,"request":{"edit_account":{"name":"acme","edit":{"profile":null,"region":null,"clear_region":false,"target":null,"on_change":"auto"}}}}}"#;
    for (json, want) in [(add, "add"), (edit, "edit")] {
        let mut decoder = FrameDecoder::detecting();
        decoder.extend(json.as_bytes());
        decoder.extend(b"\n");
        let m: ClientMessage = decoder.decode().expect("decodes").expect("complete");
        match (m, want) {
            (
                ClientMessage::Request {
                    request: Request::AddAccount(spec),
                    ..
                },
                "add",
            ) => assert_eq!(spec.portal, None),
            (
                ClientMessage::Request {
                    request: Request::EditAccount { edit, .. },
                    ..
                },
                "edit",
            ) => assert!(edit.portal.is_none() && !edit.clear_portal),
            (other, _) => panic!("{other:?}"),
        }
    }
    let info = r#"{"name":"acme","profile":"acme","region":null,"target":"aws","endpoint":null,"on_change":"ask","state":"ok","fingerprint":null,"accepted_fingerprint":null,"accepted_at":null,"expires_at":null,"expiry_source":null,"account_id":null}"#;
    let info: AccountInfo = serde_json::from_str(info).expect("decodes");
    assert_eq!((info.portal, info.profile_kind), (None, None));
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

const GOLDEN_HELLO_BIN: &str = "0000000d0001047465737405302e312e30";
const GOLDEN_ACCEPT_BIN: &str = "000000080107070461636d65";
const GOLDEN_EVENT_BIN: &str =
    "000000210314323032362d31312d32395430393a30303a30305a040461636d650461636d65";
const GOLDEN_HELLO_JSON: &str =
    r#"{"hello":{"protocol":1,"client":"test","client_version":"0.1.0"}}"#;
const GOLDEN_ACCEPT_JSON: &str = r#"{"request":{"id":7,"request":{"accept":{"name":"acme"}}}}"#;
const GOLDEN_STATUS_JSON: &str = r#"{"request":{"id":1,"request":"status"}}"#;
const GOLDEN_EVENT_JSON: &str = r#"{"event":{"type":"token_accepted","at":"2026-11-29T09:00:00Z","account":"acme","profile":"acme"}}"#;
const GOLDEN_SIGNIN_REQUIRED_JSON: &str = r#"{"event":{"type":"signin_required","at":"2026-11-29T09:00:00Z","portal":"https://acme.awsapps.com/start","session":"acme","reason":"the portal refused the refresh"}}"#;
const GOLDEN_TOKEN_RENEWED_JSON: &str = r#"{"event":{"type":"token_renewed","at":"2026-11-29T09:00:00Z","account":"acme","profile":"111111111111_ReadOnly","expires_at":"2026-11-29T10:00:00Z"}}"#;
const GOLDEN_ENDPOINT_MOVED_JSON: &str = r#"{"event":{"type":"endpoint_moved","at":"2026-12-06T09:00:00Z","old_url":"http://127.0.0.1:41001/v1/credentials/","new_url":"http://127.0.0.1:41002/v1/credentials/"}}"#;
const GOLDEN_RESPONSE_JSON: &str = r#"{"response":{"id":3,"outcome":{"ok":"done"}}}"#;
const GOLDEN_PROFILES_PAGE_BIN: &str = "0000000b01040d010461636d65f403";
const GOLDEN_PROFILES_PAGE_JSON: &str =
    r#"{"request":{"id":4,"request":{"profiles_page":{"after":"acme","limit":500}}}}"#;
const GOLDEN_PAGE_JSON: &str = r#"{"response":{"id":4,"outcome":{"ok":{"profiles_page":{"items":[{"name":"zeta","kind":"static","region":null,"sources":["credentials"],"access_key_id":null,"fingerprint":null,"expires_at":null,"expiry_source":null}],"next":null}}}}}"#;
