//! The AWS shared-file grammar, rule for rule as the SDK's own parser reads it (aws-runtime's
//! `env_config`: `parse.rs` for lines, comments, continuation lines and sub-properties;
//! `normalize.rs` for section names, `[profile default]` over `[default]`, key checks and
//! the per-key merge, credentials over config), but borrowing from the input instead of
//! copying it into hash maps.
//!
//! Why not call the SDK: on 5,000 profiles its parser alone takes 40–70 ms here, above the
//! whole budget for a change (issue 7: 20× botocore). The SDK stays the authority: the unit
//! tests run the SDK's own test suite through both, a property test and a fuzz target
//! compare the two on hostile files, and `cmdrctl doctor` reports any disagreement.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::expiry::parse_expires_comment;
use crate::profile::{FileKind, ParseError};

/// The SDK counts only these as whitespace here (not `char::is_whitespace`); both are
/// ASCII, so trimming them byte-wise is the same as its `trim_matches(&[' ', '\t'])`.
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(s: &str) -> &str {
    let bytes = s.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_blank(*b))
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

fn starts_blank(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|b| is_blank(*b))
}

fn starts_comment(s: &str) -> bool {
    s.as_bytes()
        .first()
        .is_some_and(|b| *b == b'#' || *b == b';')
}
/// A section with more keys than this gets an index, so no file can make parsing quadratic.
const INDEX_AT: usize = 32;

/// The properties of one section: later values replace earlier ones per key.
#[derive(Debug, Default)]
pub(crate) struct Props<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    index: Option<HashMap<String, usize>>,
}

impl<'a> Props<'a> {
    fn with_capacity(n: usize) -> Self {
        Props {
            entries: Vec::with_capacity(n),
            index: None,
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    /// Sets `key`, returning where its value lives (for continuation lines).
    fn insert(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) -> usize {
        if let Some(at) = self.position(&key) {
            self.entries[at].1 = value;
            return at;
        }
        let at = self.entries.len();
        if let Some(index) = &mut self.index {
            index.insert(key.clone().into_owned(), at);
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > INDEX_AT {
            self.reindex();
        }
        at
    }

    fn reindex(&mut self) {
        self.index = Some(
            self.entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone().into_owned(), i))
                .collect(),
        );
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|at| self.entries[at].1.as_ref())
    }

    pub(crate) fn get_non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every key and value, in the order the keys first appeared.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// One profile after both files are merged.
#[derive(Debug, Default)]
pub(crate) struct Section<'a> {
    pub(crate) props: Props<'a>,
    /// Which files define a section for it: `[config, credentials]`.
    pub(crate) sources: [bool; 2],
    /// The last `# Expires:` comment in its section; the credentials file's wins.
    pub(crate) expires_comment: Option<DateTime<Utc>>,
    /// The header that first introduced it, per file: another spelling gets a warning.
    spelling: [Option<&'a str>; 2],
}

/// What the SDKs would see: profiles and `[sso-session x]` sections, plus what they drop.
#[derive(Debug, Default)]
pub(crate) struct Parsed<'a> {
    pub(crate) profiles: BTreeMap<&'a str, Section<'a>>,
    pub(crate) sso_sessions: BTreeMap<&'a str, Section<'a>>,
    pub(crate) warnings: Vec<String>,
}

/// Parses and merges both files (config first, then credentials, as the SDKs do). Every
/// file that breaks the grammar gives one error, with its line and the SDK's wording.
pub(crate) fn parse<'a>(
    config: &'a str,
    credentials: &'a str,
) -> Result<Parsed<'a>, Vec<ParseError>> {
    let files = [
        (FileKind::Config, parse_raw(FileKind::Config, config)),
        (
            FileKind::Credentials,
            parse_raw(FileKind::Credentials, credentials),
        ),
    ];
    let mut errors = Vec::new();
    let mut raws = Vec::new();
    for (kind, raw) in files {
        match raw {
            Ok(raw) => raws.push((kind, raw)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut parsed = Parsed::default();
    for (kind, raw) in raws {
        merge_in(&mut parsed, kind, raw);
    }
    Ok(parsed)
}

/// Checks one file against the grammar alone.
pub(crate) fn check(kind: FileKind, text: &str) -> Result<(), ParseError> {
    parse_raw(kind, text).map(|_| ())
}

/// A section as written, before its name is checked: `header` is the text between the
/// brackets. A header that appears again starts another one; merging in file order gives
/// what the SDK gets by keying raw sections by header.
struct RawSection<'a> {
    header: &'a str,
    line: usize,
    props: Props<'a>,
    expires_comment: Option<DateTime<Utc>>,
}

/// `parse_profile_file` in aws-runtime's `parse.rs`.
fn parse_raw(kind: FileKind, text: &str) -> Result<Vec<RawSection<'_>>, ParseError> {
    // Each header starts a new entry, even one seen before: the SDK folds repeats into the
    // first (keyed by header), and merging them in file order gives the same values.
    let mut sections: Vec<RawSection<'_>> = Vec::new();
    // The section being read, and the property continuation lines extend (with whether
    // it opened a sub-property block).
    let mut current: Option<(usize, Option<(usize, bool)>)> = None;
    for (index, line) in lines(text).enumerate() {
        let number = index + 1;
        let error = |message: &str| ParseError {
            file: kind,
            line: u32::try_from(number).ok(),
            message: message.to_owned(),
        };
        if trim(line).is_empty() {
            continue;
        }
        if starts_comment(line) {
            if let (Some((section, _)), Some(at)) = (current, parse_expires_comment(line)) {
                sections[section].expires_comment = Some(at);
            }
            continue;
        }
        if line.starts_with('[') {
            let prepared = prepare_line(line, false);
            let header = prepared
                .strip_prefix('[')
                .ok_or_else(|| error("Profile definition must start with '['"))?
                .strip_suffix(']')
                .ok_or_else(|| error("Profile definition must end with ']'"))?;
            sections.push(RawSection {
                header,
                line: number,
                props: Props::with_capacity(8),
                expires_comment: None,
            });
            current = Some((sections.len() - 1, None));
        } else if starts_blank(line) {
            let Some((section, property)) = current else {
                return Err(error("Expected a profile definition"));
            };
            let Some((at, is_subproperty)) = property else {
                return Err(error("Expected a property definition, found continuation"));
            };
            if is_subproperty {
                parse_property_line(line).map_err(|e| error(e.message("sub-property")))?;
            }
            let trimmed = trim(line);
            // An indented comment is still the profile's `# Expires:` to a reader.
            if starts_comment(trimmed)
                && let Some(at) = parse_expires_comment(trimmed)
            {
                sections[section].expires_comment = Some(at);
            }
            let value = sections[section].props.entries[at].1.to_mut();
            value.push('\n');
            value.push_str(trimmed);
        } else {
            let Some((section, _)) = current else {
                return Err(error("Expected a profile definition"));
            };
            let (key, value) =
                parse_property_line(line).map_err(|e| error(e.message("property")))?;
            let at = sections[section].props.insert(key, Cow::Borrowed(value));
            current = Some((section, Some((at, value.is_empty()))));
        }
    }
    Ok(sections)
}

/// What [`redact`] writes in place of a secret value. No real key or token looks like it.
pub(crate) const STAND_IN: &str = "\u{1}cmdr-redacted\u{1}";

/// `text` (a file that parses) with the value of every secret property replaced by
/// [`STAND_IN`] and its continuation lines blanked; everything else the grammar reads
/// stays, on the same lines. This is what the daemon keeps of a file's last good version: enough to rebuild
/// the view if the file breaks, without a second copy of every token.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len() / 3);
    // Text is copied in runs, up to the next secret.
    let mut copied = 0;
    // While the property being continued is a secret: where its value goes in `out`, and
    // whether the stand-in is there already (an empty value so far has none).
    let mut secret: Option<(usize, bool)> = None;
    let mut at = 0;
    while at < text.len() {
        let end = memchr::memchr(b'\n', &text.as_bytes()[at..]).map_or(text.len(), |i| at + i);
        let line = &text[at..end];
        let line = if end < text.len() {
            line.strip_suffix('\r').unwrap_or(line)
        } else {
            line
        };
        let (start, next) = (at, (end + 1).min(text.len()));
        at = end + 1;
        let first = line.as_bytes().first().copied();
        if trim(line).is_empty() || matches!(first, Some(b'#' | b';')) {
            // Neither ends a property: a continuation may still follow.
            continue;
        }
        if first == Some(b'[') {
            secret = None;
            continue;
        }
        if starts_blank(line) {
            if let Some((value_at, stood_in)) = &mut secret {
                out.push_str(&text[copied..start]);
                if !*stood_in {
                    // An empty value continued on later lines is a value after all.
                    out.insert_str(*value_at, STAND_IN);
                    *stood_in = true;
                }
                // A blank line keeps the line numbers (for warnings) and ends nothing.
                if next > end {
                    out.push('\n');
                }
                copied = next;
            }
            continue;
        }
        // A property line (the file parses): its key is what precedes the first `=`.
        let key = line.split_once('=').map_or("", |(key, _)| trim(key));
        if !crate::profile::SECRET_KEYS
            .iter()
            .any(|s| key.eq_ignore_ascii_case(s))
        {
            secret = None;
            continue;
        }
        let empty = parse_property_line(line).is_ok_and(|(_, value)| value.is_empty());
        out.push_str(&text[copied..start]);
        out.push_str(&key.to_ascii_lowercase());
        out.push_str(" = ");
        let value_at = out.len();
        if !empty {
            out.push_str(STAND_IN);
        }
        out.push('\n');
        secret = Some((value_at, !empty));
        copied = next;
    }
    out.push_str(&text[copied..]);
    out.shrink_to_fit();
    out
}

enum PropertyError {
    NoEquals,
    NoName,
}

impl PropertyError {
    /// The SDK's wording.
    fn message(&self, context: &str) -> &'static str {
        match (self, context) {
            (PropertyError::NoEquals, "property") => "Expected an '=' sign defining a property",
            (PropertyError::NoEquals, _) => "Expected an '=' sign defining a sub-property",
            (PropertyError::NoName, "property") => "Property did not have a name",
            (PropertyError::NoName, _) => "Sub-property did not have a name",
        }
    }
}

fn parse_property_line(line: &str) -> Result<(Cow<'_, str>, &str), PropertyError> {
    let line = prepare_line(line, true);
    let (key, value) = line.split_once('=').ok_or(PropertyError::NoEquals)?;
    let key = trim(key);
    let value = trim(value);
    if key.is_empty() {
        return Err(PropertyError::NoName);
    }
    let key = if key.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(key.to_ascii_lowercase())
    } else {
        Cow::Borrowed(key)
    };
    Ok((key, value))
}

/// Trims the SDK's whitespace and cuts a trailing comment: in a property a `#` or `;`
/// starts one only after whitespace (any Unicode whitespace, as the SDK checks it); in a
/// section header anywhere.
fn prepare_line(line: &str, comments_need_whitespace: bool) -> &str {
    let line = trim(line);
    let bytes = line.as_bytes();
    let mut from = 0;
    let mut cut = None;
    while let Some(found) = memchr::memchr2(b'#', b';', &bytes[from..]) {
        let at = from + found;
        let after_whitespace = line[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        if !comments_need_whitespace || after_whitespace {
            cut = Some(at);
            break;
        }
        from = at + 1;
    }
    trim(cut.map_or(line, |at| &line[..at]))
}

/// `str::lines` (split at `\n`, then drop one `\r` before it), with `memchr`.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let line = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(at) => {
                let line = &rest[..at];
                rest = &rest[at + 1..];
                line.strip_suffix('\r').unwrap_or(line)
            }
            None => std::mem::take(&mut rest),
        };
        Some(line)
    })
}

/// `SectionPair::parse`: `[prefix name]` or `[name]`.
fn section_pair(header: &str) -> (Option<&str>, &str) {
    let header = trim(header);
    match header.bytes().position(is_blank) {
        Some(at) => (Some(header[..at].trim()), header[at + 1..].trim()),
        None => (None, header.trim()),
    }
}

/// `[A-Za-z0-9_\-/.%@:+]*`, as `validate_identifier` in aws-runtime (empty passes).
fn is_identifier(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-/.%@:+".contains(&b))
}

/// `merge_in` in aws-runtime's `normalize.rs`: checks section names (dropping invalid
/// ones with a warning), lets `[profile default]` replace `[default]`, and merges the
/// properties with valid keys into the result, later values winning.
fn merge_in<'a>(parsed: &mut Parsed<'a>, kind: FileKind, raw: Vec<RawSection<'a>>) {
    let label = kind.label();
    let mut valid = Vec::with_capacity(raw.len());
    for section in raw {
        let (prefix, name) = section_pair(section.header);
        let problem = match (kind, prefix) {
            (FileKind::Config, Some(_)) if !is_identifier(name) => {
                Some(format!("`{name}` is not a valid name"))
            }
            (FileKind::Config, None) if name != "default" => Some(
                "config sections other than [default] need a prefix, as in [profile NAME]"
                    .to_owned(),
            ),
            (FileKind::Credentials, Some("profile")) => {
                Some("credentials sections must not start with `profile`".to_owned())
            }
            (FileKind::Credentials, Some(_)) => {
                Some("only profiles belong in the credentials file".to_owned())
            }
            (FileKind::Credentials, None) if !is_identifier(name) => {
                Some(format!("`{name}` is not a valid name"))
            }
            _ => None,
        };
        match problem {
            Some(why) => parsed.warnings.push(format!(
                "{label} file, line {}: section [{}] is ignored by the AWS SDKs: {why}",
                section.line,
                section.header.trim()
            )),
            None => valid.push((prefix, name, section)),
        }
    }
    let prefixed_default = valid
        .iter()
        .any(|(prefix, name, _)| *prefix == Some("profile") && *name == "default");
    for (prefix, name, section) in valid {
        if prefixed_default && prefix.is_none() && name == "default" {
            parsed.warnings.push(format!(
                "{label} file, line {}: section [default] is ignored by the AWS SDKs: \
                 [profile default] takes priority",
                section.line
            ));
            continue;
        }
        let target = match prefix {
            Some("profile") | None => parsed.profiles.entry(name).or_default(),
            Some("sso-session") => parsed.sso_sessions.entry(name).or_default(),
            // `[services x]` and other prefixed config sections: valid, but not profiles.
            Some(_) => continue,
        };
        let file = usize::from(kind == FileKind::Credentials);
        // Two spellings of one section (`[profile a]`, `[profile  a]`): the SDKs merge them
        // in hash-map order, so where both set a key either value may win.
        let first = *target.spelling[file].get_or_insert(section.header);
        if first != section.header {
            parsed.warnings.push(format!(
                "{label} file, line {}: [{}] and [{}] are the same section; \
                 where they set the same key, the AWS SDKs may use either value",
                section.line,
                first.trim(),
                section.header.trim()
            ));
        }
        target.sources[file] = true;
        if let Some(at) = section.expires_comment {
            // The credentials file's comment wins; within a file, the last one.
            target.expires_comment = Some(at);
        }
        let mut entries = section.props.entries;
        if target.props.entries.is_empty() && entries.iter().all(|(k, _)| is_identifier(k)) {
            // The usual case, a section seen for the first time: take its entries whole.
            target.props.entries = entries;
            if target.props.entries.len() > INDEX_AT {
                target.props.reindex();
            }
            continue;
        }
        target.props.entries.reserve(entries.len());
        let mut dropped = 0;
        for (key, value) in entries.drain(..) {
            if is_identifier(&key) {
                target.props.insert(key, value);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            // The key is not quoted: a mangled line may hold part of a secret.
            parsed.warnings.push(format!(
                "{label} file, section [{}] (line {}): {dropped} key(s) ignored by the AWS \
                 SDKs: a key may hold only A-Z a-z 0-9 and _ - / . % @ : +",
                section.header.trim(),
                section.line
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::disagreement;

    /// cmdr and the SDK read `config` and `credentials` alike.
    fn check(config: &str, credentials: &str) {
        if let Some(why) = disagreement(config, credentials) {
            panic!("{why}\nconfig: {config:?}\ncredentials: {credentials:?}");
        }
    }

    #[test]
    fn the_sdk_test_suite_passes_and_agrees() {
        let suite: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/profile-parser-tests.json"))
                .expect("suite");
        let tests = suite["tests"].as_array().expect("tests");
        assert!(tests.len() >= 60, "{}", tests.len());
        for test in tests {
            let name = test["name"].as_str().unwrap_or_default();
            let config = test["input"]["configFile"].as_str().unwrap_or_default();
            let credentials = test["input"]["credentialsFile"]
                .as_str()
                .unwrap_or_default();
            check(config, credentials);
            let output = &test["output"];
            match parse(config, credentials) {
                Err(errors) => {
                    let wanted = output["errorContaining"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: unexpected error {errors:?}"));
                    assert!(
                        errors[0].message.contains(wanted),
                        "{name}: {errors:?} lacks {wanted:?}"
                    );
                }
                Ok(parsed) => {
                    let plain = |props: &Props<'_>| {
                        props
                            .iter()
                            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                            .collect::<serde_json::Map<_, _>>()
                    };
                    let profiles: serde_json::Map<_, _> = parsed
                        .profiles
                        .iter()
                        .map(|(n, s)| ((*n).to_owned(), plain(&s.props).into()))
                        .collect();
                    assert_eq!(
                        serde_json::Value::from(profiles),
                        output["config"]["profiles"],
                        "{name}"
                    );
                    if let Some(expected) = output["config"].get("sso_sessions") {
                        let sessions: serde_json::Map<_, _> = parsed
                            .sso_sessions
                            .iter()
                            .map(|(n, s)| ((*n).to_owned(), plain(&s.props).into()))
                            .collect();
                        assert_eq!(&serde_json::Value::from(sessions), expected, "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn agrees_with_the_sdk_on_odd_files() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("[default]\nregion = a\n[profile default]\nregion = b\n", ""),
            ("[profile default]\nregion = b\n[default]\noutput = c\n", ""),
            ("[ default ]\nregion = a\n", "[ default ]\nregion = z\n"),
            (
                "[profile a]\nregion = x\n[profile a]\nregion = y\noutput = j\n",
                "",
            ),
            ("[profile a]\nRegion = X\nREGION = Y\n", "[a]\nregion = z\n"),
            (
                "[profile a]\ns3 =\n  max_concurrent_requests = 10\n  addressing = path\n",
                "",
            ),
            ("[profile a]\ns3 =\n  no equals\n", ""),
            ("[profile a]\ns3 =\n  = v\n", ""),
            ("[profile a]\nk = v\n  more\n\tand more\n", ""),
            ("[profile a]\n  continuation first\n", ""),
            ("  continuation before any section\n", ""),
            ("k = v\n", ""),
            ("[profile a]\nno equals\n", ""),
            ("[profile a]\n= no name\n", ""),
            ("[profile a\n", ""),
            ("[profile a]]\n", ""),
            (
                "[profile a] # comment\nk = v # comment\nk2 = v#not\nk3 = v ;c\n",
                "",
            ),
            ("[profile a#b]\n", ""),
            ("[profile a;b]\n", ""),
            ("[profile a]\nk = v\u{a0}#after a no-break space\n", ""),
            ("[profile a]\nk = \u{2003};em space\n", ""),
            (
                "[profile a b]\nk = v\n[profile  c]\nk = v\n[profile\tt]\nk=v\n",
                "",
            ),
            (
                "[profile ]\n[profile]\n[]\n[ ]\n",
                "[]\nk = v\n[ ]\nj = w\n",
            ),
            (
                "[notprefixed]\nk = v\n[profile ok]\n",
                "[profile x]\nk = v\n[sso-session s]\nk=v\n",
            ),
            (
                "[profile a]\nbad key = v\nk/e.y@1:2+% = v\nkéy = v\n",
                "[a]\nbad key = 1\n",
            ),
            (
                "[sso-session s]\nsso_start_url = https://x\n[sso-session bad name]\n",
                "",
            ),
            (
                "[services s]\ns3 =\n  endpoint_url = http://x\n[profile a]\nservices = s\n",
                "",
            ),
            (
                "[profile a]\r\nk = v\r\nj = w\r\r\n",
                "[a]\r\naws_access_key_id = A\r\n",
            ),
            ("\u{feff}[profile a]\nk = v\n", ""),
            ("[profile a]\nk = v\n\n\n# c\n; c\n   \n\t\nj = w\n", ""),
            ("#c\n;c\n[profile a]\n", ""),
            (" [profile a]\n", ""),
            ("[profile a]\n [profile b]\n", ""),
            ("[profile a]\nk = =v= \n", ""),
            ("[profile a]\nk=\n\n  sub = 1\n", ""),
            ("[profile a]\nk=v\n[profile b]\n  cont\n", ""),
            ("[profile a]\nk =\n  x = 1\nk = 2\n  y\n", ""),
            ("[profile Éa]\nk = v\n", "[Éa]\nk = v\n"),
        ];
        for (config, credentials) in cases {
            check(config, credentials);
            check(credentials, config);
        }
    }

    #[test]
    fn odd_spellings_and_dropped_sections_are_warned_about() {
        let parsed = parse(
            "[profile a]\nk = 1\n[profile  a]\nk = 2\n[notprefixed]\n[profile a]\nbad key = v\n",
            "[profile x]\n",
        )
        .expect("parses");
        let all = parsed.warnings.join("\n");
        for needle in [
            "[profile a] and [profile  a]",
            "line 5: section [notprefixed]",
            "section [profile a] (line 6): 1 key(s) ignored",
            "credentials file, line 1: section [profile x]",
        ] {
            assert!(all.contains(needle), "{needle:?} not in {all}");
        }
    }

    #[test]
    fn lines_and_trim_match_std() {
        for text in [
            "",
            "a",
            "a\n",
            "a\r\n",
            "a\r",
            "\r\n\r\n",
            "a\n\nb",
            "a\r\r\nb\r",
            "\n",
        ] {
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.lines().collect::<Vec<_>>(),
                "{text:?}"
            );
        }
        for text in ["", " ", " \t a b \t", "\u{a0}a\u{a0}", "\t", "a"] {
            assert_eq!(trim(text), text.trim_matches(&[' ', '\t'][..]), "{text:?}");
        }
    }

    #[test]
    fn sections_with_many_keys_stay_linear() {
        let mut file = String::from("[profile big]\n");
        for i in 0..20_000 {
            file.push_str(&format!("k{i} = {i}\nk{} = again\n", i / 2));
        }
        let parsed = parse(&file, "").expect("parses");
        let big = &parsed.profiles["big"].props;
        assert_eq!(big.get("k0"), Some("again"));
        assert_eq!(big.get("k19999"), Some("19999"));
        assert_eq!(big.iter().count(), 20_000);
    }

    #[test]
    fn errors_carry_the_sdks_wording() {
        let cases: &[(&str, u32, &str)] = &[
            ("k = v\n", 1, "Expected a profile definition"),
            (
                "[profile a]\n\n[b\n",
                3,
                "Profile definition must end with ']'",
            ),
            (
                "[profile a]\nnope\n",
                2,
                "Expected an '=' sign defining a property",
            ),
            ("k = v\n[profile a]\n", 1, "Expected a profile definition"),
            (
                "[profile a]\n = v\n",
                2,
                "Expected a property definition, found continuation",
            ),
            ("[profile a]\n=v\n", 2, "Property did not have a name"),
            (
                "[profile a]\n  x\n",
                2,
                "Expected a property definition, found continuation",
            ),
            (
                "[profile a]\nk =\n  x\n",
                3,
                "Expected an '=' sign defining a sub-property",
            ),
        ];
        for (text, line, message) in cases {
            let errors = parse(text, "").expect_err(text);
            assert_eq!(
                (errors[0].file, errors[0].line, errors[0].message.as_str()),
                (FileKind::Config, Some(*line), *message),
                "{text:?}"
            );
            check(text, "");
        }
        let errors = parse("[broken\n", "[also broken\n").expect_err("both");
        assert_eq!(errors.len(), 2);
    }
}
