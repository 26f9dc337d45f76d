//! Handing an account's accepted credentials to tools: `env` (shell lines), `exec` (a child
//! with them in its environment) and `credential-process` (the JSON the SDKs expect) —
//! either the keys themselves (`--static`) or the daemon's credentials endpoint, which
//! running SDK processes re-ask, so they follow the accepted token. Secrets go to stdout or
//! the child only, never to stderr or a log.

use std::process::ExitCode;

use clap::ValueEnum as _;
use cmdr_proto::HandOut;

use crate::args::ShellName;

/// What `CMDR_FINGERPRINT` holds in a shell or child that follows the endpoint: `hook`
/// then has nothing to refresh.
pub const SERVED: &str = "served";

/// The endpoint variables (`exec` by default, `env --serve`); those without a value are
/// unset, among them every variable that would shadow the endpoint in some SDK.
pub fn served_variables(
    h: &HandOut,
    endpoint: &cmdr_proto::EndpointInfo,
) -> Vec<(&'static str, Option<String>)> {
    keep_users_region(vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            Some(account_url(&endpoint.url, &h.account)),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            Some(endpoint.token_file.clone()),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", None),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_SESSION_TOKEN", None),
        ("AWS_SECURITY_TOKEN", None),
        ("AWS_CREDENTIAL_EXPIRATION", None),
        ("AWS_PROFILE", None),
        ("AWS_DEFAULT_PROFILE", None),
        ("AWS_REGION", h.region.clone()),
        ("AWS_DEFAULT_REGION", h.region.clone()),
        ("AWS_ENDPOINT_URL", h.endpoint.clone()),
        ("CMDR_ACCOUNT", Some(h.account.clone())),
        ("CMDR_FINGERPRINT", Some(SERVED.to_owned())),
    ])
}

/// A region-less account leaves the user's own `AWS_REGION` alone: unsetting it would
/// break tools that need one.
fn keep_users_region(
    mut vars: Vec<(&'static str, Option<String>)>,
) -> Vec<(&'static str, Option<String>)> {
    vars.retain(|(name, value)| {
        value.is_some() || !matches!(*name, "AWS_REGION" | "AWS_DEFAULT_REGION")
    });
    vars
}

/// The URL of one account on the endpoint (its name percent-encoded).
pub fn account_url(base: &str, account: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'.')
        .remove(b'-')
        .remove(b'_')
        .remove(b'~');
    format!(
        "{base}{}",
        percent_encoding::utf8_percent_encode(account, UNRESERVED)
    )
}

/// The variables cmdr owns; those without a value are unset.
pub fn variables(h: &HandOut) -> Vec<(&'static str, Option<String>)> {
    keep_users_region(vec![
        ("AWS_ACCESS_KEY_ID", Some(h.access_key_id.clone())),
        ("AWS_SECRET_ACCESS_KEY", Some(h.secret_access_key.clone())),
        ("AWS_SESSION_TOKEN", h.session_token.clone()),
        // The legacy name some tools still read: never leave a stale one behind.
        ("AWS_SECURITY_TOKEN", None),
        // A profile would win over the keys in some SDKs (botocore looks it up first), and
        // the endpoint's variables of an earlier `env --serve` would shadow them in others.
        ("AWS_PROFILE", None),
        ("AWS_DEFAULT_PROFILE", None),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", None),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", None),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", None),
        ("AWS_REGION", h.region.clone()),
        ("AWS_DEFAULT_REGION", h.region.clone()),
        ("AWS_ENDPOINT_URL", h.endpoint.clone()),
        ("AWS_CREDENTIAL_EXPIRATION", h.expires_at.clone()),
        ("CMDR_ACCOUNT", Some(h.account.clone())),
        // Which token this shell holds, so `cmdrctl hook` can tell when it is stale.
        ("CMDR_FINGERPRINT", Some(fingerprint(h))),
    ])
}

/// `env NAME --json`: variable name → value, null for a variable to unset.
pub fn env_json(
    vars: Vec<(&'static str, Option<String>)>,
) -> serde_json::Map<String, serde_json::Value> {
    vars.into_iter()
        .map(|(name, value)| {
            (
                name.to_owned(),
                value.map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect()
}

/// The same fingerprint the daemon shows for these credentials (reveals nothing).
pub fn fingerprint(h: &HandOut) -> String {
    cmdr_core::profile::keys_fingerprint(
        &h.access_key_id,
        &h.secret_access_key,
        h.session_token.as_deref(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Posix,
    Fish,
    Pwsh,
}

impl Shell {
    /// From `--shell`, else from `$SHELL`, else POSIX.
    pub fn pick(flag: Option<ShellName>) -> Shell {
        let name = flag.or_else(|| {
            let shell = std::env::var_os("SHELL")?;
            let base = std::path::Path::new(&shell)
                .file_name()?
                .to_str()?
                .to_owned();
            // `pwsh.exe`, `fish.exe` (Windows, MSYS).
            ShellName::from_str(base.strip_suffix(".exe").unwrap_or(&base), false).ok()
        });
        match name {
            Some(ShellName::Fish) => Shell::Fish,
            Some(ShellName::Powershell | ShellName::Pwsh) => Shell::Pwsh,
            Some(ShellName::Bash | ShellName::Zsh | ShellName::Sh) | None => Shell::Posix,
        }
    }
}

/// Single-quoted for each shell, so no character is interpreted.
pub fn quote(shell: Shell, value: &str) -> String {
    match shell {
        Shell::Posix => format!("'{}'", value.replace('\'', r"'\''")),
        Shell::Fish => format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'")),
        Shell::Pwsh => format!("'{}'", value.replace('\'', "''")),
    }
}

pub fn env_lines(vars: Vec<(&'static str, Option<String>)>, shell: Shell) -> String {
    let mut out = String::new();
    for (name, value) in vars {
        let line = match (shell, value) {
            (Shell::Posix, Some(v)) => format!("export {name}={}", quote(shell, &v)),
            (Shell::Posix, None) => format!("unset {name}"),
            (Shell::Fish, Some(v)) => format!("set -gx {name} {}", quote(shell, &v)),
            (Shell::Fish, None) => format!("set -e {name}"),
            (Shell::Pwsh, Some(v)) => format!("$env:{name} = {}", quote(shell, &v)),
            (Shell::Pwsh, None) => {
                format!("Remove-Item Env:{name} -ErrorAction SilentlyContinue")
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// How long `credential-process` output lasts when the token says nothing shorter: it
/// cannot tell which SDK runs it, so it takes the longest refresh window measured
/// (botocore's 15 minutes) plus 45 s, as the endpoint does for botocore, so that no SDK
/// re-runs it on every call; see docs/benchmarks.md.
pub const PROCESS_LIFETIME: chrono::Duration = chrono::Duration::seconds(15 * 60 + 45);

/// `credential_process` output: `Version` is the number 1; `Expiration` is always there
/// (never later than the token's own expiry), so that SDKs come back for a newly accepted
/// token.
pub fn credential_process_json(h: &HandOut, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut map = serde_json::Map::new();
    map.insert("Version".into(), 1.into());
    map.insert("AccessKeyId".into(), h.access_key_id.clone().into());
    map.insert("SecretAccessKey".into(), h.secret_access_key.clone().into());
    if let Some(token) = &h.session_token {
        map.insert("SessionToken".into(), token.clone().into());
    }
    let real = h
        .expires_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let until = match real {
        Some(at) if at < now + PROCESS_LIFETIME => at,
        _ => now + PROCESS_LIFETIME,
    };
    map.insert(
        "Expiration".into(),
        until
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into(),
    );
    serde_json::Value::Object(map).to_string()
}

/// Replaces this process with `command` (no shell in between): signals reach it directly
/// and its exit code is ours. Returns only on failure.
pub fn exec(vars: Vec<(&'static str, Option<String>)>, command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("cmdrctl: exec needs a command after `--`");
        return ExitCode::from(2);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    for (name, value) in vars {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let err = cmd.exec();
        eprintln!("cmdrctl: cannot run `{program}`: {err}");
        ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        })
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
            Err(err) => {
                eprintln!("cmdrctl: cannot run `{program}`: {err}");
                ExitCode::from(127)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handout() -> HandOut {
        HandOut {
            account: "acme".into(),
            profile: "acme".into(),
            access_key_id: "ASIA1".into(),
            secret_access_key: "a'b\"c$d\\e f".into(),
            session_token: None,
            region: Some("eu-west-1".into()),
            endpoint: None,
            expires_at: None,
        }
    }

    #[test]
    fn quoting() {
        let v = "a'b\"c$d\\e f";
        assert_eq!(quote(Shell::Posix, v), r#"'a'\''b"c$d\e f'"#);
        assert_eq!(quote(Shell::Fish, v), r#"'a\'b"c$d\\e f'"#);
        assert_eq!(quote(Shell::Pwsh, v), r#"'a''b"c$d\e f'"#);
    }

    #[test]
    fn env_json_sets_and_unsets() {
        let value = serde_json::Value::Object(env_json(variables(&handout())));
        assert_eq!(value["AWS_REGION"], "eu-west-1");
        assert_eq!(value["AWS_SECRET_ACCESS_KEY"], "a'b\"c$d\\e f");
        assert!(value["AWS_SESSION_TOKEN"].is_null());
        assert!(value["AWS_ENDPOINT_URL"].is_null());
    }

    #[test]
    fn env_sets_and_unsets() {
        let text = env_lines(variables(&handout()), Shell::Posix);
        assert!(text.contains("export AWS_REGION='eu-west-1'\n"));
        assert!(text.contains("unset AWS_SESSION_TOKEN\n"));
        assert!(text.contains("unset AWS_ENDPOINT_URL\n"));
        assert!(text.contains("export CMDR_ACCOUNT='acme'\n"));
        let json = env_json(variables(&handout()));
        assert_eq!(json["AWS_REGION"], "eu-west-1");
        assert_eq!(json["AWS_SESSION_TOKEN"], serde_json::Value::Null);
        let mut no_region = handout();
        no_region.region = None;
        assert!(!env_lines(variables(&no_region), Shell::Posix).contains("AWS_REGION"));
        assert!(!env_json(variables(&no_region)).contains_key("AWS_DEFAULT_REGION"));
        let now = chrono::Utc::now();
        let json = credential_process_json(&handout(), now);
        assert!(
            json.starts_with(r#"{"Version":1,"AccessKeyId":"ASIA1""#),
            "{json}"
        );
        assert!(!json.contains("SessionToken"));
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
        let at = parsed["Expiration"].as_str().expect("Expiration");
        let at = chrono::DateTime::parse_from_rfc3339(at).expect("time");
        assert!(at <= now + PROCESS_LIFETIME && at > now);
        // Never later than the token's own expiry.
        let mut soon = handout();
        soon.expires_at = Some("2020-01-01T00:00:00Z".into());
        assert!(
            credential_process_json(&soon, now).contains(r#""Expiration":"2020-01-01T00:00:00Z""#)
        );
    }

    #[test]
    fn served_variables_shadow_nothing() {
        let endpoint = cmdr_proto::EndpointInfo {
            url: "http://127.0.0.1:4144/v1/credentials/".into(),
            token_file: "/run/user/1/cmdr/endpoint.token".into(),
        };
        let vars = served_variables(&handout(), &endpoint);
        let get = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            Some(Some("http://127.0.0.1:4144/v1/credentials/acme".into()))
        );
        for unset in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            assert_eq!(get(unset), Some(None), "{unset}");
        }
        let text = env_lines(vars, Shell::Posix);
        assert!(!text.contains("a'b"), "no secret in served lines: {text}");
    }
}
