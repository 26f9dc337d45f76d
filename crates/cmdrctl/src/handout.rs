//! Handing an account's accepted credentials to tools: `env` (shell lines), `exec` (a child
//! with them in its environment) and `credential-process` (the JSON the SDKs expect) —
//! either the keys themselves (`--static`) or the daemon's credentials endpoint, which
//! running SDK processes re-ask, so they follow the accepted token. Secrets go to stdout or
//! the child only, never to stderr or a log.

use std::process::ExitCode;

use clap::ValueEnum as _;
use std::ffi::OsString;

use cmdr_proto::{ChildEnv, HandOut};

use crate::args::ShellName;

/// What `CMDR_FINGERPRINT` holds in a shell or child that follows the endpoint: `hook`
/// then has nothing to refresh.
pub const SERVED: &str = "served";

/// A variable to set (to a value that may not be UTF-8: a path) or, without one, unset.
pub type Vars = Vec<(&'static str, Option<OsString>)>;

/// The endpoint variables (`exec` by default, `env --serve`): the account's own URL and
/// token, and the user's AWS files without credentials, so that nothing in the files or
/// the environment outranks the endpoint in any SDK. Those without a value are unset,
/// among them every variable some SDK would try first.
pub fn served_variables(child: &ChildEnv) -> Vars {
    let path = |bytes: &[u8]| Some(cmdr_proto::path_from_wire(bytes).into_os_string());
    let text = |value: &Option<String>| value.clone().map(OsString::from);
    let mut vars: Vars = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            Some(child.url.clone().into()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            path(&child.token_file),
        ),
        ("AWS_CONFIG_FILE", path(&child.config_file)),
        ("AWS_SHARED_CREDENTIALS_FILE", path(&child.credentials_file)),
        ("BOTO_CONFIG", path(&child.boto_config)),
        // cmdrctl run inside (`paste`, `doctor`) still works on the user's own files.
        ("CMDR_AWS_CONFIG_FILE", path(&child.user_config_file)),
        (
            "CMDR_AWS_SHARED_CREDENTIALS_FILE",
            path(&child.user_credentials_file),
        ),
    ];
    vars.extend(OUTRANKING.iter().map(|name| (*name, None)));
    vars.extend(per_service_endpoints(std::env::vars_os()).map(|name| (name, None)));
    vars.extend([
        ("AWS_REGION", text(&child.region)),
        ("AWS_DEFAULT_REGION", text(&child.region)),
        ("AWS_ENDPOINT_URL", text(&child.endpoint)),
        ("CMDR_ACCOUNT", Some(child.account.clone().into())),
        ("CMDR_FINGERPRINT", Some(SERVED.into())),
    ]);
    keep_users_region(vars)
}

/// Variables that some SDK reads before the container provider, or that would send the
/// child elsewhere: unset for a child on the endpoint.
const OUTRANKING: &[&str] = &[
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_ACCOUNT_ID",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    // botocore's legacy EC2 credentials file, read before the container provider.
    "AWS_CREDENTIAL_FILE",
    // Older SDKs' names of the keys.
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
];

/// The caller's `AWS_ENDPOINT_URL_<SERVICE>` variables: each outranks the account's
/// `AWS_ENDPOINT_URL` for its service, so a shell left with LocalStack's S3 URL would send
/// a real account's signed calls there (or the reverse). Unset for cmdr's children; only
/// plain ASCII names, the only ones a shell's `unset` can name.
fn per_service_endpoints(
    env: impl Iterator<Item = (OsString, OsString)>,
) -> impl Iterator<Item = &'static str> {
    env.filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            name.strip_prefix("AWS_ENDPOINT_URL_")
                .is_some_and(|service| {
                    !service.is_empty()
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                })
        })
        // cmdrctl lives for one command: the few names are leaked, not copied around.
        .map(|name| &*Box::leak(name.into_boxed_str()))
}

/// A region-less account leaves the user's own `AWS_REGION` alone: unsetting it would
/// break tools that need one.
fn keep_users_region<V>(
    mut vars: Vec<(&'static str, Option<V>)>,
) -> Vec<(&'static str, Option<V>)> {
    vars.retain(|(name, value)| {
        value.is_some() || !matches!(*name, "AWS_REGION" | "AWS_DEFAULT_REGION")
    });
    vars
}

/// The variables cmdr owns (`env`, `exec --static`); those without a value are unset.
pub fn variables(h: &HandOut) -> Vars {
    let vars: Vec<(&'static str, Option<String>)> = keep_users_region(vec![
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
    ]);
    let unset = per_service_endpoints(std::env::vars_os()).map(|name| (name, None));
    vars.into_iter()
        .map(|(name, value)| (name, value.map(OsString::from)))
        .chain(unset)
        .collect()
}

/// `env NAME --json`: variable name → value, null for a variable to unset.
/// The variables as text for a shell or JSON; a value that is not UTF-8 (a path under a
/// non-UTF-8 home) cannot be printed faithfully, so it is refused, never mangled.
pub fn printable(vars: Vars) -> Result<Vec<(&'static str, Option<String>)>, String> {
    vars.into_iter()
        .map(|(name, value)| match value.map(OsString::into_string).transpose() {
            Ok(value) => Ok((name, value)),
            Err(_) => Err(format!(
                "the value of {name} is not UTF-8 and cannot be printed for a shell: use `cmdrctl exec` instead"
            )),
        })
        .collect()
}

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
pub fn exec(vars: Vars, command: &[String]) -> ExitCode {
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
        let value = serde_json::Value::Object(env_json(text(variables(&handout()))));
        assert_eq!(value["AWS_REGION"], "eu-west-1");
        assert_eq!(value["AWS_SECRET_ACCESS_KEY"], "a'b\"c$d\\e f");
        assert!(value["AWS_SESSION_TOKEN"].is_null());
        assert!(value["AWS_ENDPOINT_URL"].is_null());
    }

    #[test]
    fn env_sets_and_unsets() {
        let lines = env_lines(text(variables(&handout())), Shell::Posix);
        assert!(lines.contains("export AWS_REGION='eu-west-1'\n"));
        assert!(lines.contains("unset AWS_SESSION_TOKEN\n"));
        assert!(lines.contains("unset AWS_ENDPOINT_URL\n"));
        assert!(lines.contains("export CMDR_ACCOUNT='acme'\n"));
        let json = env_json(text(variables(&handout())));
        assert_eq!(json["AWS_REGION"], "eu-west-1");
        assert_eq!(json["AWS_SESSION_TOKEN"], serde_json::Value::Null);
        let mut no_region = handout();
        no_region.region = None;
        assert!(!env_lines(text(variables(&no_region)), Shell::Posix).contains("AWS_REGION"));
        assert!(!env_json(text(variables(&no_region))).contains_key("AWS_DEFAULT_REGION"));
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

    fn text(vars: Vars) -> Vec<(&'static str, Option<String>)> {
        printable(vars).expect("utf-8")
    }

    fn child() -> ChildEnv {
        ChildEnv {
            account: "acme".into(),
            url: "http://127.0.0.1:4144/v1/credentials/acme".into(),
            token_file: b"/run/user/1/cmdr/cmdrd.endpoint/4144/acme".to_vec(),
            config_file: b"/run/user/1/cmdr/cmdrd.aws/config".to_vec(),
            credentials_file: b"/run/user/1/cmdr/cmdrd.aws/credentials".to_vec(),
            boto_config: b"/run/user/1/cmdr/cmdrd.aws/boto".to_vec(),
            user_config_file: b"/home/a/.aws/config".to_vec(),
            user_credentials_file: b"/home/a/.aws/credentials".to_vec(),
            region: Some("eu-west-1".into()),
            endpoint: None,
            expires_at: None,
        }
    }

    #[test]
    fn served_variables_shadow_nothing() {
        let vars = served_variables(&child());
        let get = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            Some(Some("http://127.0.0.1:4144/v1/credentials/acme".into()))
        );
        assert_eq!(
            get("AWS_SHARED_CREDENTIALS_FILE"),
            Some(Some("/run/user/1/cmdr/cmdrd.aws/credentials".into()))
        );
        for unset in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CREDENTIAL_FILE",
        ] {
            assert_eq!(get(unset), Some(None), "{unset}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_passes_to_exec_and_is_refused_as_text() {
        use std::os::unix::ffi::OsStrExt as _;
        let mut odd = child();
        odd.user_credentials_file = b"/home/\xff/credentials".to_vec();
        let vars = served_variables(&odd);
        let got = vars
            .iter()
            .find(|(k, _)| *k == "CMDR_AWS_SHARED_CREDENTIALS_FILE")
            .and_then(|(_, v)| v.clone())
            .expect("set");
        assert_eq!(got.as_bytes(), b"/home/\xff/credentials");
        assert!(printable(vars).is_err());
    }

    #[test]
    fn the_callers_per_service_endpoints_are_unset() {
        let env = [
            ("AWS_ENDPOINT_URL_S3", "http://localhost:4566"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL", "kept: cmdr sets or unsets it itself"),
            ("AWS_ENDPOINT_URL_", "no service"),
            ("AWS_ENDPOINT_URL_s3;rm", "not a shell name"),
            ("HOME", "/home/x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let names: Vec<&str> = per_service_endpoints(env.into_iter()).collect();
        assert_eq!(names, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS"]);
    }
}
