//! The "Option 2" block the AWS access portal shows, and the byte-preserving edit that puts
//! it into a credentials file: only the target profile's key lines change; comments, order,
//! blank lines, other profiles and line endings stay exactly as they were.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

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
