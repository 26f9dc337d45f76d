//! The difference between two profile views, as a list of changes.

use crate::profile::ProfileView;

/// One profile-level change between two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChange {
    Added {
        profile: String,
    },
    Removed {
        profile: String,
    },
    /// Anything about the profile changed; `token_changed()` tells whether a secret did.
    Changed {
        profile: String,
        old_fingerprint: Option<String>,
        new_fingerprint: Option<String>,
    },
}

impl ProfileChange {
    pub fn profile(&self) -> &str {
        match self {
            ProfileChange::Added { profile }
            | ProfileChange::Removed { profile }
            | ProfileChange::Changed { profile, .. } => profile,
        }
    }

    pub fn token_changed(&self) -> bool {
        matches!(self, ProfileChange::Changed { old_fingerprint, new_fingerprint, .. }
            if old_fingerprint != new_fingerprint)
    }
}

/// Changes from `old` to `new`, in profile-name order: one walk over both sorted maps.
pub fn diff(old: &ProfileView, new: &ProfileView) -> Vec<ProfileChange> {
    use std::cmp::Ordering;
    let mut changes = Vec::new();
    let mut before = old.profiles.iter().peekable();
    let mut after = new.profiles.iter().peekable();
    loop {
        let order = match (before.peek(), after.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                if let Some((name, _)) = before.next() {
                    changes.push(ProfileChange::Removed {
                        profile: name.clone(),
                    });
                }
            }
            Ordering::Greater => {
                if let Some((name, _)) = after.next() {
                    changes.push(ProfileChange::Added {
                        profile: name.clone(),
                    });
                }
            }
            Ordering::Equal => {
                if let (Some((name, was)), Some((_, is))) = (before.next(), after.next())
                    && was != is
                {
                    changes.push(ProfileChange::Changed {
                        profile: name.clone(),
                        old_fingerprint: was.fingerprint.clone(),
                        new_fingerprint: is.fingerprint.clone(),
                    });
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(credentials: &str) -> ProfileView {
        crate::profile::parse_files("", credentials)
    }

    fn check(old: &str, new: &str, expected: &[(&str, &str)]) {
        let got: Vec<(String, String)> = diff(&view(old), &view(new))
            .iter()
            .map(|c| {
                let what = match c {
                    ProfileChange::Added { .. } => "added",
                    ProfileChange::Removed { .. } => "removed",
                    ProfileChange::Changed { .. } if c.token_changed() => "token",
                    ProfileChange::Changed { .. } => "changed",
                };
                (c.profile().to_owned(), what.to_owned())
            })
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(got, expected, "{old:?} -> {new:?}");
    }

    #[test]
    fn diffs() {
        let a1 = "[a]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n";
        let a2 = "[a]\naws_access_key_id = AKIA1\naws_secret_access_key = s2\n";
        let a1r = "[a]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\nregion = x\n";
        let b = "[b]\nregion = y\n";
        check(a1, a1, &[]);
        check(a1, a2, &[("a", "token")]);
        check(a1, a1r, &[("a", "changed")]);
        check(a1, &format!("{a1}{b}"), &[("b", "added")]);
        check(&format!("{a1}{b}"), b, &[("a", "removed")]);
        check("", "", &[]);
        // Same bytes in a different order mean nothing changed.
        check(&format!("{a1}{b}"), &format!("{b}{a1}"), &[]);
    }
}
