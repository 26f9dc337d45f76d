//! The byte-preserving edit of a credentials file: only the target profile's key lines
//! change; comments, order, blank lines, other profiles and line endings stay as they were.

use super::{ACCESS_KEY, Block, SECRET_KEY, TOKEN_KEY};
use crate::expiry::{EXPIRY_KEYS, parse_expires_comment};

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
