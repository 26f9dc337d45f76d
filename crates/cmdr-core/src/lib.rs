//! cmdr-core: the AWS profile model, fingerprints, expiry, accounts and their state machine,
//! and the diff of two views. Pure: bytes and time in, values out; no I/O, no async runtime.

pub mod account;
pub mod diff;
pub mod expiry;
pub mod grammar;
pub mod handout;
pub mod input;
pub mod keyname;
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
    Credentials, Detail, FileKind, Inputs, ParseError, Profile, ProfileKind, ProfileView, SsoRole,
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

/// The values of `map` whose keys sort after `after` (all of them for `None`), in key
/// order: where a page of a list by name starts.
pub fn values_after<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    after: Option<&str>,
) -> impl Iterator<Item = &'a V> {
    use std::ops::Bound::{Excluded, Unbounded};
    let start = after.map_or(Unbounded, Excluded);
    map.range::<str, _>((start, Unbounded))
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_after_a_cursor() {
        let map: std::collections::BTreeMap<String, u8> = [("a", 1), ("b", 2), ("c", 3)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        let after = |cursor| {
            super::values_after(&map, cursor)
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(after(None), [1, 2, 3]);
        assert_eq!(after(Some("a")), [2, 3]);
        // A cursor that is no longer a key (removed between pages) still places the page.
        assert_eq!(after(Some("bb")), [3]);
        assert_eq!(after(Some("c")), Vec::<u8>::new());
    }
}
