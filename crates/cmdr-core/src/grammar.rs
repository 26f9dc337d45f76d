//! The AWS shared-file grammar, rule for rule as the SDK's own parser reads it (aws-runtime's
//! `env_config`: `parse.rs` for lines, comments, continuation lines and sub-properties;
//! `normalize.rs` for section names, `[profile default]` over `[default]`, key checks and
//! the per-key merge, credentials over config), but borrowing from the input instead of
//! copying it into hash maps.
//!
//! Why not call the SDK: on 5,000 profiles its parser alone takes 40–70 ms here, above the
//! whole budget for a change (docs/benchmarks.md: 20× botocore). The SDK stays the
//! authority: cmdr-oracle's tests run the SDK's own test suite through both, a property test
//! and a fuzz target compare the two on hostile files, and `cmdrctl doctor` reports any
//! disagreement (`cmdr_oracle::disagreement`).
//!
//! Public for that oracle alone; the rest of cmdr reads the files through `profile`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::PerFile;
use crate::expiry::parse_expires_comment;
use crate::profile::{FileKind, ParseError};

mod isolate;
mod normalize;
mod redact;
#[cfg(test)]
mod tests;

pub use isolate::CREDENTIAL_SOURCES;
pub(crate) use isolate::{default_credentials, without_credentials};
pub(crate) use redact::{STAND_IN, redact};

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
pub struct Props<'a> {
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

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|at| self.entries[at].1.as_ref())
    }

    pub(crate) fn get_non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every key and value, in the order the keys first appeared.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// One profile after both files are merged.
#[derive(Debug, Default)]
pub struct Section<'a> {
    pub props: Props<'a>,
    /// Which files define a section for it.
    pub(crate) sources: PerFile<bool>,
    /// The last `# Expires:` comment in its section; the credentials file's wins.
    pub(crate) expires_comment: Option<DateTime<Utc>>,
    /// The header that first introduced it, per file: another spelling gets a warning.
    spelling: PerFile<Option<&'a str>>,
}

/// What the SDKs would see: profiles and `[sso-session x]` sections, plus what they drop.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub profiles: BTreeMap<&'a str, Section<'a>>,
    pub sso_sessions: BTreeMap<&'a str, Section<'a>>,
    pub warnings: Vec<String>,
}

/// Parses and merges both files (config first, then credentials, as the SDKs do). Every
/// file that breaks the grammar gives one error, with its line and the SDK's wording.
pub fn parse<'a>(config: &'a str, credentials: &'a str) -> Result<Parsed<'a>, Vec<ParseError>> {
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
        normalize::merge_in(&mut parsed, kind, raw);
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
