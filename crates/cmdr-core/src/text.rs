//! Text from files and peers made safe to show: control characters (C0, DEL, C1) and the
//! bidirectional overrides are escaped, so a value can neither move the cursor, clear the
//! screen, forge a line of output or a log line, nor reorder what is shown.

use std::borrow::Cow;
use std::fmt::Write as _;

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as an escape (`\n`, `\r`, `\t`, `\e`,
/// `\u{…}`); borrowed when nothing needed escaping. Backslashes stay as they are (Windows
/// paths): a literal `\e` in a value only looks like an escape, it does nothing.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(escape_controls(input), expected, "{input:?}");
    }

    #[test]
    fn escapes() {
        check("eu-west-1", "eu-west-1");
        check("grüße", "grüße");
        check(
            "eu-west-1\n\u{1b}[2J\u{1b}[31mFAKE  acme  ok",
            "eu-west-1\\n\\e[2J\\e[31mFAKE  acme  ok",
        );
        check("a\rb\tc\u{7f}\u{9b}", "a\\rb\\tc\\u{7f}\\u{9b}");
        check("x\u{202e}y", "x\\u{202e}y");
        check("C:\\n", "C:\\n");
    }
}
