//! Event names: the golden list (`EVENT_TYPES`) against the enum, and the flat JSON shape
//! of `watch --json`.

use cmdr_proto::{EVENT_TYPES, Event, EventKind};

/// The position of `kind` in [`EVENT_TYPES`]. No wildcard: a new variant does not compile
/// until it is given its place here; `the_golden_list_is_the_enum` wants it listed, and
/// `names_follow_the_enum` an example of it.
fn position(kind: &EventKind) -> Option<usize> {
    Some(match kind {
        EventKind::ProfileAdded { .. } => 0,
        EventKind::ProfileRemoved { .. } => 1,
        EventKind::ProfileChanged { .. } => 2,
        EventKind::TokenChanged { .. } => 3,
        EventKind::TokenAccepted { .. } => 4,
        EventKind::ExpiringSoon { .. } => 5,
        EventKind::Expired { .. } => 6,
        EventKind::Validated { .. } => 7,
        EventKind::ValidationFailed { .. } => 8,
        EventKind::IdentityChanged { .. } => 9,
        EventKind::FileError { .. } => 10,
        EventKind::FileRecovered { .. } => 11,
        EventKind::AccountAdded { .. } => 12,
        EventKind::AccountRemoved { .. } => 13,
        EventKind::AccountUpdated { .. } => 14,
        EventKind::Lagged { .. } => 15,
        EventKind::DaemonStopping => 16,
        EventKind::SignedIn { .. } => 17,
        EventKind::SigninRequired { .. } => 18,
        EventKind::TokenRenewed { .. } => 19,
        EventKind::EndpointMoved { .. } => 20,
        EventKind::Unknown => return None,
    })
}

/// The variant names serde derives for the enum, as it hands them to a deserializer: read
/// from the enum itself, so a new variant shows up here whatever else was forgotten.
fn derived_names() -> Vec<&'static str> {
    use serde::de::{self, Deserializer, Visitor};
    #[derive(Debug)]
    struct Names(Vec<&'static str>);
    impl std::fmt::Display for Names {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "names")
        }
    }
    impl std::error::Error for Names {}
    impl de::Error for Names {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Names(Vec::new())
        }
    }
    struct Probe;
    impl<'de> Deserializer<'de> for Probe {
        type Error = Names;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Names> {
            Err(Names(Vec::new()))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Names> {
            Err(Names(variants.to_vec()))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let Err(Names(names)) = <EventKind as serde::Deserialize>::deserialize(Probe) else {
        panic!("the probe decodes nothing");
    };
    names
}

/// The golden list is the enum's variants, in order, but `unknown` (never sent).
#[test]
fn the_golden_list_is_the_enum() {
    let names: Vec<&str> = derived_names()
        .into_iter()
        .filter(|n| *n != "unknown")
        .collect();
    assert_eq!(
        names, EVENT_TYPES,
        "update EVENT_TYPES (and PRODUCT.md's list)"
    );
}

/// One event of each type.
fn examples() -> Vec<EventKind> {
    let a = || "acme".to_owned();
    let expiry = || "2026-11-29T10:00:00Z".to_owned();
    vec![
        EventKind::ProfileAdded { profile: a() },
        EventKind::ProfileRemoved { profile: a() },
        EventKind::ProfileChanged { profile: a() },
        EventKind::TokenChanged {
            account: a(),
            profile: a(),
            old_fingerprint: None,
            new_fingerprint: None,
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
            expires_at: expiry(),
        },
        EventKind::Expired {
            account: a(),
            profile: a(),
            expires_at: expiry(),
        },
        EventKind::Validated {
            account: a(),
            profile: a(),
            account_id: a(),
            arn: a(),
        },
        EventKind::ValidationFailed {
            account: a(),
            profile: a(),
            error: a(),
        },
        EventKind::IdentityChanged {
            account: a(),
            profile: a(),
            old_account_id: a(),
            new_account_id: a(),
        },
        EventKind::FileError {
            path: a(),
            line: None,
            message: a(),
        },
        EventKind::FileRecovered { path: a() },
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
        EventKind::Lagged { missed: 1 },
        EventKind::DaemonStopping,
        EventKind::SignedIn {
            portal: a(),
            session: a(),
        },
        EventKind::SigninRequired {
            portal: a(),
            session: a(),
            reason: a(),
        },
        EventKind::TokenRenewed {
            account: a(),
            profile: a(),
            expires_at: Some(expiry()),
        },
        EventKind::EndpointMoved {
            old_url: a(),
            new_url: a(),
        },
    ]
}

/// Every place in the list has exactly one variant, whose `type` is the listed name.
#[test]
fn names_follow_the_enum() {
    let mut seen = vec![false; EVENT_TYPES.len()];
    for kind in examples() {
        let at = position(&kind).expect("a known type");
        let name = EVENT_TYPES
            .get(at)
            .expect("EVENT_TYPES lists every variant");
        assert_eq!(kind.type_name(), *name, "the type at {at}");
        assert!(!seen[at], "{name} twice");
        seen[at] = true;
    }
    let missing: Vec<&str> = EVENT_TYPES
        .iter()
        .zip(&seen)
        .filter(|(_, seen)| !**seen)
        .map(|(name, _)| *name)
        .collect();
    assert!(missing.is_empty(), "no example of {missing:?}");
    assert_eq!(examples().len(), EVENT_TYPES.len());
}

#[test]
fn events_in_json_are_flat() {
    let event = Event {
        at: "2026-11-29T09:00:00Z".into(),
        kind: EventKind::TokenChanged {
            account: "acme".into(),
            profile: "acme".into(),
            old_fingerprint: Some("aaaa".into()),
            new_fingerprint: Some("bbbb".into()),
            expires_at: None,
            expiry_source: None,
        },
    };
    let json = serde_json::to_string(&event).expect("json");
    assert_eq!(
        json,
        r#"{"type":"token_changed","at":"2026-11-29T09:00:00Z","account":"acme","profile":"acme","old_fingerprint":"aaaa","new_fingerprint":"bbbb","expires_at":null,"expiry_source":null}"#
    );
    assert_eq!(event.kind.type_name(), "token_changed");
    let stopping = Event {
        at: "t".into(),
        kind: EventKind::DaemonStopping,
    };
    assert_eq!(
        serde_json::to_string(&stopping).expect("json"),
        r#"{"type":"daemon_stopping","at":"t"}"#
    );
}
