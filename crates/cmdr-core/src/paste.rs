//! The "Option 2" block the AWS access portal shows, and the byte-preserving edit that puts
//! it into a credentials file: only the target profile's key lines change; comments, order,
//! blank lines, other profiles and line endings stay exactly as they were.

use std::fmt;

use chrono::{DateTime, Utc};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::expiry::{EXPIRY_KEYS, parse_timestamp};
use crate::keyname::showable;

mod edit;
#[cfg(test)]
mod tests;

pub use edit::apply;

/// The largest block accepted on stdin.
pub const MAX_BLOCK_LEN: usize = 64 * 1024;

const ACCESS_KEY: &str = "aws_access_key_id";
const SECRET_KEY: &str = "aws_secret_access_key";
const TOKEN_KEY: &str = "aws_session_token";

/// A parsed block. `Debug` never shows the secrets; memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Block {
    /// The header's name (`[acme]`, `[profile acme]`) or `AWS_PROFILE`'s, unchecked: see
    /// [`profile_name_problem`].
    pub profile: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// An expiry line of the block (`x_security_token_expires`, `aws_expiration`, …).
    #[zeroize(skip)]
    pub expires: Option<DateTime<Utc>>,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("profile", &self.profile)
            .field(
                "access_key_id",
                &crate::profile::mask_access_key_id(&self.access_key_id),
            )
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a block cannot be pasted. No message quotes a value, nor a key name that could be
/// part of a secret ([`crate::keyname::showable`]): those lines are named by number only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasteError {
    #[error("nothing to paste: standard input is empty")]
    Empty,
    #[error("the input is not text (binary data or invalid UTF-8)")]
    Binary,
    #[error("the input is larger than {} KiB", MAX_BLOCK_LEN / 1024)]
    TooLarge,
    #[error("line {0}: only one profile can be pasted at a time")]
    SecondSection(usize),
    #[error("line {0}: invalid section header (expected `[NAME]` or `[profile NAME]`)")]
    BadHeader(usize),
    #[error("line {0}: expected `key = value`")]
    BadLine(usize),
    #[error(
        "line {line}: unexpected key `{key}` (expected {ACCESS_KEY}, {SECRET_KEY}, {TOKEN_KEY})"
    )]
    UnknownKey { line: usize, key: String },
    #[error(
        "line {0}: not a line of an \"Option 2\" block (not shown: it may hold part of a secret)"
    )]
    UnknownLine(usize),
    #[error(
        "line {line} looks like the rest of line {previous}'s value, wrapped onto a new line: copy the block again, or join the two lines"
    )]
    Wrapped { line: usize, previous: usize },
    #[error("line {0}: a key appears twice")]
    DuplicateKey(usize),
    #[error("`{0}` is missing from the input")]
    MissingKey(&'static str),
    #[error(
        "`{TOKEN_KEY}` is missing: the access key id is a temporary one (ASIA…), which works only with its session token; the token is the long last line of the block, the one most often lost when copying: copy the whole block again"
    )]
    MissingSessionToken,
    #[error(
        "`{SECRET_KEY}` holds what looks like an access key id (AKIA…/ASIA…) and `{ACCESS_KEY}` does not: the two values seem swapped; copy the block again"
    )]
    Swapped,
    #[error(
        "`{SECRET_KEY}` holds hundreds of characters and `{TOKEN_KEY}` 40: the secret key and the session token seem swapped; copy the block again"
    )]
    SwappedToken,
    #[error("`{0}` is empty")]
    EmptyValue(&'static str),
    #[error("line {line}: the value of `{key}` contains a space")]
    Whitespace { line: usize, key: &'static str },
    #[error(
        "line {0}: the expiry is not a time cmdr can read (use RFC 3339, e.g. 2026-11-29T18:00:00Z)"
    )]
    BadExpiry(usize),
    #[error("line {line}: `{variable}` names profile `{named}`, but the header names `{header}`")]
    ProfileMismatch {
        line: usize,
        variable: String,
        named: String,
        header: String,
    },
    #[error("`{0}` contains `#` or `;`, which the AWS SDKs would read as a comment")]
    CommentChar(&'static str),
}

/// Variables that name the profile to use (`export AWS_PROFILE=acme` after a block).
const PROFILE_VARIABLES: [&str; 2] = ["aws_profile", "aws_default_profile"];

/// Parses the block: one optional `[name]` or `[profile name]` header, the keys, an
/// optional expiry line (any of [`crate::expiry::EXPIRY_KEYS`]) and a trailing
/// `export AWS_PROFILE=…`; CRLF, surrounding blank lines and spaces around `=` are fine.
/// Error messages never quote values.
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
    let mut header: Option<String> = None;
    let mut named: Option<(usize, String, String)> = None;
    let mut seen_header = false;
    let mut seen_key = false;
    let (mut akid, mut secret, mut token) = (None, None, None);
    let mut expires: Option<DateTime<Utc>> = None;
    let mut seen_expiry = false;
    // The line number of the previous line if it held a secret value.
    let mut after_secret: Option<usize> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_end_matches('\r').trim();
        let previous_secret = after_secret.take();
        let wrapped = |previous: Option<usize>, other: PasteError| match previous {
            Some(previous) => PasteError::Wrapped {
                line: number,
                previous,
            },
            None => other,
        };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if seen_header || seen_key {
                return Err(PasteError::SecondSection(number));
            }
            header = Some(header_name(line).ok_or(PasteError::BadHeader(number))?);
            seen_header = true;
            continue;
        }
        let (line, shell) = shell_assignment(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(wrapped(previous_secret, PasteError::BadLine(number)));
        };
        let shown = key.trim();
        let key = shown.to_ascii_lowercase();
        let value = value.trim();
        let value = if shell { unquote(value) } else { value }.to_owned();
        if shell && value.contains(['"', '\'']) {
            return Err(PasteError::BadLine(number));
        }
        if PROFILE_VARIABLES.contains(&key.as_str()) {
            if let Some(header) = &header
                && *header != value
            {
                return Err(PasteError::ProfileMismatch {
                    line: number,
                    variable: shown.to_owned(),
                    named: value,
                    header: header.clone(),
                });
            }
            named = Some((number, shown.to_owned(), value));
            continue;
        }
        if EXPIRY_KEYS.contains(&key.as_str()) {
            if seen_expiry {
                return Err(PasteError::DuplicateKey(number));
            }
            expires = Some(parse_timestamp(&value).ok_or(PasteError::BadExpiry(number))?);
            seen_expiry = true;
            continue;
        }
        let (slot, name) = match key.as_str() {
            ACCESS_KEY => (&mut akid, ACCESS_KEY),
            SECRET_KEY => (&mut secret, SECRET_KEY),
            TOKEN_KEY | "aws_security_token" => (&mut token, TOKEN_KEY),
            _ if previous_secret.is_some() && !showable(shown, true) => {
                return Err(wrapped(previous_secret, PasteError::UnknownLine(number)));
            }
            _ if showable(shown, false) => {
                return Err(PasteError::UnknownKey { line: number, key });
            }
            _ => return Err(PasteError::UnknownLine(number)),
        };
        if slot.is_some() {
            return Err(PasteError::DuplicateKey(number));
        }
        if value.chars().any(char::is_whitespace) {
            return Err(PasteError::Whitespace {
                line: number,
                key: name,
            });
        }
        if name != ACCESS_KEY {
            after_secret = Some(number);
        }
        *slot = Some(value);
        seen_key = true;
    }
    let required = |value: Option<String>, key: &'static str| match value {
        None => Err(PasteError::MissingKey(key)),
        Some(v) if v.is_empty() => Err(PasteError::EmptyValue(key)),
        Some(v) => Ok(v),
    };
    let profile = match (header, named) {
        (Some(header), _) => Some(header),
        (None, Some((_, _, name))) => Some(name),
        (None, None) => None,
    };
    let block = Block {
        profile,
        access_key_id: required(akid, ACCESS_KEY)?,
        secret_access_key: required(secret, SECRET_KEY)?,
        session_token: match token {
            Some(t) if t.is_empty() => return Err(PasteError::EmptyValue(TOKEN_KEY)),
            t => t,
        },
        expires,
    };
    // A temporary key without its token: the SDKs would fail with InvalidClientTokenId.
    if block.session_token.is_none() && block.access_key_id.starts_with("ASIA") {
        return Err(PasteError::MissingSessionToken);
    }
    // The two values swapped (copied by hand into the wrong lines): the SDKs would fail
    // with a signature error far from here.
    if looks_like_key_id(&block.secret_access_key) && !looks_like_key_id(&block.access_key_id) {
        return Err(PasteError::Swapped);
    }
    // The secret and the session token swapped: a secret key is 40 characters, a session
    // token hundreds.
    if let Some(token) = &block.session_token
        && block.secret_access_key.len() > 100
        && token.len() == 40
    {
        return Err(PasteError::SwappedToken);
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

/// An AWS access key id: `AKIA` (long-term) or `ASIA` (temporary), then 16 upper-case
/// letters and digits. Secret keys are 40 characters of base64 and never match.
fn looks_like_key_id(value: &str) -> bool {
    (value.starts_with("AKIA") || value.starts_with("ASIA"))
        && value.len() == 20
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The profile a header names: `[acme]` or `[profile acme]` (as in the config file),
/// unchecked ([`profile_name_problem`] says whether the SDKs read it).
fn header_name(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?.trim();
    let name = match inner.split_once([' ', '\t']) {
        Some(("profile", rest)) => rest.trim(),
        Some(_) => return None,
        None => inner,
    };
    (!name.is_empty() && !name.contains(['[', ']'])).then(|| name.to_owned())
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

/// Why `name` cannot be pasted as a profile, or `None`. Checked against the SDKs here:
/// boto3 and the AWS CLI (botocore's configparser) read any section name, `[acmé-prød]`
/// too, but the AWS SDK for Rust (aws-runtime's `validate_identifier`), and so cmdr, drop
/// one with characters beyond `A-Z a-z 0-9 _ - / . % @ : +`.
pub fn profile_name_problem(name: &str) -> Option<String> {
    if valid_profile_name(name) {
        return None;
    }
    let shown = crate::text::escape_controls(name);
    Some(if name.len() > 128 {
        "the profile name is longer than 128 characters".to_owned()
    } else if name.chars().any(char::is_whitespace) {
        format!("`{shown}` holds a space, which no AWS SDK reads as one profile name")
    } else {
        format!(
            "`{shown}` is a name boto3 and the AWS CLI read, but the AWS SDK for Rust (and so cmdr) ignores: a name there may hold only A-Z a-z 0-9 and _ - / . % @ : +"
        )
    })
}
