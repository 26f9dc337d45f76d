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
    /// The AWS CLI is not installed: the portal was opened instead.
    OpenedInstead {
        url: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(
        "account `{0}` has no portal: set one with `cmdrctl accounts edit {0} --portal URL` (the access portal you copy \"Option 2\" from)"
    )]
    NoPortal(String),
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
    portal
        .map(|url| Plan::Open { url })
        .ok_or_else(|| RenewError::NoPortal(info.name.clone()))
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
        Plan::SsoLogin { profile, portal } => match sso_login(profile, mode).await {
            Ok(()) => Ok(Done::SignedIn {
                profile: profile.clone(),
            }),
            Err(RenewError::NotInstalled { .. }) if portal.is_some() => {
                let url = portal.clone().unwrap_or_default();
                open(&url).await?;
                Ok(Done::OpenedInstead { url })
            }
            Err(err) => Err(err),
        },
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
        check(Some("session"), Some("file:///etc"), Err("invalid portal"));
    }
}
