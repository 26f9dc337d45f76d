//! The rules for values a user types: account names, regions, endpoint URLs, session
//! durations and expiry times. One place, used where each value enters: the CLI (clap
//! value parsers, so a bad value exits 2 before anything is sent) and the daemon (account
//! operations, so a request over the socket is held to the same rules).

use chrono::{DateTime, Duration, Utc};

/// A value that breaks its rule. The message states the rule; the value is quoted with
/// control characters escaped, so it cannot move the cursor or recolour a terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(
        "invalid account name `{0}`: use 1-64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )]
    Name(String),
    #[error(
        "invalid region `{0}`: use lower-case ASCII letters, digits and single `-` between them, like `eu-west-1` (at most 32 characters)"
    )]
    Region(String),
    #[error("invalid endpoint `{0}`: {1}")]
    Endpoint(String, &'static str),
    #[error("invalid duration `{0}`: use a positive duration, like 90m, 12h or 1h30m")]
    Duration(String),
    #[error(
        "invalid expiry time `{0}`: use an RFC 3339 time in the future, like 2026-11-29T18:00:00Z"
    )]
    ExpiresAt(String),
}

/// Quotes a value for a message: control characters and other invisible ones escaped,
/// cut at 80 characters.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}

pub fn check_name(name: &str) -> Result<(), InputError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InputError::Name(shown(name)))
    }
}

pub fn check_region(region: &str) -> Result<(), InputError> {
    let ok = (1..=32).contains(&region.len())
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && !region.ends_with('-')
        && !region.contains("--")
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(InputError::Region(shown(region)))
    }
}

/// The regions of the known AWS partitions, by partition (as the SDKs' endpoint rules
/// list them). A region outside these is kept (a new region, LocalStack's own names) but
/// warned about, with the nearest known one: `eu-west-9` is more often a typo.
pub const KNOWN_REGIONS: &[(&str, &[&str])] = &[
    (
        "aws",
        &[
            "af-south-1",
            "ap-east-1",
            "ap-east-2",
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-south-1",
            "ap-south-2",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
            "ap-southeast-5",
            "ap-southeast-6",
            "ap-southeast-7",
            "ca-central-1",
            "ca-west-1",
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
            "il-central-1",
            "me-central-1",
            "me-south-1",
            "mx-central-1",
            "sa-east-1",
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
        ],
    ),
    ("aws-cn", &["cn-north-1", "cn-northwest-1"]),
    ("aws-us-gov", &["us-gov-east-1", "us-gov-west-1"]),
    ("aws-iso", &["us-iso-east-1", "us-iso-west-1"]),
    ("aws-iso-b", &["us-isob-east-1"]),
    ("aws-iso-e", &["eu-isoe-west-1"]),
    ("aws-iso-f", &["us-isof-east-1", "us-isof-south-1"]),
    ("aws-eusc", &["eusc-de-east-1"]),
];

/// The partition a region belongs to; `None` for a region no known partition has.
pub fn region_partition(region: &str) -> Option<&'static str> {
    KNOWN_REGIONS
        .iter()
        .find(|(_, regions)| regions.contains(&region))
        .map(|(partition, _)| *partition)
}

/// The known region nearest to `region` by edit distance (ties: the first in
/// [`KNOWN_REGIONS`]).
pub fn nearest_region(region: &str) -> &'static str {
    KNOWN_REGIONS
        .iter()
        .flat_map(|(_, regions)| regions.iter().copied())
        .min_by_key(|known| edit_distance(region, known))
        .unwrap_or("us-east-1")
}

/// A warning for a well-formed region that no known partition has, naming the nearest
/// known one; `None` for a known region.
pub fn region_warning(region: &str) -> Option<String> {
    if region_partition(region).is_some() {
        return None;
    }
    Some(format!(
        "region `{}` is not a region of any known partition (aws, aws-cn, aws-us-gov, aws-iso*): did you mean `{}`? (kept as given)",
        shown(region),
        nearest_region(region)
    ))
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// An `http://` or `https://` URL with a host (a name, an IPv4 address or `[IPv6]`), an
/// optional port 1-65535 and an optional path; no user name or password, no spaces or
/// control characters.
pub fn check_endpoint(url: &str) -> Result<(), InputError> {
    let bad = |why: &'static str| Err(InputError::Endpoint(shown(url), why));
    if url.len() > 2048 {
        return bad("longer than 2048 bytes");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains spaces or control characters");
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return bad("expected an http:// or https:// URL, like http://localhost:4566");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return bad("user names and passwords do not belong in the URL");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return bad("an IPv6 address needs a closing `]`");
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return bad("not an IPv6 address between `[` and `]`");
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return bad("expected `:PORT` after the IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return bad("the URL has no host, like http://localhost:4566");
    }
    if !authority.starts_with('[')
        && !host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    {
        return bad("the host may hold only letters, digits, `-` and dots between labels");
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return bad("the port must be a number from 1 to 65535");
    }
    Ok(())
}

/// A session length for `paste --expires-in`: positive (`0` would record a token as
/// expired the moment it is pasted).
pub fn parse_session_duration(text: &str) -> Result<Duration, InputError> {
    crate::expiry::parse_duration(text)
        .filter(|d| *d > Duration::zero())
        .ok_or_else(|| InputError::Duration(shown(text)))
}

/// An expiry time for `paste --expires-at`: later than `now`.
pub fn parse_expires_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, InputError> {
    crate::expiry::parse_timestamp(text)
        .filter(|at| *at > now)
        .ok_or_else(|| InputError::ExpiresAt(shown(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str) -> Result<(), InputError>, good: &[&str], bad: &[&str]) {
        for value in good {
            assert_eq!(f(value), Ok(()), "{value:?} should be accepted");
        }
        for value in bad {
            assert!(f(value).is_err(), "{value:?} should be refused");
        }
    }

    #[test]
    fn names() {
        check(
            check_name,
            &["acme", "acme-dev", "a", "0day", "a.b_c-d", &"x".repeat(64)],
            &[
                "",
                "-dash",
                ".dot",
                "_u",
                "a b",
                "ç",
                "acme\n",
                &"x".repeat(65),
                "a/b",
            ],
        );
    }

    #[test]
    fn regions() {
        check(
            check_region,
            &[
                "eu-west-1",
                "us-gov-west-1",
                "cn-north-1",
                "us-isob-east-1",
                "local",
            ],
            &[
                "",
                "eu west 1",
                "eu-west-1\n",
                "eu-west-1\u{1b}[31m",
                "EU-WEST-1",
                "-eu",
                "eu-",
                "eu--west",
                "1eu",
            ],
        );
    }

    #[test]
    fn known_regions_have_their_partition() {
        for (region, partition) in [
            ("eu-west-1", Some("aws")),
            ("us-east-1", Some("aws")),
            ("cn-northwest-1", Some("aws-cn")),
            ("us-gov-west-1", Some("aws-us-gov")),
            ("us-iso-east-1", Some("aws-iso")),
            ("us-isob-east-1", Some("aws-iso-b")),
            ("eu-west-9", None),
            ("local", None),
        ] {
            assert_eq!(region_partition(region), partition, "{region}");
            assert_eq!(
                region_warning(region).is_none(),
                partition.is_some(),
                "{region}"
            );
        }
        for (_, regions) in KNOWN_REGIONS {
            for region in *regions {
                assert_eq!(check_region(region), Ok(()), "{region}");
            }
        }
    }

    #[test]
    fn an_unknown_region_is_warned_about_with_the_nearest_known_one() {
        for (typo, nearest) in [
            ("eu-west-9", "eu-west-1"),
            ("eu-wset-1", "eu-west-1"),
            ("us-est-1", "us-east-1"),
            ("ap-southeast-22", "ap-southeast-2"),
            ("cn-nort-1", "cn-north-1"),
            ("us-gov-wst-1", "us-gov-west-1"),
        ] {
            assert_eq!(nearest_region(typo), nearest, "{typo}");
            let warning = region_warning(typo).expect("a warning");
            assert!(
                warning.contains(&format!("did you mean `{nearest}`")),
                "{warning}"
            );
            assert!(warning.contains(&format!("`{typo}`")), "{warning}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }

    #[test]
    fn endpoints() {
        check(
            check_endpoint,
            &[
                "http://localhost:4566",
                "https://sts.eu-west-1.amazonaws.com",
                "http://127.0.0.1:5000/",
                "http://[::1]:4566",
                "https://example.com/path?x=1",
            ],
            &[
                "http://",
                "https://",
                "ftp://x",
                "localhost:4566",
                "http://:4566",
                "http://host:0",
                "http://host:99999",
                "http://host:port",
                "http://user:pw@host",
                "http://a b",
                "http://host\n",
                "http://[::1",
                "http://ho..st",
            ],
        );
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_session_duration("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_session_duration("90"), Ok(Duration::seconds(90)));
        assert_eq!(parse_session_duration("400d"), Ok(Duration::days(400)));
        for bad in ["0", "0h", "", "-1h", "soon", "1x"] {
            assert!(parse_session_duration(bad).is_err(), "{bad:?}");
        }
        let now = DateTime::parse_from_rfc3339("2026-11-29T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(parse_expires_at("2026-11-29T18:00:00Z", now).is_ok());
        assert!(parse_expires_at("2030-01-01T00:00:00Z", now).is_ok());
        for bad in ["2026-11-29T08:00:00Z", "2026-11-29T09:00:00Z", "tomorrow"] {
            assert!(parse_expires_at(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_state_the_rule_and_escape_the_value() {
        let err = check_region("eu\u{1b}[2J").expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("like `eu-west-1`"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            check_name("ç")
                .expect_err("refused")
                .to_string()
                .contains("ASCII")
        );
    }
}
