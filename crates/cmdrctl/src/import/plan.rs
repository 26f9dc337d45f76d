//! The plan of `accounts import`: which assignment becomes which profile and account.
//! Pure: names from the account name and role, sanitised to the account-name rules,
//! collisions resolved against every profile of both files and every account; a profile
//! already naming the same account, role and portal is reused, never rewritten.

use std::collections::{BTreeMap, BTreeSet};

use cmdr_signin::portal::Assignment;

/// Longest profile or account name (cmdr's account-name rule).
const MAX_NAME: usize = 64;

/// What the import does with one assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub assignment: Assignment,
    pub profile: String,
    /// The profile is new (else an existing one names this account and role).
    pub new_profile: bool,
    /// The account to add; `None` when `bound_to` already binds the profile.
    pub account: Option<String>,
    pub bound_to: Option<String>,
}

/// An assignment left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub assignment: Assignment,
    pub reason: &'static str,
}

/// What exists already.
pub struct Existing<'a> {
    /// Every profile of both files, with its properties.
    pub profiles: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The config file's sso-sessions, with their properties.
    pub sessions: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Account name → its profile.
    pub accounts: &'a BTreeMap<String, String>,
}

/// The portal imported from.
pub struct Portal<'a> {
    pub session: &'a str,
    pub start_url: &'a str,
}

/// `text` in the account-name alphabet: runs of other characters (and of `-`) become one `-`, it
/// starts with a letter or digit, and it is at most `max` bytes.
pub fn sanitise(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let start = out
        .find(|c: char| c.is_ascii_alphanumeric())
        .unwrap_or(out.len());
    let mut out = out[start..].to_owned();
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The first free name of `base`, then `base-ID`, then `base-2`, `base-3`, …
fn free_name(base: &str, id: &str, taken: &BTreeSet<String>) -> String {
    let fits = |suffix: &str| {
        let mut b = base.to_owned();
        b.truncate(MAX_NAME.saturating_sub(suffix.len()));
        format!("{}{suffix}", b.trim_end_matches('-'))
    };
    std::iter::once(base.to_owned())
        .chain(std::iter::once(fits(&format!("-{id}"))))
        .chain((2..).map(|n| fits(&format!("-{n}"))))
        .find(|n| !taken.contains(n))
        .unwrap_or_default()
}

/// Whether the portal may be trusted to have given values that are safe in the config
/// file: a 12-digit account id and an IAM role name.
fn unsafe_reason(a: &Assignment) -> Option<&'static str> {
    if a.account_id.len() != 12 || !a.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Some("the account id is not 12 digits");
    }
    let role_ok = (1..=128).contains(&a.role.len())
        && a.role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    (!role_ok).then_some("the role name has characters IAM does not allow")
}

/// The profile that already names this account and role at this portal, if any.
fn existing_profile<'a>(
    a: &Assignment,
    portal: &Portal<'_>,
    existing: &'a Existing<'_>,
) -> Option<&'a str> {
    let at_portal = |props: &BTreeMap<String, String>| {
        let by_session = props.get("sso_session").is_some_and(|s| {
            s == portal.session
                || existing
                    .sessions
                    .get(s)
                    .and_then(|p| p.get("sso_start_url"))
                    .is_some_and(|u| u == portal.start_url)
        });
        by_session
            || props
                .get("sso_start_url")
                .is_some_and(|u| u == portal.start_url)
    };
    existing.profiles.iter().find_map(|(name, props)| {
        (props.get("sso_account_id") == Some(&a.account_id)
            && props.get("sso_role_name") == Some(&a.role)
            && at_portal(props))
        .then_some(name.as_str())
    })
}

/// The plan for `assignments` (already filtered by role).
pub fn plan(
    assignments: &[Assignment],
    portal: &Portal<'_>,
    existing: &Existing<'_>,
) -> (Vec<Item>, Vec<Skipped>) {
    let mut profiles: BTreeSet<String> = existing.profiles.keys().cloned().collect();
    let mut accounts: BTreeSet<String> = existing.accounts.keys().cloned().collect();
    let (mut items, mut skipped) = (Vec::new(), Vec::new());
    for a in assignments {
        if let Some(reason) = unsafe_reason(a) {
            skipped.push(Skipped {
                assignment: a.clone(),
                reason,
            });
            continue;
        }
        let (profile, new_profile) = match existing_profile(a, portal, existing) {
            Some(name) => (name.to_owned(), false),
            None => {
                let mut base = sanitise(&format!("{}-{}", a.account_name, a.role), MAX_NAME);
                if !base.starts_with(|c: char| c.is_ascii_alphanumeric()) || base.len() < 2 {
                    base = sanitise(&format!("{}-{}", a.account_id, a.role), MAX_NAME);
                }
                let name = free_name(&base, &a.account_id, &profiles);
                profiles.insert(name.clone());
                (name, true)
            }
        };
        let bound_to = existing
            .accounts
            .iter()
            .find(|(_, p)| **p == profile)
            .map(|(n, _)| n.clone());
        let account = bound_to.is_none().then(|| {
            let name = free_name(&profile, &a.account_id, &accounts);
            accounts.insert(name.clone());
            name
        });
        items.push(Item {
            assignment: a.clone(),
            profile,
            new_profile,
            account,
            bound_to,
        });
    }
    (items, skipped)
}

/// The config file's new bytes: `config` kept byte for byte, then one section per new
/// profile (none: `None`).
pub fn config_bytes(config: &[u8], items: &[Item], session: &str, region: &str) -> Option<Vec<u8>> {
    let mut text = String::new();
    for item in items.iter().filter(|i| i.new_profile) {
        let a = &item.assignment;
        text.push_str(&format!(
            "\n[profile {}]\nsso_session = {session}\nsso_account_id = {}\nsso_role_name = {}\nregion = {region}\n",
            item.profile, a.account_id, a.role
        ));
    }
    if text.is_empty() {
        return None;
    }
    let mut bytes = config.to_vec();
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    let text = if bytes.is_empty() {
        &text[1..]
    } else {
        &text[..]
    };
    bytes.extend_from_slice(text.as_bytes());
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, id: &str, role: &str) -> Assignment {
        Assignment {
            account_name: name.into(),
            account_id: id.into(),
            role: role.into(),
        }
    }

    #[test]
    fn names_are_sanitised_to_the_account_name_rules() {
        for (text, want) in [
            ("acme-AdministratorAccess", "acme-AdministratorAccess"),
            ("Acme Corp (prod)-ReadOnly", "Acme-Corp-prod-ReadOnly"),
            ("  --ünïcode--x", "n-code-x"),
            ("日本-Admin", "Admin"),
        ] {
            let got = sanitise(text, MAX_NAME);
            assert_eq!(got, want, "{text}");
            assert!(cmdr_core::input::check_name(&got).is_ok(), "{got}");
        }
        let long = sanitise(&"a".repeat(100), MAX_NAME);
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn collisions_get_the_account_id_then_a_number_and_existing_profiles_are_reused() {
        let mut profiles = BTreeMap::new();
        profiles.insert("acme-Admin".to_owned(), BTreeMap::new());
        let mut reused = BTreeMap::new();
        for (k, v) in [
            ("sso_session", "corp"),
            ("sso_account_id", "333333333333"),
            ("sso_role_name", "Admin"),
        ] {
            reused.insert(k.to_owned(), v.to_owned());
        }
        profiles.insert("mine".to_owned(), reused);
        let sessions = BTreeMap::new();
        let accounts = BTreeMap::from([("mine".to_owned(), "mine".to_owned())]);
        let existing = Existing {
            profiles: &profiles,
            sessions: &sessions,
            accounts: &accounts,
        };
        let portal = Portal {
            session: "corp",
            start_url: "https://corp.awsapps.com/start",
        };
        let list = [
            a("acme", "111111111111", "Admin"),
            a("acme", "222222222222", "Admin"),
            a("sandbox", "333333333333", "Admin"),
            a("evil", "1234", "Admin"),
            a("evil", "444444444444", "Admin\nx = y"),
        ];
        let (items, skipped) = plan(&list, &portal, &existing);
        let got: Vec<_> = items
            .iter()
            .map(|i| (i.profile.as_str(), i.new_profile, i.account.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "acme-Admin-111111111111",
                    true,
                    Some("acme-Admin-111111111111")
                ),
                (
                    "acme-Admin-222222222222",
                    true,
                    Some("acme-Admin-222222222222")
                ),
                ("mine", false, None),
            ]
        );
        assert_eq!(items[2].bound_to.as_deref(), Some("mine"));
        assert_eq!(skipped.len(), 2);
        let bytes = config_bytes(b"[profile x]\nregion = y", &items, "corp", "eu-west-1")
            .unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        assert!(text.starts_with("[profile x]\nregion = y\n\n[profile acme-Admin-111111111111]\nsso_session = corp\nsso_account_id = 111111111111\nsso_role_name = Admin\nregion = eu-west-1\n"), "{text}");
        assert_eq!(text.matches("[profile ").count(), 3);
        assert_eq!(
            free_name("x", "1", &BTreeSet::from(["x".into(), "x-1".into()])),
            "x-2"
        );
    }
}
