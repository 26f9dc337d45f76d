//! The closed sets of names on the wire: account states, targets, policies, file and
//! profile kinds. Each serialises to the same snake_case (profile kinds: kebab-case) name
//! JSON has always carried. Sets that may grow have an `Unknown` arm that a newer daemon's
//! name decodes to, in both codecs, so an older client shows "unknown" instead of failing.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $label)] $variant,)+
            /// A name this build does not know (a newer daemon's).
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl $name {
            /// The name in JSON.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

names! {
    /// `accounts list --json`'s `state`.
    AccountState {
        Ok => "ok",
        Changed => "changed",
        Expiring => "expiring",
        Expired => "expired",
        Missing => "missing",
        Invalid => "invalid",
        Misconfigured => "misconfigured",
        Unvalidated => "unvalidated",
    }
}

names! {
    /// Where an account's STS calls go.
    TargetKind {
        Aws => "aws",
        Localstack => "localstack",
        Endpoint => "endpoint",
    }
}

names! {
    /// What the daemon does when an account's token changes.
    OnChange {
        Ask => "ask",
        Auto => "auto",
    }
}

names! {
    /// The files `status` reports (`state`: cmdrd's own `state.json`, in error while it
    /// cannot be written; `watch`: a directory rescanned because it cannot be watched).
    FileKind {
        Config => "config",
        Credentials => "credentials",
        SsoCache => "sso_cache",
        State => "state",
        Watch => "watch",
    }
}

names! {
    /// A watched file's health.
    FileHealth {
        Ok => "ok",
        Error => "error",
    }
}

names! {
    /// How a profile gets its credentials (`profiles --json`'s `kind`).
    ProfileKind {
        Static => "static",
        Session => "session",
        Sso => "sso",
        AssumeRole => "assume-role",
        CredentialProcess => "credential-process",
        WebIdentity => "web-identity",
        Other => "other",
        Login => "login",
    }
}
