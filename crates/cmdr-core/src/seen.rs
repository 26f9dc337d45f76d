//! When each profile's current token was first seen (the start of an estimated expiry),
//! and what changed in the files while the daemon was not running, worked out from the
//! record of the last run and the view of now.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::account::AccountChange;
use crate::profile::ProfileView;

/// The token a profile held and when it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub fingerprint: String,
    pub first_seen: DateTime<Utc>,
}

/// First sightings by profile name.
pub type SeenTokens = BTreeMap<String, Seen>;

/// Records `now` as the first sighting of every token of `view` not seen before, and
/// forgets profiles that are gone. True when anything changed.
pub fn record(seen: &mut SeenTokens, view: &ProfileView, now: DateTime<Utc>) -> bool {
    let before = seen.len();
    seen.retain(|name, _| view.profiles.contains_key(name));
    let mut changed = before != seen.len();
    for (name, profile) in &view.profiles {
        let Some(fingerprint) = &profile.fingerprint else {
            continue;
        };
        if seen.get(name).map(|s| &s.fingerprint) != Some(fingerprint) {
            seen.insert(
                name.clone(),
                Seen {
                    fingerprint: fingerprint.clone(),
                    first_seen: now,
                },
            );
            changed = true;
        }
    }
    changed
}

/// What changed in the profiles between the last run (`before`) and `view`, one line
/// each for `status`. With a file that does not parse, one line saying so instead.
pub fn profile_changes(before: &SeenTokens, view: &ProfileView, broken: bool) -> Vec<String> {
    if broken {
        return vec!["a file did not parse at start; changes are reported once it does".into()];
    }
    let mut notes = Vec::new();
    if before.is_empty() {
        return notes;
    }
    for (name, seen) in before {
        match view.get(name) {
            None => notes.push(format!("profile `{name}` was removed")),
            Some(profile) => match &profile.fingerprint {
                Some(fp) if *fp != seen.fingerprint => {
                    notes.push(format!("token of profile `{name}` changed"));
                }
                _ => {}
            },
        }
    }
    for (name, profile) in &view.profiles {
        if profile.fingerprint.is_some() && !before.contains_key(name) {
            notes.push(format!("profile `{name}` was added"));
        }
    }
    notes
}

/// The lines for what reconciling the accounts with the files found at start, each with
/// the account it is about (the daemon drops it once that account accepts). A token
/// change counts only if the profile's token is not the one the last run already saw (an
/// account still `changed` from before is no news).
pub fn account_changes(
    changes: &[AccountChange],
    before: &SeenTokens,
    view: &ProfileView,
) -> Vec<(String, String)> {
    let seen_before = |profile: &str| {
        let now = view.get(profile).and_then(|p| p.fingerprint.as_ref());
        now.is_some() && now == before.get(profile).map(|s| &s.fingerprint)
    };
    changes
        .iter()
        .filter_map(|change| match change {
            AccountChange::TokenChanged {
                account, profile, ..
            } if !seen_before(profile) => Some((
                account.clone(),
                format!("token for account `{account}` changed"),
            )),
            AccountChange::TokenAccepted { account, .. } => Some((
                account.clone(),
                format!("account `{account}` accepted the new token (auto)"),
            )),
            AccountChange::TokenChanged { .. }
            | AccountChange::Added { .. }
            | AccountChange::Removed { .. }
            | AccountChange::Updated { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(profiles: &[(&str, &str)]) -> ProfileView {
        let credentials: String = profiles
            .iter()
            .map(|(name, token)| {
                format!(
                    "[{name}]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\naws_session_token = {token}\n"
                )
            })
            .collect();
        crate::profile::parse_files("", &credentials)
    }

    fn at(hour: u32) -> DateTime<Utc> {
        use chrono::TimeZone as _;
        Utc.with_ymd_and_hms(2026, 12, 2, hour, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_token_is_first_seen_once() {
        let mut seen = SeenTokens::new();
        assert!(record(&mut seen, &view(&[("a", "T1")]), at(1)));
        assert_eq!(seen["a"].first_seen, at(1));
        // The same token later: nothing changes, the first sighting stays.
        assert!(!record(&mut seen, &view(&[("a", "T1")]), at(2)));
        assert_eq!(seen["a"].first_seen, at(1));
        // A new token: seen now.
        assert!(record(&mut seen, &view(&[("a", "T2")]), at(3)));
        assert_eq!(seen["a"].first_seen, at(3));
        // The profile gone: forgotten.
        assert!(record(&mut seen, &view(&[]), at(4)));
        assert!(seen.is_empty());
    }

    #[test]
    fn changes_while_down_name_each_profile() {
        let mut before = SeenTokens::new();
        record(
            &mut before,
            &view(&[("kept", "K"), ("rotated", "R1"), ("gone", "G")]),
            at(1),
        );
        let now = view(&[("kept", "K"), ("rotated", "R2"), ("new", "N")]);
        assert_eq!(
            profile_changes(&before, &now, false),
            [
                "profile `gone` was removed",
                "token of profile `rotated` changed",
                "profile `new` was added",
            ]
        );
        // A first start has nothing to compare with; a broken file says so instead.
        assert!(profile_changes(&SeenTokens::new(), &now, false).is_empty());
        assert_eq!(profile_changes(&before, &now, true).len(), 1);
        assert!(profile_changes(&before, &now, true)[0].contains("did not parse"));
    }

    #[test]
    fn account_lines_name_the_account() {
        let mut before = SeenTokens::new();
        record(&mut before, &view(&[("p", "OLD")]), at(1));
        let changed = |profile: &str| AccountChange::TokenChanged {
            account: "ask".into(),
            profile: profile.into(),
            old_fingerprint: None,
            new_fingerprint: None,
            expiry: None,
        };
        // The file changed while down: news. Still the token the last run saw: none.
        assert_eq!(
            account_changes(&[changed("p")], &before, &view(&[("p", "NEW")])),
            [(
                "ask".to_owned(),
                "token for account `ask` changed".to_owned()
            )]
        );
        assert!(account_changes(&[changed("p")], &before, &view(&[("p", "OLD")])).is_empty());
        let changes = [
            AccountChange::TokenAccepted {
                account: "auto".into(),
                profile: "p".into(),
            },
            AccountChange::Added {
                account: "x".into(),
                profile: "p".into(),
            },
        ];
        assert_eq!(
            account_changes(&changes, &before, &view(&[("p", "OLD")])),
            [(
                "auto".to_owned(),
                "account `auto` accepted the new token (auto)".to_owned()
            )]
        );
    }
}
