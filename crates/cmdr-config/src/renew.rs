//! Renewing an account's token without signing in ourselves: open its access portal in the
//! browser (`xdg-open`, `open`, `start`), or for an SSO profile run the user's own
//! `aws sso login --profile P`. Shared by `cmdrctl renew` and the desktop notifications'
//! **Renew**; each runs it in its own environment (the user's terminal, the session).

use std::process::Stdio;
use std::time::Duration;

use cmdr_proto::AccountInfo;

/// How long `aws sso login` may take: the device code it shows expires after 10 minutes.
pub const SSO_LOGIN_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// How long to wait for the opener. Some (xdg-open with certain browsers) stay until the
/// browser quits: past this the browser is open, and it is left running.
pub const OPEN_WAIT: Duration = Duration::from_secs(10);

/// What renewing an account means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `aws sso login --profile P`; the portal, if any, is the fallback without the CLI.
    SsoLogin {
        profile: String,
        portal: Option<String>,
    },
    /// Open the access portal, where "Option 2" is copied from.
    Open { url: String },
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Opened {
        url: String,
    },
    SignedIn {
        profile: String,
    },
    /// `aws sso login` cannot run (`why`: the AWS CLI is not installed, or is v1): the
    /// portal was opened instead.
    OpenedInstead {
        url: String,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(
        "account `{0}` has no portal to renew from, and its profile is not an SSO profile: get a new token the way you got this one (saml2aws, gimme-aws-creds, your portal, …) and write it with `cmdrctl paste`; if it comes from an IAM Identity Center portal, set that with `cmdrctl accounts edit {0} --portal URL` (the access portal you copy \"Option 2\" from)"
    )]
    NoPortal(String),
    #[error(
        "account `{0}` uses long-lived keys (a static profile): they do not expire, so there is nothing to renew; to replace them, write the new keys with `aws configure --profile {1}` or `cmdrctl paste`"
    )]
    LongLived(String, String),
    #[error(
        "`aws sso login` needs the AWS CLI v2, but `aws` here is {version}, which has no `sso login`: install v2 ({INSTALL_V2}), or sign in at the portal, copy \"Option 2\" and run `cmdrctl paste --clipboard` (`cmdrctl accounts edit NAME --portal URL` makes `renew` open it)"
    )]
    CliV1 { version: String },
    #[error(transparent)]
    BadPortal(#[from] cmdr_core::AccountError),
    #[error("cannot renew: `{program}` is not installed ({hint})")]
    NotInstalled {
        program: &'static str,
        hint: &'static str,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("`{command}` did not finish within {minutes} minutes; stopped it")]
    TimedOut { command: String, minutes: u64 },
}

/// Where the AWS CLI v2 comes from.
pub const INSTALL_V2: &str =
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html";

/// How long `aws --version` may take (Python starts slowly on a cold cache).
const VERSION_WAIT: Duration = Duration::from_secs(20);

/// The plan for an account as the daemon describes it.
pub fn plan(info: &AccountInfo) -> Result<Plan, RenewError> {
    let portal = info.portal.clone();
    if let Some(url) = &portal {
        // The daemon checked it; check again before a browser sees it.
        cmdr_core::account::check_portal(url)?;
    }
    if info.profile_kind == Some(cmdr_proto::ProfileKind::Sso) {
        return Ok(Plan::SsoLogin {
            profile: info.profile.clone(),
            portal,
        });
    }
    match portal {
        Some(url) => Ok(Plan::Open { url }),
        None if info.profile_kind == Some(cmdr_proto::ProfileKind::Static) => Err(
            RenewError::LongLived(info.name.clone(), info.profile.clone()),
        ),
        None => Err(RenewError::NoPortal(info.name.clone())),
    }
}

/// Whether the user's terminal takes part (`cmdrctl`) or nobody watches (the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `aws sso login` talks to the terminal (it prints the code to confirm).
    Interactive,
    /// No terminal: standard streams go nowhere.
    Detached,
}

/// Carries out a plan.
pub async fn run(plan: &Plan, mode: Mode) -> Result<Done, RenewError> {
    match plan {
        Plan::Open { url } => open(url).await.map(|()| Done::Opened { url: url.clone() }),
        Plan::SsoLogin { profile, portal } => {
            let login = match cli_v1().await {
                Some(version) => Err(RenewError::CliV1 { version }),
                None => sso_login(profile, mode).await,
            };
            match login {
                Ok(()) => Ok(Done::SignedIn {
                    profile: profile.clone(),
                }),
                Err(err @ (RenewError::NotInstalled { .. } | RenewError::CliV1 { .. }))
                    if portal.is_some() =>
                {
                    let url = portal.clone().unwrap_or_default();
                    open(&url).await?;
                    let why = match err {
                        RenewError::CliV1 { version } => format!(
                            "the AWS CLI here is {version}, which has no `sso login` (v2 has: {INSTALL_V2})"
                        ),
                        _ => "the AWS CLI (`aws`) is not installed".to_owned(),
                    };
                    Ok(Done::OpenedInstead { url, why })
                }
                Err(err) => Err(err),
            }
        }
    }
}

/// Opens `url` (already checked: http(s), printable ASCII) in the user's browser.
pub async fn open(url: &str) -> Result<(), RenewError> {
    cmdr_core::account::check_portal(url)?;
    let (program, args, hint) = opener(url);
    let mut command = tokio::process::Command::new(program);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let shown = format!("{program} {url}");
    let mut child = spawn(&mut command, program, hint, &shown)?;
    match tokio::time::timeout(OPEN_WAIT, child.wait()).await {
        Ok(exit) => exited(shown, exit),
        // Still running: the opener waits for the browser it started.
        Err(_) => Ok(()),
    }
}

/// The version of the AWS CLI on PATH if it is v1 (`aws-cli/1.x …`), which has no
/// `sso login`; `None` for v2, for no `aws`, or when it cannot tell.
pub async fn cli_v1() -> Option<String> {
    let output = tokio::time::timeout(
        VERSION_WAIT,
        tokio::process::Command::new("aws")
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    // v1 printed its version on stderr before 1.16, on stdout since.
    let text = [output.stdout, output.stderr].concat();
    let text = String::from_utf8_lossy(&text);
    let version = text.split_whitespace().next()?;
    version
        .starts_with("aws-cli/1.")
        .then(|| cmdr_core::text::escape_controls(version).into_owned())
}

/// `aws sso login --profile P`, with a deadline.
pub async fn sso_login(profile: &str, mode: Mode) -> Result<(), RenewError> {
    let mut command = tokio::process::Command::new("aws");
    command
        .args(["sso", "login", "--profile", profile])
        .kill_on_drop(true);
    if mode == Mode::Detached {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let shown = format!("aws sso login --profile {profile}");
    let hint = "the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html";
    let mut child = spawn(&mut command, "aws", hint, &shown)?;
    match tokio::time::timeout(SSO_LOGIN_DEADLINE, child.wait()).await {
        Ok(exit) => exited(shown, exit),
        Err(_) => {
            let _ = child.kill().await;
            Err(RenewError::TimedOut {
                command: shown,
                minutes: SSO_LOGIN_DEADLINE.as_secs() / 60,
            })
        }
    }
}

/// How a command that was waited for ended: success, or why not.
fn exited(
    shown: String,
    exit: std::io::Result<std::process::ExitStatus>,
) -> Result<(), RenewError> {
    match exit {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(RenewError::Failed {
            command: shown,
            status: status.to_string(),
        }),
        Err(source) => Err(RenewError::Spawn {
            command: shown,
            source,
        }),
    }
}

fn spawn(
    command: &mut tokio::process::Command,
    program: &'static str,
    hint: &'static str,
    shown: &str,
) -> Result<tokio::process::Child, RenewError> {
    command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RenewError::NotInstalled { program, hint }
        } else {
            RenewError::Spawn {
                command: shown.to_owned(),
                source,
            }
        }
    })
}

/// The program that opens a URL in the default browser, its arguments, and where to get it.
#[cfg(all(unix, not(target_os = "macos")))]
fn opener(url: &str) -> (&'static str, Vec<String>, &'static str) {
    (
        "xdg-open",
        vec![url.to_owned()],
        "Debian/Ubuntu: xdg-utils; Fedora: xdg-utils",
    )
}

#[cfg(target_os = "macos")]
fn opener(url: &str) -> (&'static str, Vec<String>, &'static str) {
    ("open", vec![url.to_owned()], "part of macOS")
}

#[cfg(windows)]
fn opener(url: &str) -> (&'static str, Vec<String>, &'static str) {
    // `start` is a cmd built-in; its first quoted argument is a window title. The URL is
    // printable ASCII without spaces, so only cmd's own metacharacters need escaping.
    let mut escaped = String::with_capacity(url.len());
    for c in url.chars() {
        if matches!(c, '^' | '&' | '|' | '<' | '>' | '(' | ')' | '%' | '!' | '"') {
            escaped.push('^');
        }
        escaped.push(c);
    }
    (
        "cmd",
        vec!["/C".into(), "start".into(), String::new(), escaped],
        "part of Windows",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(kind: Option<&str>, portal: Option<&str>) -> AccountInfo {
        AccountInfo {
            name: "acme".into(),
            profile: "acme-p".into(),
            region: None,
            target: cmdr_proto::TargetKind::Aws,
            endpoint: None,
            on_change: cmdr_proto::OnChange::Ask,
            state: cmdr_proto::AccountState::Expired,
            fingerprint: None,
            accepted_fingerprint: None,
            accepted_at: None,
            expires_at: None,
            expiry_source: None,
            account_id: None,
            portal: portal.map(str::to_owned),
            profile_kind: kind.map(|k| serde_json::from_value(k.into()).expect("kind")),
        }
    }

    #[test]
    fn plans() {
        let url = "https://acme.awsapps.com/start";
        let check = |kind, portal, want: Result<Plan, &str>| {
            let got = plan(&info(kind, portal)).map_err(|e| e.to_string());
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                _ => panic!("{kind:?} {portal:?}: {got:?}"),
            }
        };
        check(
            Some("session"),
            Some(url),
            Ok(Plan::Open { url: url.into() }),
        );
        check(
            Some("sso"),
            None,
            Ok(Plan::SsoLogin {
                profile: "acme-p".into(),
                portal: None,
            }),
        );
        check(
            Some("sso"),
            Some(url),
            Ok(Plan::SsoLogin {
                profile: "acme-p".into(),
                portal: Some(url.into()),
            }),
        );
        check(
            Some("session"),
            None,
            Err("cmdrctl accounts edit acme --portal URL"),
        );
        check(None, None, Err("has no portal"));
        check(Some("session"), None, Err("cmdrctl paste"));
        check(Some("static"), None, Err("nothing to renew"));
        check(Some("session"), Some("file:///etc"), Err("invalid portal"));
    }
}
