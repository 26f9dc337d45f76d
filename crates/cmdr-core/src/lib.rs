//! cmdr-core: the AWS profile model, fingerprints, expiry, accounts and their state machine,
//! and the diff of two views. Pure: bytes and time in, values out; no I/O, no async runtime.

pub mod account;
pub mod diff;
pub mod expiry;
pub mod grammar;
pub mod handout;
pub mod input;
pub mod paste;
mod per_file;
pub mod profile;
pub mod seen;
pub mod text;

pub use account::{
    AcceptedToken, Account, AccountChange, AccountError, AccountPatch, AccountState, Accounts,
    ExpiryOf, IdentityCheck, NewAccount, OnChange, PendingIdentity, Status, Target, Verdict,
};
pub use diff::{ProfileChange, diff};
pub use expiry::{Expiry, ExpirySource, format_duration, parse_duration};
pub use per_file::PerFile;
pub use profile::{
    Credentials, Detail, FileKind, Inputs, ParseError, Profile, ProfileKind, ProfileView,
    parse_view, parse_view_or, parse_view_with,
};
pub use seen::{Seen, SeenTokens};

/// The innermost message of an error chain: the AWS SDK's top-level messages are generic
/// ("could not parse profile file", "dispatch failure"); the useful text is at the bottom.
pub fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}
