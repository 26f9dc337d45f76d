//! Additions within `PROTOCOL_VERSION` 1 that older peers must not notice: the
//! `account_detail` request and answer (the reason for an account's state) come after
//! every variant older builds know, and `AccountInfo` keeps its encoding.

use cmdr_proto::*;

/// `golden.rs`'s account, as frozen in [`GOLDEN_ACCOUNTS_LIST_BIN`].
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

fn request() -> ClientMessage {
    ClientMessage::Request {
        id: 1,
        request: Request::AccountDetail { name: "a".into() },
    }
}

fn answer(reason: Option<&str>) -> ServerMessage {
    ServerMessage::Response {
        id: 1,
        outcome: Outcome::Ok(Response::AccountDetail(AccountDetail {
            info: account_info(),
            reason: reason.map(str::to_owned),
            renewal: None,
            signin_expires_at: None,
            auto_renew: false,
        })),
    }
}

fn decode<T: serde::de::DeserializeOwned>(codec: Codec, frame: &[u8]) -> T {
    let mut decoder = FrameDecoder::new(codec);
    decoder.extend(frame);
    decoder.decode().expect("decodes").expect("complete")
}

#[test]
fn account_detail_round_trips_in_both_codecs() {
    for codec in [Codec::Binary, Codec::JsonLines] {
        let sent = request();
        let got: ClientMessage = decode(codec, &encode(codec, &sent).expect("encode"));
        assert_eq!(got, sent, "{codec:?}");
        for reason in [
            None,
            Some("misconfigured: profile `acme` gives no credentials"),
        ] {
            let sent = answer(reason);
            let got: ServerMessage = decode(codec, &encode(codec, &sent).expect("encode"));
            assert_eq!(got, sent, "{codec:?}");
        }
    }
    let json =
        String::from_utf8(encode(Codec::JsonLines, &request()).expect("encode")).expect("utf8");
    assert_eq!(
        json.trim_end(),
        r#"{"request":{"id":1,"request":{"account_detail":{"name":"a"}}}}"#
    );
}

/// The new variants come last: those older builds know keep their binary indexes.
#[test]
fn account_detail_is_added_at_the_end() {
    let frame = encode(Codec::Binary, &request()).expect("encode");
    // Length, ClientMessage::Request (1), id (1), then the request's index.
    assert_eq!(frame[4..7], [1, 1, 15]);
    let frame = encode(Codec::Binary, &answer(None)).expect("encode");
    // Length, ServerMessage::Response (2), id (1), Outcome::Ok (0), the response's index.
    assert_eq!(frame[4..8], [2, 1, 0, 11]);
}

/// An `accounts list` answer is encoded exactly as before: an older client reads the
/// entries of a list one after another, so a field added to `AccountInfo` would shift
/// every entry after the first (the reason travels in `AccountDetail` instead).
#[test]
fn account_info_keeps_its_encoding() {
    let frame = encode(Codec::Binary, &Response::Accounts(vec![account_info()])).expect("encode");
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_ACCOUNTS_LIST_BIN);
}

const GOLDEN_ACCOUNTS_LIST_BIN: &str = "0000009802010461636d650461636d65010965752d776573742d31010115687474703a2f2f6c6f63616c686f73743a34353636000101103031323334353637383961626364656600000114323032362d31312d32395431303a30303a30305a0118785f73656375726974795f746f6b656e5f6578706972657300011e68747470733a2f2f61636d652e617773617070732e636f6d2f73746172740101";

/// `renewals_page` and `renew_now` (issue 25) come after every request older builds know,
/// their answers after every answer, with golden encodings of their own: what `accounts
/// list --json` adds travels beside `AccountInfo`, never inside it.
#[test]
fn renewals_are_added_at_the_end_with_golden_encodings() {
    let page = ClientMessage::Request {
        id: 1,
        request: Request::RenewalsPage(PageRequest {
            after: None,
            limit: 1000,
        }),
    };
    let frame = encode(Codec::Binary, &page).expect("encode");
    assert_eq!(frame[4..7], [1, 1, 20]);
    let now = ClientMessage::Request {
        id: 1,
        request: Request::RenewNow { name: "a".into() },
    };
    let frame = encode(Codec::Binary, &now).expect("encode");
    assert_eq!(frame[4..7], [1, 1, 21]);
    let json = String::from_utf8(encode(Codec::JsonLines, &page).expect("encode")).expect("utf8");
    assert_eq!(
        json.trim_end(),
        r#"{"request":{"id":1,"request":{"renewals_page":{"after":null,"limit":1000}}}}"#
    );
    let answer = ServerMessage::Response {
        id: 1,
        outcome: Outcome::Ok(Response::RenewalsPage(Page {
            items: vec![RenewalFacts {
                account: "acme".into(),
                auto_renew: true,
                session: Some("acme".into()),
                signin_expires_at: Some("2026-11-29T18:00:00Z".into()),
            }],
            next: None,
        })),
    };
    let frame = encode(Codec::Binary, &answer).expect("encode");
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_RENEWALS_PAGE_BIN);
    for codec in [Codec::Binary, Codec::JsonLines] {
        let got: ServerMessage = decode(codec, &encode(codec, &answer).expect("encode"));
        assert_eq!(got, answer, "{codec:?}");
    }
    let got: ServerMessage = decode(Codec::Binary, &hex_bytes(GOLDEN_RENEWALS_PAGE_BIN));
    assert_eq!(got, answer);
    let renewed = ServerMessage::Response {
        id: 1,
        outcome: Outcome::Ok(Response::Renewed(Renewed {
            account: account_info(),
            expires_at: None,
        })),
    };
    let frame = encode(Codec::Binary, &renewed).expect("encode");
    assert_eq!(frame[4..8], [2, 1, 0, 16]);
}

/// `renewal_plans` (issue 25 item 5: when an account renews itself) comes after every
/// request and answer before it, with a golden encoding of its own; the older
/// `renewals_page` is answered as before.
#[test]
fn renewal_plans_are_added_at_the_end_with_a_golden_encoding() {
    let ask = ClientMessage::Request {
        id: 1,
        request: Request::RenewalPlans(PageRequest {
            after: None,
            limit: 1000,
        }),
    };
    let frame = encode(Codec::Binary, &ask).expect("encode");
    assert_eq!(frame[4..7], [1, 1, 22]);
    let json = String::from_utf8(encode(Codec::JsonLines, &ask).expect("encode")).expect("utf8");
    assert_eq!(
        json.trim_end(),
        r#"{"request":{"id":1,"request":{"renewal_plans":{"after":null,"limit":1000}}}}"#
    );
    let plan = RenewalPlan {
        account: "acme".into(),
        auto_renew: true,
        session: Some("acme".into()),
        signin_expires_at: Some("2026-11-29T18:00:00Z".into()),
        renews_at: Some("2026-11-29T09:50:00Z".into()),
    };
    let answer = ServerMessage::Response {
        id: 1,
        outcome: Outcome::Ok(Response::RenewalPlans(Page {
            items: vec![plan.clone()],
            next: None,
        })),
    };
    let frame = encode(Codec::Binary, &answer).expect("encode");
    assert_eq!(frame[4..8], [2, 1, 0, 17]);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_RENEWAL_PLANS_BIN);
    for codec in [Codec::Binary, Codec::JsonLines] {
        let got: ServerMessage = decode(codec, &encode(codec, &answer).expect("encode"));
        assert_eq!(got, answer, "{codec:?}");
    }
    let got: ServerMessage = decode(Codec::Binary, &hex_bytes(GOLDEN_RENEWAL_PLANS_BIN));
    assert_eq!(got, answer);
    let json = String::from_utf8(encode(Codec::JsonLines, &answer).expect("encode")).expect("utf8");
    assert!(
        json.contains(r#""renews_at":"2026-11-29T09:50:00Z""#),
        "{json}"
    );
    // What `renewals_page` says of the same account, and a plan made from it.
    let facts = plan.clone().facts();
    assert_eq!(facts.signin_expires_at, plan.signin_expires_at);
    let back = RenewalPlan::from_facts(facts);
    assert_eq!(back.renews_at, None);
    assert!(!back.signin_needed());
    assert!(
        RenewalPlan {
            signin_expires_at: None,
            ..plan
        }
        .signin_needed()
    );
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

const GOLDEN_RENEWALS_PAGE_BIN: &str =
    "000000280201000f010461636d6501010461636d650114323032362d31312d32395431383a30303a30305a00";

const GOLDEN_RENEWAL_PLANS_BIN: &str = "0000003e02010011010461636d6501010461636d650114323032362d31312d32395431383a30303a30305a0114323032362d31312d32395430393a35303a30305a00";
