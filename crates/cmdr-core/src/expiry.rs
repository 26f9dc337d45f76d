//! When a session ends and how we know it: lenient timestamp parsing for the formats the
//! credential tools write, and the source of each expiry.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

/// The keys that credential tools write next to a session token, in order of preference.
pub const EXPIRY_KEYS: &[&str] = &[
    "x_security_token_expires",
    "aws_expiration",
    "aws_session_expiration",
    "aws_credential_expiration",
    "expiration",
];

/// Where an expiry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpirySource {
    /// A key in the profile, e.g. `x_security_token_expires`.
    Key(&'static str),
    /// A `# Expires: …` comment inside the profile's section.
    Comment,
    /// The SSO token cache's `expiresAt`.
    SsoCache,
    /// The `source_profile` this role is assumed from.
    SourceProfile(String),
    /// The `Expiration` a profile's `credential_process` printed when cmdr last validated
    /// it (the daemon runs that process only to validate, as the SDK would).
    CredentialProcess,
    /// First seen plus the configured session length.
    Estimated,
    /// Long-lived keys.
    Never,
}

impl ExpirySource {
    /// The name used in `--json` output and events.
    pub fn label(&self) -> String {
        match self {
            ExpirySource::Key(key) => (*key).to_owned(),
            ExpirySource::Comment => "comment".to_owned(),
            ExpirySource::SsoCache => "sso_cache".to_owned(),
            ExpirySource::SourceProfile(name) => format!("source_profile:{name}"),
            ExpirySource::CredentialProcess => "credential_process".to_owned(),
            ExpirySource::Estimated => "estimated".to_owned(),
            ExpirySource::Never => "never".to_owned(),
        }
    }
}

impl ExpirySource {
    /// The source named by [`ExpirySource::label`] (the state file stores labels).
    pub fn from_label(label: &str) -> Option<ExpirySource> {
        Some(match label {
            "comment" => ExpirySource::Comment,
            "sso_cache" => ExpirySource::SsoCache,
            "credential_process" => ExpirySource::CredentialProcess,
            "estimated" => ExpirySource::Estimated,
            "never" => ExpirySource::Never,
            _ => match label.strip_prefix("source_profile:") {
                Some(name) => ExpirySource::SourceProfile(name.to_owned()),
                None => ExpirySource::Key(EXPIRY_KEYS.iter().find(|k| **k == label)?),
            },
        })
    }
}

/// An expiry: a time and where it was learnt, or never (static keys). Built only by
/// [`Expiry::at`] and [`Expiry::never`], so a time is missing exactly when the source is
/// [`ExpirySource::Never`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    at: Option<DateTime<Utc>>,
    source: ExpirySource,
}

impl Expiry {
    pub fn at(at: DateTime<Utc>, source: ExpirySource) -> Self {
        Expiry {
            at: Some(at),
            source,
        }
    }

    pub fn never() -> Self {
        Expiry {
            at: None,
            source: ExpirySource::Never,
        }
    }

    /// When it ends; `None` for never.
    pub fn when(&self) -> Option<DateTime<Utc>> {
        self.at
    }

    pub fn source(&self) -> &ExpirySource {
        &self.source
    }
}

/// The `Expiration` handed out with credentials (credentials endpoint, `credential-process`):
/// never later than the token's own expiry, and at most `lifetime` from now, so that an SDK
/// comes back soon enough to pick up a newly accepted token.
pub fn served_until(
    expiry: Option<&Expiry>,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> DateTime<Utc> {
    let cap = now + lifetime;
    match expiry.and_then(Expiry::when) {
        Some(at) if at < cap => at,
        _ => cap,
    }
}

/// Parses the timestamp formats credential tools write: RFC 3339, `+0000` offsets, a `UTC`
/// or `Z` suffix, with or without fractional seconds, `T` or a space between date and time,
/// and zone-less local time (awsume). `None` if nothing fits.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    if text.is_empty() {
        return None;
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    let (naive_text, utc) = match strip_utc_suffix(text) {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let naive = parse_naive(naive_text)?;
    if utc {
        Some(Utc.from_utc_datetime(&naive))
    } else {
        // awsume writes local wall-clock time without a zone.
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|at| at.with_timezone(&Utc))
    }
}

fn strip_utc_suffix(text: &str) -> Option<&str> {
    for suffix in ["UTC", "Z", "GMT"] {
        if let Some(rest) = text.strip_suffix(suffix) {
            return Some(rest.trim_end());
        }
    }
    None
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// Reads a `# Expires: …` (or `; expires = …`) comment line; `None` if it is not one.
pub fn parse_expires_comment(line: &str) -> Option<DateTime<Utc>> {
    let body = line.trim_start().strip_prefix(['#', ';'])?.trim_start();
    let head = body.get(..7)?;
    if !head.eq_ignore_ascii_case("expires") {
        return None;
    }
    let rest = body[7..].trim_start();
    let rest = rest.strip_prefix([':', '='])?;
    parse_timestamp(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let got = parse_timestamp(input).map(|at| at.to_rfc3339());
        let expected = expected.map(|e| {
            DateTime::parse_from_rfc3339(e)
                .expect("valid expectation")
                .with_timezone(&Utc)
                .to_rfc3339()
        });
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn timestamp_formats() {
        let cases = [
            ("2026-11-29T10:00:00Z", Some("2026-11-29T10:00:00Z")),
            ("2026-11-29T10:00:00+01:00", Some("2026-11-29T09:00:00Z")),
            ("2026-11-29T10:00:00.123Z", Some("2026-11-29T10:00:00.123Z")),
            ("2026-11-29T10:00:00+0000", Some("2026-11-29T10:00:00Z")),
            ("2026-11-29T10:00:00-0500", Some("2026-11-29T15:00:00Z")),
            ("2021-12-07T01:19:12UTC", Some("2021-12-07T01:19:12Z")),
            ("2026-11-29 10:00:00 UTC", Some("2026-11-29T10:00:00Z")),
            ("\"2026-11-29T10:00:00Z\"", Some("2026-11-29T10:00:00Z")),
            ("tomorrow", None),
            ("", None),
        ];
        for (input, expected) in cases {
            check(input, expected);
        }
    }

    #[test]
    fn zone_less_is_local_time() {
        let naive = NaiveDateTime::parse_from_str("2026-11-29T10:00:00", "%Y-%m-%dT%H:%M:%S")
            .expect("naive");
        let expected = Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|at| at.with_timezone(&Utc));
        assert_eq!(parse_timestamp("2026-11-29T10:00:00"), expected);
        assert_eq!(parse_timestamp("2026-11-29 10:00:00"), expected);
    }

    #[test]
    fn expires_comments() {
        let at = Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap());
        assert_eq!(parse_expires_comment("# Expires: 2026-11-29T10:00:00Z"), at);
        assert_eq!(parse_expires_comment(";expires = 2026-11-29T10:00:00Z"), at);
        assert_eq!(
            parse_expires_comment("# EXPIRES: 2026-11-29 10:00:00 UTC"),
            at
        );
        assert_eq!(parse_expires_comment("# expiresAt 2026"), None);
        assert_eq!(parse_expires_comment("# just a note"), None);
    }
}

/// Parses a duration like `90s`, `15m`, `12h`, `1h30m`, `2d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<i64>() {
        return chrono::Duration::try_seconds(secs).filter(|d| *d >= chrono::Duration::zero());
    }
    let mut total = chrono::Duration::zero();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        let part = match c {
            's' => chrono::Duration::try_seconds(n)?,
            'm' => chrono::Duration::try_minutes(n)?,
            'h' => chrono::Duration::try_hours(n)?,
            'd' => chrono::Duration::try_days(n)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
    }
    number.is_empty().then_some(total)
}

/// `3h12m`, `45m`, `30s`, `2d4h`: a short human form of a positive duration.
pub fn format_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("12h", Some(43_200)),
            ("1h30m", Some(5400)),
            ("2d", Some(172_800)),
            ("45", Some(45)),
            ("", None),
            ("1x", None),
            ("h", None),
            ("1h3", None),
            ("-5", None),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text).map(|d| d.num_seconds()),
                secs,
                "{text:?}"
            );
        }
        assert_eq!(
            format_duration(chrono::Duration::seconds(3 * 3600 + 12 * 60 + 5)),
            "3h12m"
        );
        assert_eq!(format_duration(chrono::Duration::seconds(45 * 60)), "45m");
        assert_eq!(format_duration(chrono::Duration::seconds(30)), "30s");
        assert_eq!(format_duration(chrono::Duration::seconds(-30)), "0s");
        assert_eq!(format_duration(chrono::Duration::hours(52)), "2d4h");
    }
}

/// The expiry to use for a profile: what the files or the SSO cache say, else an estimate
/// from when its current token was first seen (`seen`: fingerprint and time) for kinds
/// whose sessions end, else `None` (unknown).
pub fn effective(
    profile: &crate::profile::Profile,
    seen: Option<(&str, DateTime<Utc>)>,
    session_length: chrono::Duration,
) -> Option<Expiry> {
    use crate::profile::ProfileKind;
    if let Some(expiry) = &profile.expiry {
        return Some(expiry.clone());
    }
    let estimable = matches!(profile.kind, ProfileKind::Session | ProfileKind::Sso);
    let (fingerprint, first_seen) = seen?;
    (estimable && profile.fingerprint.as_deref() == Some(fingerprint))
        .then(|| Expiry::at(first_seen + session_length, ExpirySource::Estimated))
}

#[cfg(test)]
mod effective_tests {
    use super::*;

    #[test]
    fn estimated_only_for_the_token_first_seen() {
        let v = crate::profile::parse_files(
            "",
            "[s]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = x\naws_session_token = t\n\
             [k]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = x\n",
        );
        let s = v.get("s").expect("s");
        let fp = s.fingerprint.clone().expect("fp");
        let seen = Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
        let twelve = chrono::Duration::hours(12);
        let e = effective(s, Some((&fp, seen)), twelve).expect("estimated");
        assert_eq!(e.source, ExpirySource::Estimated);
        assert_eq!(e.when(), Some(seen + twelve));
        assert_eq!(effective(s, Some(("other", seen)), twelve), None);
        assert_eq!(effective(s, None, twelve), None);
        let k = v.get("k").expect("k");
        assert_eq!(effective(k, None, twelve), Some(Expiry::never()));
    }
}
