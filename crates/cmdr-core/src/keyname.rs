//! Whether a key name from a file or a pasted block may be shown. A session token wrapped
//! onto a second line that contains `=` (base64 padding) reads as `PART = …`: its "key" is
//! part of the secret. AWS secrets and tokens are standard base64 (`A-Z a-z 0-9 + /`), so a
//! name is shown only if it looks like a key and nothing like such a fragment; any other
//! is reported by its line number alone.

/// Keys without `_` that AWS tools write, shown even right after a secret's line.
const SHORT_KEYS: &[&str] = &[
    "region",
    "output",
    "expiration",
    "s3",
    "s3api",
    "sts",
    "ec2",
    "iam",
    "sso",
];

/// Whether `key` (as written) can be shown. `after_secret`: the line follows a line that
/// holds a secret value, where a wrapped secret's rest would be.
///
/// Shown: at most 64 characters of `A-Z a-z 0-9 _ -`, starting with a letter, and either
/// holding `_` (which base64 never does) or written as a word (all lower case, all upper
/// case, or capitalised: `region`, `REGION`, `Region`; digits only at the end, `s3`), and
/// right after a secret's line only with `_` or one of the short keys tools write.
pub fn showable(key: &str, after_secret: bool) -> bool {
    let bytes = key.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    if bytes.len() > 64
        || !first.is_ascii_alphabetic()
        || !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return false;
    }
    if key.contains('_') {
        return true;
    }
    let lower = key.to_ascii_lowercase();
    if after_secret {
        return SHORT_KEYS.contains(&lower.as_str());
    }
    let letters = key.trim_end_matches(|c: char| c.is_ascii_digit());
    if letters.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    let rest = &letters[1..];
    rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        || letters.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::showable;

    #[test]
    fn keys_are_shown_and_secret_fragments_are_not() {
        for key in [
            "region",
            "Region",
            "REGION",
            "aws_access_key_id",
            "AWS_SESSION_TOKEN",
            "x_security_token_expires",
            "s3",
            "extra",
            "max_concurrent_requests",
            "my-setting",
        ] {
            assert!(showable(key, false), "{key}");
        }
        for key in [
            "secrettokenpart2+xyz/qq",
            "IQoJb3JpZ2luX2VjEJr",
            "wJalrXUtnFEMI",
            "abc/def",
            "a+b",
            "FwoGZXIvYXdzEBYaD",
            "x2y",
            "",
            "9abc",
            "aVeryLongKeyNameThatGoesOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOn",
            "käse",
        ] {
            assert!(!showable(key, false), "{key}");
        }
        // Right after a secret's line: only names base64 cannot hold, or known short keys.
        assert!(showable("region", true));
        assert!(showable("aws_session_token", true));
        assert!(!showable("abcdef", true));
        assert!(!showable("extra", true));
    }
}
