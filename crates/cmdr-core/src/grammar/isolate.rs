//! The AWS files as a child of `cmdrctl exec` sees them: the user's own files with every
//! credential an SDK would try before the credentials endpoint taken out, and every other
//! setting kept where it was.
//!
//! Why: botocore, the JavaScript SDK v3, Go v2 and the Rust SDK all try the shared files'
//! `[default]` profile (keys, a role, SSO, a `credential_process`, a web-identity file)
//! before the container provider, so a child pointed at the endpoint would silently run
//! as `[default]`. Unsetting variables cannot stop that; pointing the child at these files
//! does, while its retries, `s3` options, `ca_bundle`, `[services]` and the rest still
//! apply. The copies hold no secret at all: every key pair is dropped from every section.

use super::{normalize::section_pair, prepare_line, starts_blank, starts_comment, trim};
use crate::profile::{FileKind, SECRET_KEYS};

/// What makes the default profile give credentials, in any SDK: dropped from it, so that
/// the default profile cannot outrank the endpoint. `aws_account_id` names the keys'
/// account, which would be another account's.
pub const CREDENTIAL_SOURCES: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_security_token",
    "aws_account_id",
    "role_arn",
    "source_profile",
    "credential_source",
    "role_session_name",
    "external_id",
    "mfa_serial",
    "duration_seconds",
    "web_identity_token_file",
    "credential_process",
    "sso_start_url",
    "sso_region",
    "sso_account_id",
    "sso_role_name",
    "sso_session",
    "login_session",
];

/// The first line of every copy, so a reader knows where it comes from.
pub const HEADER: &str = "# Written by cmdrd for processes started with `cmdrctl exec` or `env --serve`:\n\
# your own file without its credentials, so that nothing outranks the account they serve.\n\
# Edit your own file instead: this copy is rewritten whenever it changes.\n";

/// `text` (a file that parses) with its keys taken out of every section and every
/// credential source taken out of the default profile; dropped lines (and their
/// continuation lines) become blank, so every other line keeps its number after the
/// header's three.
pub(crate) fn without_credentials(kind: FileKind, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + HEADER.len());
    out.push_str(HEADER);
    let mut in_default = false;
    // Whether the property being continued was dropped.
    let mut dropping = false;
    for chunk in text.split_inclusive('\n') {
        let line = chunk.strip_suffix('\n').unwrap_or(chunk);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if trim(line).is_empty() || starts_comment(line) {
            // Neither ends a property: a continuation may still follow.
            out.push_str(chunk);
            continue;
        }
        if line.starts_with('[') {
            dropping = false;
            in_default = is_default(kind, line);
            out.push_str(chunk);
            continue;
        }
        if starts_blank(line) {
            out.push_str(if dropping { "\n" } else { chunk });
            continue;
        }
        let key = trim(line.split_once('=').map_or(line, |(key, _)| key)).to_ascii_lowercase();
        dropping = key == "aws_access_key_id"
            || SECRET_KEYS.contains(&key.as_str())
            || (in_default && CREDENTIAL_SOURCES.contains(&key.as_str()));
        out.push_str(if dropping { "\n" } else { chunk });
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Whether a section header names the profile an SDK uses when no profile is named:
/// `[default]` in either file, `[profile default]` in the config file.
fn is_default(kind: FileKind, line: &str) -> bool {
    let header = prepare_line(line, false);
    let Some(inner) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) else {
        return false;
    };
    matches!(
        (kind, section_pair(inner)),
        (_, (None, "default")) | (FileKind::Config, (Some("profile"), "default"))
    )
}

/// Why `[default]` would give credentials to a tool started outside cmdr, if it would.
pub(crate) fn default_credentials(kind: FileKind, text: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let mut in_default = false;
    for line in super::lines(text) {
        if trim(line).is_empty() || starts_comment(line) || starts_blank(line) {
            continue;
        }
        if line.starts_with('[') {
            in_default = is_default(kind, line);
            continue;
        }
        if !in_default {
            continue;
        }
        let key = trim(line.split_once('=').map_or(line, |(key, _)| key)).to_ascii_lowercase();
        if let Some(source) = CREDENTIAL_SOURCES
            .iter()
            .find(|s| **s == key && **s != "aws_account_id")
            && !found.contains(source)
        {
            found.push(*source);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: FileKind, input: &str, expected_body: &str) {
        let got = without_credentials(kind, input);
        let body = got.strip_prefix(HEADER).expect("header first");
        assert_eq!(body, expected_body, "input:\n{input}");
        // The copy parses, and its default profile gives no credentials.
        let (config, credentials) = match kind {
            FileKind::Config => (got.as_str(), ""),
            FileKind::Credentials => ("", got.as_str()),
        };
        let parsed = crate::grammar::parse(config, credentials).expect("the copy parses");
        if let Some(default) = parsed.profiles.get("default") {
            for source in CREDENTIAL_SOURCES {
                assert!(default.props.get(source).is_none(), "{source} kept");
            }
        }
        for section in parsed.profiles.values() {
            for secret in SECRET_KEYS {
                assert!(section.props.get(secret).is_none(), "{secret} kept");
            }
        }
    }

    #[test]
    fn the_default_profile_loses_its_credentials_and_keeps_its_settings() {
        check(
            FileKind::Credentials,
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s\nregion = eu-west-1\n",
            "[default]\n\n\nregion = eu-west-1\n",
        );
        check(
            FileKind::Config,
            "[default]\nregion = us-east-1\ncredential_process = /bin/x\nretry_mode = adaptive\ns3 =\n  max_concurrent_requests = 4\nca_bundle = /etc/ca.pem\n",
            "[default]\nregion = us-east-1\n\nretry_mode = adaptive\ns3 =\n  max_concurrent_requests = 4\nca_bundle = /etc/ca.pem\n",
        );
        check(
            FileKind::Config,
            "[profile  default ]\nsso_session = corp\nsso_account_id = 1\nsso_role_name = r\nservices = local\n[services local]\ns3 =\n  endpoint_url = http://localhost:4566\n",
            "[profile  default ]\n\n\n\nservices = local\n[services local]\ns3 =\n  endpoint_url = http://localhost:4566\n",
        );
    }

    #[test]
    fn other_profiles_keep_all_but_their_keys() {
        check(
            FileKind::Config,
            "[profile dev]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\nregion = eu-west-1\n[profile base]\nAWS_Access_Key_ID = AKIA1\naws_session_token =\n  part1\n  part2\n",
            "[profile dev]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\nregion = eu-west-1\n[profile base]\n\n\n\n\n",
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf_stay() {
        check(
            FileKind::Credentials,
            "# mine\r\n[default]\r\n; note\r\naws_secret_access_key = s\r\n\r\n  \r\n[acme]\r\nregion = x",
            "# mine\r\n[default]\r\n; note\r\n\n\r\n  \r\n[acme]\r\nregion = x\n",
        );
    }

    #[test]
    fn what_makes_default_give_credentials() {
        assert_eq!(
            default_credentials(
                FileKind::Credentials,
                "[default]\naws_access_key_id = A\naws_secret_access_key = s\n"
            ),
            ["aws_access_key_id", "aws_secret_access_key"]
        );
        assert!(default_credentials(FileKind::Config, "[default]\nregion = x\n").is_empty());
        assert!(
            default_credentials(FileKind::Config, "[profile a]\ncredential_process = x\n")
                .is_empty()
        );
        assert_eq!(
            default_credentials(
                FileKind::Config,
                "[profile default]\ncredential_process = x\n"
            ),
            ["credential_process"]
        );
        // `[profile default]` in the credentials file is another profile to the SDKs.
        assert!(
            default_credentials(FileKind::Credentials, "[profile default]\nrole_arn = x\n")
                .is_empty()
        );
    }
}
