//! The redacted copy of a file that parses: every secret value replaced by a stand-in, so
//! the daemon keeps a file's last good version without a second copy of every token.

use super::{parse_property_line, starts_blank, trim};

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
