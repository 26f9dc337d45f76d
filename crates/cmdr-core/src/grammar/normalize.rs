//! Section names and the merge of both files, as aws-runtime's `normalize.rs` does it:
//! invalid names and keys dropped with a warning, `[profile default]` over `[default]`,
//! later values winning.

use super::{INDEX_AT, Parsed, RawSection, is_blank, trim};
use crate::profile::FileKind;

/// `SectionPair::parse`: `[prefix name]` or `[name]`.
pub(super) fn section_pair(header: &str) -> (Option<&str>, &str) {
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

/// The rule a section name breaks, as the Rust SDK applies it.
const NAME_RULE: &str = " (a name may hold only A-Z a-z 0-9 and _ - / . % @ : +)";

/// Whether a section's problem is its name's characters.
fn why_is_name(problem: &Option<String>) -> bool {
    problem.as_deref().is_some_and(|p| p.ends_with(NAME_RULE))
}

/// `merge_in` in aws-runtime's `normalize.rs`: checks section names (dropping invalid
/// ones with a warning), lets `[profile default]` replace `[default]`, and merges the
/// properties with valid keys into the result, later values winning.
pub(super) fn merge_in<'a>(parsed: &mut Parsed<'a>, kind: FileKind, raw: Vec<RawSection<'a>>) {
    let label = kind.label();
    let mut valid = Vec::with_capacity(raw.len());
    for section in raw {
        let (prefix, name) = section_pair(section.header);
        let problem = match (kind, prefix) {
            (FileKind::Config, Some(_)) if !is_identifier(name) => {
                Some(format!("`{name}` is not a valid name{NAME_RULE}"))
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
                Some(format!("`{name}` is not a valid name{NAME_RULE}"))
            }
            _ => None,
        };
        // Checked against the SDKs: boto3 and the AWS CLI (botocore's configparser) read a
        // name such as `acmé-prød`; the AWS SDK for Rust, and so cmdr, drop it.
        let by = if why_is_name(&problem) {
            "the AWS SDK for Rust and cmdr (boto3 and the AWS CLI do read it)"
        } else {
            "the AWS SDKs"
        };
        match problem {
            Some(why) => parsed.warnings.push(format!(
                "{label} file, line {}: section [{}] is ignored by {by}: {why}",
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
        // Two spellings of one section (`[profile a]`, `[profile  a]`): the SDKs merge them
        // in hash-map order, so where both set a key either value may win.
        let first = *target.spelling[kind].get_or_insert(section.header);
        if first != section.header {
            parsed.warnings.push(format!(
                "{label} file, line {}: [{}] and [{}] are the same section; \
                 where they set the same key, the AWS SDKs may use either value",
                section.line,
                first.trim(),
                section.header.trim()
            ));
        }
        target.sources[kind] = true;
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
                 SDK for Rust and cmdr (boto3 and the AWS CLI read them): a key may hold only \
                 A-Z a-z 0-9 and _ - / . % @ : +",
                section.header.trim(),
                section.line
            ));
        }
    }
}
