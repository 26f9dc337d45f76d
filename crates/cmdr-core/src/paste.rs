//! The "Option 2" block the AWS access portal shows, and the byte-preserving edit that puts
//! it into a credentials file: only the target profile's key lines change; comments, order,
//! blank lines, other profiles and line endings stay exactly as they were.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::expiry::{EXPIRY_KEYS, parse_expires_comment};

/// The largest block accepted on stdin.
pub const MAX_BLOCK_LEN: usize = 64 * 1024;

const ACCESS_KEY: &str = "aws_access_key_id";
const SECRET_KEY: &str = "aws_secret_access_key";
const TOKEN_KEY: &str = "aws_session_token";

/// A parsed block. `Debug` never shows the secrets; memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Block {
    pub profile: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("profile", &self.profile)
            .field(
                "access_key_id",
                &crate::profile::mask_access_key_id(&self.access_key_id),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    #[error("nothing to paste: standard input is empty")]
    Empty,
    #[error("the input is not text (binary data or invalid UTF-8)")]
    Binary,
    #[error("the input is larger than {} KiB", MAX_BLOCK_LEN / 1024)]
    TooLarge,
    #[error("line {0}: expected a `[profile]` header first (or pass --profile NAME)")]
    NoHeader(usize),
    #[error("line {0}: only one profile can be pasted at a time")]
    SecondSection(usize),
    #[error("line {0}: invalid section header")]
    BadHeader(usize),
    #[error("line {0}: expected `key = value`")]
    BadLine(usize),
    #[error(
        "line {line}: unexpected key `{key}` (expected {ACCESS_KEY}, {SECRET_KEY}, {TOKEN_KEY})"
    )]
    UnknownKey { line: usize, key: String },
    #[error("line {0}: a key appears twice")]
    DuplicateKey(usize),
    #[error("`{0}` is missing from the input")]
    MissingKey(&'static str),
    #[error("`{0}` is empty")]
    EmptyValue(&'static str),
    #[error("invalid profile name `{0}`")]
    BadProfileName(String),
    #[error("`{0}` contains `#` or `;`, which the AWS SDKs would read as a comment")]
    CommentChar(&'static str),
}

/// Parses the block: one optional `[name]` header and the three keys; CRLF, surrounding
/// blank lines and spaces around `=` are fine. Error messages never quote values.
pub fn parse_block(input: &[u8]) -> Result<Block, PasteError> {
    if input.len() > MAX_BLOCK_LEN {
        return Err(PasteError::TooLarge);
    }
    let text = std::str::from_utf8(input).map_err(|_| PasteError::Binary)?;
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(PasteError::Binary);
    }
    if text.trim().is_empty() {
        return Err(PasteError::Empty);
    }
    let mut profile = None;
    let mut seen_header = false;
    let mut seen_key = false;
    let (mut akid, mut secret, mut token) = (None, None, None);
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if seen_header || seen_key {
                return Err(PasteError::SecondSection(number));
            }
            let name = line
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .map(str::trim)
                .filter(|n| valid_profile_name(n))
                .ok_or(PasteError::BadHeader(number))?;
            profile = Some(name.to_owned());
            seen_header = true;
            continue;
        }
        let (line, shell) = shell_assignment(line);
        let (key, value) = line.split_once('=').ok_or(PasteError::BadLine(number))?;
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        let value = if shell { unquote(value) } else { value }.to_owned();
        if shell && value.contains(['"', '\'']) {
            return Err(PasteError::BadLine(number));
        }
        let slot = match key.as_str() {
            ACCESS_KEY => &mut akid,
            SECRET_KEY => &mut secret,
            TOKEN_KEY | "aws_security_token" => &mut token,
            _ => return Err(PasteError::UnknownKey { line: number, key }),
        };
        if slot.is_some() {
            return Err(PasteError::DuplicateKey(number));
        }
        *slot = Some(value);
        seen_key = true;
    }
    let required = |value: Option<String>, key: &'static str| match value {
        None => Err(PasteError::MissingKey(key)),
        Some(v) if v.is_empty() => Err(PasteError::EmptyValue(key)),
        Some(v) => Ok(v),
    };
    let block = Block {
        profile,
        access_key_id: required(akid, ACCESS_KEY)?,
        secret_access_key: required(secret, SECRET_KEY)?,
        session_token: match token {
            Some(t) if t.is_empty() => return Err(PasteError::EmptyValue(TOKEN_KEY)),
            t => t,
        },
    };
    if block
        .access_key_id
        .chars()
        .chain(block.secret_access_key.chars())
        .chain(block.session_token.iter().flat_map(|t| t.chars()))
        .any(char::is_whitespace)
    {
        return Err(PasteError::BadLine(0));
    }
    // AWS keys and tokens never hold `#` or `;`, and written as `key = #…` the SDKs would
    // read the value as a comment (found by the `paste` fuzz property).
    for (key, value) in [
        (ACCESS_KEY, Some(&block.access_key_id)),
        (SECRET_KEY, Some(&block.secret_access_key)),
        (TOKEN_KEY, block.session_token.as_ref()),
    ] {
        if value.is_some_and(|v| v.contains(['#', ';'])) {
            return Err(PasteError::CommentChar(key));
        }
    }
    Ok(block)
}

/// The portal's "Set AWS environment variables" blocks: `export AWS_…="…"` (macOS and
/// Linux), `set AWS_…=…` (Windows), `$Env:AWS_… = "…"` (PowerShell). Returns the line
/// without that prefix and whether it had one; the variable names, lower-cased, are the
/// credentials file's keys.
fn shell_assignment(line: &str) -> (&str, bool) {
    for prefix in ["export ", "set ", "$env:"] {
        if line
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            return (line[prefix.len()..].trim_start(), true);
        }
    }
    (line, false)
}

/// A shell value in matching single or double quotes, without them.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// A name the SDKs accept for a profile: they silently drop sections with any other
/// character (`validate_identifier` in aws-runtime), so credentials pasted under such a
/// name would be invisible to them (found by the `paste` fuzz property).
pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || ['_', '-', '/', '.', '%', '@', ':', '+'].contains(&c)
        })
}

/// Puts `block` into the credentials file text as profile `profile`, with an optional
/// `x_security_token_expires` value. In every `[profile]` section, the key lines cmdr
/// manages (keys, token, expiry keys, `# Expires:` comments) are replaced in place in the
/// last section and dropped from earlier duplicates; new keys go after the section's last
/// key line; a missing section is appended. Every other byte is kept.
pub fn apply(file: &str, profile: &str, block: &Block, expires: Option<&str>) -> String {
    let newline = if file.contains("\r\n") { "\r\n" } else { "\n" };
    let lines = split_lines(file);
    let sections = sections_named(&lines, profile);
    let mut wanted: Vec<(&str, String)> = vec![
        (ACCESS_KEY, block.access_key_id.clone()),
        (SECRET_KEY, block.secret_access_key.clone()),
    ];
    if let Some(token) = &block.session_token {
        wanted.push((TOKEN_KEY, token.clone()));
    }
    if let Some(at) = expires {
        wanted.push(("x_security_token_expires", at.to_owned()));
    }
    let render = |key: &str, value: &str| format!("{key} = {value}{newline}");

    let Some(last) = sections.last().cloned() else {
        // Append a new section, separated by one blank line.
        let mut out = file.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(newline);
        }
        if !out.trim().is_empty() && !out.ends_with(&format!("{newline}{newline}")) {
            out.push_str(newline);
        }
        out.push_str(&format!("[{profile}]{newline}"));
        for (key, value) in &wanted {
            out.push_str(&render(key, value));
        }
        return out;
    };

    let mut out = String::with_capacity(file.len() + 256);
    let mut written: Vec<&str> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let in_section = sections.iter().find(|s| s.body.contains(&index));
        // Not `continue` for lines outside a body: the header of a section without key
        // lines is where its missing keys go (below).
        match in_section.map(|section| (section, managed_key(line))) {
            None | Some((_, None)) => out.push_str(line),
            Some((section, Some(key))) if section.header == last.header => {
                // Replace the first line of each wanted key in place; drop the rest.
                if let Some((k, v)) = wanted.iter().find(|(k, _)| *k == key)
                    && !written.contains(k)
                {
                    let ending = if line.ends_with("\r\n") {
                        "\r\n"
                    } else if line.ends_with('\n') {
                        "\n"
                    } else {
                        ""
                    };
                    out.push_str(&format!("{k} = {v}{ending}"));
                    if ending.is_empty() {
                        out.push_str(newline);
                    }
                    written.push(k);
                }
            }
            Some(_) => {}
        }
        if index == last.insert_after {
            for (key, value) in &wanted {
                if !written.contains(key) {
                    if !out.ends_with('\n') {
                        out.push_str(newline);
                    }
                    out.push_str(&render(key, value));
                    written.push(key);
                }
            }
        }
    }
    out
}

/// The keys cmdr owns inside a pasted profile: everything that describes the old session.
fn managed_key(line: &str) -> Option<&'static str> {
    let trimmed = line.trim_start();
    if line.starts_with([' ', '\t']) {
        return None;
    }
    if trimmed.starts_with(['#', ';']) {
        return parse_expires_comment(trimmed.trim_end()).map(|_| "# expires");
    }
    let key = trimmed.split_once('=')?.0.trim().to_ascii_lowercase();
    [ACCESS_KEY, SECRET_KEY, TOKEN_KEY, "aws_security_token"]
        .into_iter()
        .chain(EXPIRY_KEYS.iter().copied())
        .find(|k| *k == key)
}

/// Lines with their endings kept, so joining them gives the file back byte for byte.
fn split_lines(file: &str) -> Vec<&str> {
    file.split_inclusive('\n').collect()
}

#[derive(Debug, Clone)]
struct Section {
    header: usize,
    /// Lines after the header up to the next header (exclusive).
    body: std::ops::Range<usize>,
    /// Where missing keys go: the last key line, or the header.
    insert_after: usize,
}

fn sections_named(lines: &[&str], profile: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if header_name(line).as_deref() == Some(profile) {
            let end = (index + 1..lines.len())
                .find(|&i| lines[i].starts_with('['))
                .unwrap_or(lines.len());
            let insert_after = (index + 1..end)
                .rev()
                .find(|&i| {
                    let l = lines[i];
                    !l.trim().is_empty() && !l.trim_start().starts_with(['#', ';'])
                })
                .unwrap_or(index);
            out.push(Section {
                header: index,
                body: index + 1..end,
                insert_after,
            });
            index = end;
        } else {
            index += 1;
        }
    }
    out
}

/// The section a header line opens, as the SDKs read it: after `]` only whitespace or a
/// comment may follow, or the line is not a header of that section.
fn header_name(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let rest = inner[close + 1..].trim_matches([' ', '\t', '\r', '\n']);
    if !(rest.is_empty() || rest.starts_with(['#', ';'])) {
        return None;
    }
    Some(inner[..close].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::profile::{FileKind, Inputs, check_file, parse_view};

    fn block(token: &str) -> Block {
        Block {
            profile: Some("acme".into()),
            access_key_id: "ASIANEWKEY".into(),
            secret_access_key: "NEWSECRET".into(),
            session_token: Some(token.into()),
        }
    }

    fn creds_of(text: &str, profile: &str) -> (String, String, Option<String>) {
        let cache = BTreeMap::new();
        let view = parse_view(Inputs {
            config: b"",
            credentials: text.as_bytes(),
            sso_cache: &cache,
        })
        .expect("parses");
        let c = view
            .get(profile)
            .and_then(|p| p.credentials.as_deref().cloned())
            .expect("credentials");
        (
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
        )
    }

    #[test]
    fn parses_portal_blocks() {
        let ok = [
            "[123456789012_Admin]\naws_access_key_id=ASIA1\naws_secret_access_key=S\naws_session_token=T\n",
            "\r\n\r\n[p]\r\naws_access_key_id = ASIA1\r\naws_secret_access_key  =  S\r\naws_session_token= T\r\n\r\n",
            "aws_access_key_id = ASIA1\naws_secret_access_key = S\n",
        ];
        for input in ok {
            let b = parse_block(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(b.access_key_id, "ASIA1");
            assert_eq!(b.secret_access_key, "S");
        }
        let b = parse_block(ok[0].as_bytes()).expect("ok");
        assert_eq!(b.profile.as_deref(), Some("123456789012_Admin"));
        assert_eq!(b.session_token.as_deref(), Some("T"));
        let secret =
            parse_block(b"aws_access_key_id = ASIA1\naws_secret_access_key = SECRETVALUE\n")
                .expect("ok");
        assert!(!format!("{secret:?}").contains("SECRETVALUE"));
    }

    #[test]
    fn parses_environment_variable_blocks() {
        let blocks = [
            "export AWS_ACCESS_KEY_ID=\"ASIA1\"\nexport AWS_SECRET_ACCESS_KEY=\"S/+x\"\nexport AWS_SESSION_TOKEN=\"T==\"\n",
            "SET AWS_ACCESS_KEY_ID=ASIA1\r\nSET AWS_SECRET_ACCESS_KEY=S/+x\r\nSET AWS_SESSION_TOKEN=T==\r\n",
            "$Env:AWS_ACCESS_KEY_ID=\"ASIA1\"\n$Env:AWS_SECRET_ACCESS_KEY = 'S/+x'\n$env:AWS_SESSION_TOKEN=\"T==\"\n",
            "[named]\nexport AWS_ACCESS_KEY_ID=ASIA1\nexport AWS_SECRET_ACCESS_KEY=S/+x\nexport AWS_SESSION_TOKEN=T==\n",
        ];
        for input in blocks {
            let b = parse_block(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(
                (b.access_key_id.as_str(), b.secret_access_key.as_str()),
                ("ASIA1", "S/+x"),
                "{input:?}"
            );
            assert_eq!(b.session_token.as_deref(), Some("T=="), "{input:?}");
        }
        assert_eq!(parse_block(blocks[0].as_bytes()).expect("ok").profile, None);
        assert_eq!(
            parse_block(blocks[3].as_bytes())
                .expect("ok")
                .profile
                .as_deref(),
            Some("named")
        );
        // An unbalanced quote is a copy cut short, not part of a key.
        assert_eq!(
            parse_block(b"export AWS_ACCESS_KEY_ID=\"A\nexport AWS_SECRET_ACCESS_KEY=S\n"),
            Err(PasteError::BadLine(1))
        );
    }

    #[test]
    fn rejects_bad_blocks_without_quoting_them() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n\n", "empty"),
            (b"\x00\x01\x02binary", "not text"),
            (b"\xff\xfe", "not text"),
            (b"[a]\naws_access_key_id = A\n", "aws_secret_access_key"),
            (b"[a]\naws_secret_access_key = S\n", "aws_access_key_id"),
            (
                b"[a]\naws_access_key_id = A\naws_secret_access_key = S\n[b]\n",
                "one profile",
            ),
            (
                b"[a]\naws_access_key_id = A\naws_secret_access_key = S\nregion = x\n",
                "unexpected key",
            ),
            (
                b"[a]\naws_access_key_id = A\nnonsense SECRETVALUE\n",
                "expected `key = value`",
            ),
            (b"[a\naws_access_key_id = A\n", "invalid section"),
            // Regression (fuzz): the SDKs would read `= #…` as an empty value.
            (
                b"aws_access_key_id = A\naws_secret_access_key = #]SECRETVALUE\n",
                "read as a comment",
            ),
            (
                b"aws_access_key_id = A\naws_secret_access_key = S\naws_session_token = x;SECRETVALUE\n",
                "read as a comment",
            ),
            (
                b"[a]\naws_access_key_id = A\naws_access_key_id = B\naws_secret_access_key = S\n",
                "twice",
            ),
            (
                b"[a]\naws_access_key_id = \naws_secret_access_key = S\n",
                "is empty",
            ),
        ];
        for (input, message) in cases {
            let err = parse_block(input).expect_err("must fail").to_string();
            assert!(err.contains(message), "{input:?}: {err}");
            assert!(!err.contains("SECRETVALUE"), "{err}");
        }
        assert_eq!(
            parse_block(&vec![b'a'; MAX_BLOCK_LEN + 1]),
            Err(PasteError::TooLarge)
        );
    }

    fn check(before: &str, expected: &str) {
        let after = apply(before, "acme", &block("NEWTOKEN"), None);
        assert_eq!(after, expected, "\n--- before ---\n{before}");
        check_file(FileKind::Credentials, after.as_bytes()).expect("result parses");
        assert_eq!(
            creds_of(&after, "acme"),
            (
                "ASIANEWKEY".into(),
                "NEWSECRET".into(),
                Some("NEWTOKEN".into())
            )
        );
    }

    /// Regression (found by the `paste` property in `fuzz/props.rs`): a section with a
    /// header and no key lines got no keys at all; the edited file had no credentials.
    #[test]
    fn section_without_key_lines_gets_the_keys() {
        let new = "aws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n";
        check("[acme]\n", &format!("[acme]\n{new}"));
        check("[acme]", &format!("[acme]\n{new}"));
        check(
            "[acme]\n# a comment\n\n[b]\nx = 1\n",
            &format!("[acme]\n{new}# a comment\n\n[b]\nx = 1\n"),
        );
        check(
            "[acme]\r\n",
            &format!("[acme]\r\n{}", new.replace('\n', "\r\n")),
        );
    }

    #[test]
    fn profile_names_are_those_the_sdks_accept() {
        for ok in ["acme", "123456789012_Admin", "a-b.c/d%e@f:g+h"] {
            assert!(valid_profile_name(ok), "{ok}");
        }
        // Regression (fuzz): `!` and other characters make the SDKs drop the section.
        for bad in ["", "a b", "a!b", "a[b", "a#b", "a;b", "ünï", "a\tb", "a\"b"] {
            assert!(!valid_profile_name(bad), "{bad}");
        }
    }

    #[test]
    fn edits_only_the_target_section() {
        let new = "aws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n";
        let cases: Vec<(String, String)> = vec![
            // Empty file: a new section.
            (String::new(), format!("[acme]\n{new}")),
            // Appended after other profiles, one blank line between.
            ("# my creds\n[other]\nx = 1\n".into(), format!("# my creds\n[other]\nx = 1\n\n[acme]\n{new}")),
            ("[other]\nx = 1".into(), format!("[other]\nx = 1\n\n[acme]\n{new}")),
            // Replaced in place; comments, order, region and the other profile kept.
            (
                "[a]\nk=1\n\n# work\n[acme] ; mine\nregion=eu-west-1\naws_access_key_id=OLD\n# keep me\naws_secret_access_key =OLD\naws_session_token= OLD\nx_security_token_expires = 2020-01-01T00:00:00Z\n\n[z]\nq = 2\n".into(),
                "[a]\nk=1\n\n# work\n[acme] ; mine\nregion=eu-west-1\naws_access_key_id = ASIANEWKEY\n# keep me\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n\n[z]\nq = 2\n".into(),
            ),
            // Static keys gain a token after the last key line.
            (
                "[acme]\naws_access_key_id = OLD\naws_secret_access_key = OLD\n# trailing comment\n\n[b]\n".into(),
                "[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n# trailing comment\n\n[b]\n".into(),
            ),
            // CRLF files stay CRLF.
            (
                "[b]\r\nx = 1\r\n[acme]\r\naws_access_key_id = OLD\r\naws_secret_access_key = OLD\r\n".into(),
                "[b]\r\nx = 1\r\n[acme]\r\naws_access_key_id = ASIANEWKEY\r\naws_secret_access_key = NEWSECRET\r\naws_session_token = NEWTOKEN\r\n".into(),
            ),
            // Duplicate sections: managed keys leave the first, the last gets the values.
            (
                "[acme]\naws_session_token = OLD1\nregion = x\n[b]\ny = 2\n[acme]\naws_access_key_id = OLD\naws_secret_access_key = OLD\n".into(),
                "[acme]\nregion = x\n[b]\ny = 2\n[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = NEWTOKEN\n".into(),
            ),
            // A stale `# Expires:` comment goes with the old session; a last line without newline.
            (
                "[acme]\n# Expires: 2020-01-01T00:00:00Z\naws_access_key_id = OLD\naws_secret_access_key = OLD".into(),
                format!("[acme]\n{new}"),
            ),
        ];
        for (before, expected) in cases {
            check(&before, &expected);
        }
    }

    /// Found by the paste fuzz target: junk after `]` means the SDKs do not read the line
    /// as that profile's header, so the keys must go into a real `[acme]` section.
    #[test]
    fn a_header_with_trailing_junk_is_not_the_section() {
        let before = "[acme]\u{1a}ibe-=\n[other]\nx = 1\n";
        let after = apply(before, "acme", &block("T"), None);
        assert!(after.starts_with(before), "{after:?}");
        assert!(after.ends_with("[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\naws_session_token = T\n"));
        let comment = apply(
            "[acme] # mine\naws_access_key_id = OLD\naws_secret_access_key = OLD\n",
            "acme",
            &block("T"),
            None,
        );
        assert!(
            comment.starts_with("[acme] # mine\naws_access_key_id = ASIANEWKEY\n"),
            "{comment}"
        );
    }

    #[test]
    fn expiry_is_written_and_tokens_can_be_dropped() {
        let mut b = block("T");
        b.session_token = None;
        let after = apply(
            "[acme]\naws_access_key_id = A\naws_secret_access_key = S\naws_session_token = OLD\n",
            "acme",
            &b,
            Some("2026-11-29T10:00:00Z"),
        );
        assert_eq!(
            after,
            "[acme]\naws_access_key_id = ASIANEWKEY\naws_secret_access_key = NEWSECRET\nx_security_token_expires = 2026-11-29T10:00:00Z\n"
        );
    }
}
