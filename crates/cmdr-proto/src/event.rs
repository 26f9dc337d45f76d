//! Events pushed to subscribers. In binary frames an event is `(at, kind)`; in JSON it is
//! one flat object, `{"type": "token_changed", "at": "…", "account": "…", …}`, exactly what
//! `cmdrctl watch --json` prints. Clients ignore types they do not know.

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// RFC 3339 UTC.
    pub at: String,
    pub kind: EventKind,
}

/// Every event `type` a daemon sends, in the enum's order: the golden list of the contract
/// (`watch --json` in PRODUCT.md). `tests/events.rs` checks it against the enum, so a new
/// variant cannot go unlisted.
pub const EVENT_TYPES: [&str; 21] = [
    "profile_added",
    "profile_removed",
    "profile_changed",
    "token_changed",
    "token_accepted",
    "expiring_soon",
    "expired",
    "validated",
    "validation_failed",
    "identity_changed",
    "file_error",
    "file_recovered",
    "account_added",
    "account_removed",
    "account_updated",
    "lagged",
    "daemon_stopping",
    "signed_in",
    "signin_required",
    "token_renewed",
    "endpoint_moved",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ProfileAdded {
        profile: String,
    },
    ProfileRemoved {
        profile: String,
    },
    ProfileChanged {
        profile: String,
    },
    TokenChanged {
        account: String,
        profile: String,
        old_fingerprint: Option<String>,
        new_fingerprint: Option<String>,
        expires_at: Option<String>,
        expiry_source: Option<String>,
    },
    TokenAccepted {
        account: String,
        profile: String,
    },
    ExpiringSoon {
        account: String,
        profile: String,
        expires_at: String,
    },
    Expired {
        account: String,
        profile: String,
        expires_at: String,
    },
    Validated {
        account: String,
        profile: String,
        account_id: String,
        arn: String,
    },
    ValidationFailed {
        account: String,
        profile: String,
        error: String,
    },
    IdentityChanged {
        account: String,
        profile: String,
        old_account_id: String,
        new_account_id: String,
    },
    FileError {
        path: String,
        line: Option<u32>,
        message: String,
    },
    FileRecovered {
        path: String,
    },
    AccountAdded {
        account: String,
        profile: String,
    },
    AccountRemoved {
        account: String,
        profile: String,
    },
    AccountUpdated {
        account: String,
        profile: String,
    },
    Lagged {
        missed: u64,
    },
    DaemonStopping,
    /// A portal (IAM Identity Center) has a token again: `cmdrctl login`, `aws sso login`
    /// or another program signed in. `portal`: the start URL; `session`: the sso-session.
    SignedIn {
        portal: String,
        session: String,
    },
    /// A portal's session ended and only a person can sign in again: its refresh was
    /// refused, or it has no refresh token. Once per portal session end.
    SigninRequired {
        portal: String,
        session: String,
        reason: String,
    },
    /// cmdrd renewed an account's token itself (GetRoleCredentials through its portal),
    /// wrote it into the credentials file and accepted it.
    TokenRenewed {
        account: String,
        profile: String,
        expires_at: Option<String>,
    },
    /// cmdrd could not get its credentials endpoint's port back at start (another program
    /// held it) and listens on `new_url` instead. Every token of the old URL is dead:
    /// processes started with it fail closed until started again with `cmdrctl exec`.
    /// Given to each client as it subscribes, for as long as this daemon runs.
    EndpointMoved {
        old_url: String,
        new_url: String,
    },
    /// An event type this build does not know (a newer daemon's); clients ignore it.
    /// Never sent.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The `type` name, as in `watch --json`.
    pub fn type_name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::String(name)) => name,
            Ok(Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// The account this event is about, if any.
    pub fn account(&self) -> Option<&str> {
        match self {
            EventKind::TokenChanged { account, .. }
            | EventKind::TokenAccepted { account, .. }
            | EventKind::ExpiringSoon { account, .. }
            | EventKind::Expired { account, .. }
            | EventKind::Validated { account, .. }
            | EventKind::ValidationFailed { account, .. }
            | EventKind::IdentityChanged { account, .. }
            | EventKind::AccountAdded { account, .. }
            | EventKind::AccountRemoved { account, .. }
            | EventKind::AccountUpdated { account, .. }
            | EventKind::TokenRenewed { account, .. } => Some(account),
            EventKind::ProfileAdded { .. }
            | EventKind::ProfileRemoved { .. }
            | EventKind::ProfileChanged { .. }
            | EventKind::FileError { .. }
            | EventKind::FileRecovered { .. }
            | EventKind::Lagged { .. }
            | EventKind::DaemonStopping
            | EventKind::SignedIn { .. }
            | EventKind::SigninRequired { .. }
            | EventKind::EndpointMoved { .. }
            | EventKind::Unknown => None,
        }
    }
}

impl Event {
    /// The flat JSON object of `watch --json`.
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        let mut out = Map::new();
        let (name, fields) = match serde_json::to_value(&self.kind)? {
            Value::String(name) => (name, Map::new()),
            Value::Object(map) => match map.into_iter().next() {
                Some((name, Value::Object(fields))) => (name, fields),
                _ => {
                    return Err(<serde_json::Error as serde::de::Error>::custom(
                        "unexpected event shape",
                    ));
                }
            },
            _ => {
                return Err(<serde_json::Error as serde::de::Error>::custom(
                    "unexpected event shape",
                ));
            }
        };
        out.insert("type".to_owned(), Value::String(name));
        out.insert("at".to_owned(), Value::String(self.at.clone()));
        out.extend(fields);
        Ok(Value::Object(out))
    }

    /// The inverse of [`Event::to_json`].
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        let Value::Object(mut map) = value else {
            return Err(<serde_json::Error as serde::de::Error>::custom(
                "an event is a JSON object",
            ));
        };
        let Some(Value::String(name)) = map.remove("type") else {
            return Err(<serde_json::Error as serde::de::Error>::custom(
                "event without a `type`",
            ));
        };
        let Some(Value::String(at)) = map.remove("at") else {
            return Err(<serde_json::Error as serde::de::Error>::custom(
                "event without an `at`",
            ));
        };
        // A name this build does not know decodes to `Unknown`, whatever its fields.
        if let Ok(EventKind::Unknown) = serde_json::from_value(Value::String(name.clone())) {
            return Ok(Event {
                at,
                kind: EventKind::Unknown,
            });
        }
        let kind = if map.is_empty() {
            serde_json::from_value(Value::String(name))?
        } else {
            let mut outer = Map::new();
            outer.insert(name, Value::Object(map));
            serde_json::from_value(Value::Object(outer))?
        };
        Ok(Event { at, kind })
    }
}

#[derive(Serialize, Deserialize)]
struct Compact<K> {
    at: String,
    kind: K,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.to_json()
                .map_err(S::Error::custom)?
                .serialize(serializer)
        } else {
            Compact {
                at: self.at.clone(),
                kind: &self.kind,
            }
            .serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = Value::deserialize(deserializer)?;
            Event::from_json(value).map_err(D::Error::custom)
        } else {
            let Compact { at, kind } = Compact::<EventKind>::deserialize(deserializer)?;
            Ok(Event { at, kind })
        }
    }
}
