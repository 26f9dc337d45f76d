//! Desktop notifications: the freedesktop notification service over D-Bus on Linux (with
//! "Use new token" / "Ignore" actions on `token_changed` for `ask` accounts, and "Renew" on
//! `expiring_soon`/`expired` for accounts that can be renewed), the notification centre on
//! macOS. Listens to the engine's events like any subscriber.
//! Without a notification service it logs once and carries on; texts never hold secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cmdr_proto::{AccountState, EventKind, OnChange};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineEvent, EngineHandle};
use cmdr_config::renew;

pub use cmdr_config::DesktopSettings;

/// The action key of "Use new token": `default` is what a click on the notification
/// invokes too.
pub const ACCEPT_ACTION: &str = "default";
pub const IGNORE_ACTION: &str = "ignore";

/// The action key of "Renew" (on expiry notes; a click on the notification renews too).
pub const RENEW_ACTION: &str = "default";

/// What to show for an event; `ask` is the account to accept on "Use new token", `renew`
/// the account to renew on "Renew".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
    pub ask: Option<String>,
    pub renew: Option<String>,
    /// The sso-session to sign in to on "Sign in" (`cmdrctl login SESSION`).
    pub login: Option<String>,
    pub urgent: bool,
}

/// The action key of "Sign in" (on `signin_required`; a click on the notification too).
pub const LOGIN_ACTION: &str = "default";

/// The note for an event, if this kind is enabled. `ask_account` says whether a
/// `token_changed` account waits for acceptance (policy `ask`); `renewable` whether an
/// expiring account has a portal or an SSO profile (`cmdrctl renew` would work);
/// `auto_renew` whether it renews itself (its expiry is then no alarm: no note).
pub fn note_for(
    event: &EventKind,
    settings: &DesktopSettings,
    ask_account: bool,
    renewable: bool,
    auto_renew: bool,
) -> Option<Note> {
    let renew_hint = |account: &str| {
        if renewable {
            format!(" Renew gets a new one (cmdrctl renew {account}).")
        } else {
            format!(" Set a portal to renew from: cmdrctl accounts edit {account} --portal URL.")
        }
    };
    match event {
        EventKind::TokenChanged {
            account, profile, ..
        } if settings.token_changed && ask_account => Some(Note {
            summary: format!("New AWS token for {account}"),
            body: format!(
                "Profile {profile} holds a new session token. Use it for {account}? (cmdrctl accept {account})"
            ),
            ask: Some(account.clone()),
            renew: None,
            login: None,
            urgent: false,
        }),
        EventKind::ExpiringSoon {
            account,
            expires_at,
            ..
        } if settings.expiring_soon && !auto_renew => Some(Note {
            summary: format!("{account} expires soon"),
            body: format!(
                "The AWS session of {account} ends at {expires_at}.{}",
                renew_hint(account)
            ),
            ask: None,
            renew: renewable.then(|| account.clone()),
            login: None,
            urgent: false,
        }),
        EventKind::Expired {
            account,
            expires_at,
            ..
        } if settings.expired => Some(Note {
            summary: format!("{account} expired"),
            body: format!(
                "The AWS session of {account} ended at {expires_at}.{}",
                renew_hint(account)
            ),
            ask: None,
            renew: renewable.then(|| account.clone()),
            login: None,
            urgent: true,
        }),
        EventKind::IdentityChanged {
            account,
            profile,
            old_account_id,
            new_account_id,
        } if settings.identity_changed => Some(Note {
            summary: format!("{account}: a different AWS account"),
            body: format!(
                "Profile {profile} now holds credentials of AWS account {new_account_id}, not {old_account_id}. Run `cmdrctl accept {account}` if that is intended."
            ),
            ask: None,
            renew: None,
            login: None,
            urgent: true,
        }),
        EventKind::EndpointMoved { old_url, new_url } => Some(Note {
            summary: "cmdr's credentials endpoint moved".to_owned(),
            body: format!(
                "Another program held {old_url} when cmdrd started, so it now listens on {new_url}. Programs started before with `cmdrctl exec` (or in a cmdr terminal) get no credentials until started again."
            ),
            ask: None,
            renew: None,
            login: None,
            urgent: true,
        }),
        // Once per portal session end, whatever number of accounts it serves; the daemon
        // never opens a browser by itself: the click does (`cmdrctl login SESSION`).
        EventKind::SigninRequired {
            portal,
            session,
            reason,
        } if settings.expired => Some(Note {
            summary: format!("Sign in to {session}"),
            body: format!(
                "The sign-in to {portal} ended ({reason}); the accounts on it renew themselves again once you sign in (cmdrctl login {session})."
            ),
            ask: None,
            renew: None,
            login: Some(session.clone()),
            urgent: true,
        }),
        // Not enabled, or nothing to notify about. Every type is named: a new one must be
        // placed here or above.
        EventKind::TokenChanged { .. }
        | EventKind::ExpiringSoon { .. }
        | EventKind::Expired { .. }
        | EventKind::IdentityChanged { .. }
        | EventKind::ProfileAdded { .. }
        | EventKind::ProfileRemoved { .. }
        | EventKind::ProfileChanged { .. }
        | EventKind::TokenAccepted { .. }
        | EventKind::Validated { .. }
        | EventKind::ValidationFailed { .. }
        | EventKind::FileError { .. }
        | EventKind::FileRecovered { .. }
        | EventKind::AccountAdded { .. }
        | EventKind::AccountRemoved { .. }
        | EventKind::AccountUpdated { .. }
        | EventKind::Lagged { .. }
        | EventKind::DaemonStopping
        | EventKind::SigninRequired { .. }
        | EventKind::SignedIn { .. }
        | EventKind::TokenRenewed { .. }
        | EventKind::Unknown => None,
    }
}

/// Runs until `cancel`: turns events into notifications.
pub async fn run(engine: EngineHandle, settings: DesktopSettings, cancel: CancellationToken) {
    if !settings.enabled {
        return;
    }
    let mut events = engine.subscribe();
    // What happened at start, before this could subscribe, comes first.
    let mut standing = engine.standing().to_vec().into_iter();
    let warned = Arc::new(AtomicBool::new(false));
    loop {
        let EngineEvent {
            event,
            account,
            auto_renew,
        } = if let Some(told) = standing.next() {
            told
        } else {
            tokio::select! {
            () = cancel.cancelled() => return,
            received = events.recv() => match received {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            }
        };
        // The account as it was right after the event, which carries it.
        let ask_account = account.as_ref().is_some_and(|info| {
            info.on_change == OnChange::Ask && info.state == AccountState::Changed
        });
        let renewable = account
            .as_ref()
            .is_some_and(|info| renew::plan(info).is_ok());
        let Some(note) = note_for(&event.kind, &settings, ask_account, renewable, auto_renew)
        else {
            continue;
        };
        let engine = engine.clone();
        let socket = engine.settings().socket.path.clone();
        let warned = warned.clone();
        // Showing and waiting for an action block (D-Bus round trips, the user's click).
        tokio::task::spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            match show(&note) {
                Ok(Some(action)) if action == LOGIN_ACTION && note.login.is_some() => {
                    if let Some(session) = &note.login {
                        handle.block_on(login_from_notification(&socket, session));
                    }
                }
                Ok(Some(action)) if action == RENEW_ACTION && note.renew.is_some() => {
                    if let Some(account) = &note.renew {
                        handle.block_on(renew_from_notification(&socket, account));
                    }
                }
                Ok(Some(action)) if action == ACCEPT_ACTION => {
                    if let Some(account) = note.ask {
                        let accepted = handle.block_on(async {
                            engine.accept(account.clone()).await.answer().await
                        });
                        match accepted {
                            Ok(_) => {
                                tracing::info!(account = %account, "accepted from a desktop notification")
                            }
                            Err(err) => {
                                tracing::warn!(account = %account, error = %err.message, "accept from a desktop notification failed")
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %err, "desktop notifications are unavailable; continuing without them");
                    } else {
                        tracing::debug!(error = %err, "desktop notification not shown");
                    }
                }
            }
        });
    }
}

/// `cmdrctl` beside cmdrd (the same installation), else the one on `PATH`.
fn cmdrctl() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("cmdrctl")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("cmdrctl"))
}

/// Runs `cmdrctl ARGS` against this daemon's socket, without a terminal; its last line
/// of standard error when it fails (cmdrctl's messages never hold a secret).
async fn run_cmdrctl(socket: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let run = tokio::process::Command::new(cmdrctl())
        .args(args)
        .env("CMDR_SOCKET", socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(renew::SSO_LOGIN_DEADLINE, run).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let last: String = last.chars().filter(|c| !c.is_control()).take(300).collect();
            Err(if last.is_empty() {
                format!("cmdrctl {} exited with {}", args.join(" "), out.status)
            } else {
                last
            })
        }
        Ok(Err(err)) => Err(format!("cannot run cmdrctl: {err}")),
        Err(_) => Err(format!("cmdrctl {} took too long", args.join(" "))),
    }
}

/// "Sign in" was clicked: `cmdrctl login SESSION` (next to cmdrd), which opens the
/// browser at the portal, in the daemon's session. Only ever after the user's click.
async fn login_from_notification(socket: &std::path::Path, session: &str) {
    match run_cmdrctl(socket, &["login", session]).await {
        Ok(()) => tracing::info!(session, "signed in from a desktop notification"),
        Err(err) => {
            tracing::warn!(session, error = %err, "sign-in from a desktop notification failed");
        }
    }
}

/// "Renew" was clicked: `cmdrctl renew NAME`, as the person would type it, so it takes
/// the same path: an account on a kept portal signs in if it must (a browser only now,
/// after the click) and cmdrd fetches its credentials at once (`RenewNow`); any other
/// opens its portal or runs `aws sso login`. A failure becomes a notification of its own
/// (nobody sees the log).
async fn renew_from_notification(socket: &std::path::Path, account: &str) {
    match run_cmdrctl(socket, &["renew", account]).await {
        Ok(()) => tracing::info!(account, "renewed from a desktop notification"),
        Err(err) => {
            tracing::warn!(account, error = %err, "renew from a desktop notification failed");
            let note = Note {
                summary: format!("Renewing {account} failed"),
                body: err,
                ask: None,
                renew: None,
                login: None,
                urgent: false,
            };
            if let Err(err) = tokio::task::spawn_blocking(move || show(&note)).await {
                tracing::debug!(error = %err, "failure notification not shown");
            }
        }
    }
}

/// Shows the note; for a note with `ask` or `renew`, waits for the user's action (or the
/// notification's closing) and returns it.
#[cfg(all(unix, not(target_os = "macos")))]
fn show(note: &Note) -> Result<Option<String>, notify_rust::error::Error> {
    use notify_rust::{Hint, Notification, Timeout, Urgency};
    let mut notification = Notification::new();
    notification
        .appname("cmdr")
        .summary(&note.summary)
        .body(&note.body)
        .icon("dialog-password")
        .urgency(if note.urgent {
            Urgency::Critical
        } else {
            Urgency::Normal
        });
    if note.ask.is_some() {
        notification
            .action(ACCEPT_ACTION, "Use new token")
            .action(IGNORE_ACTION, "Ignore")
            .hint(Hint::Resident(true))
            .timeout(Timeout::Never);
    } else if note.renew.is_some() {
        notification
            .action(RENEW_ACTION, "Renew")
            .action(IGNORE_ACTION, "Dismiss");
    } else if note.login.is_some() {
        notification
            .action(LOGIN_ACTION, "Sign in")
            .action(IGNORE_ACTION, "Dismiss");
    }
    let handle = notification.show()?;
    if note.ask.is_none() && note.renew.is_none() && note.login.is_none() {
        return Ok(None);
    }
    let mut chosen = None;
    handle.wait_for_action(|action| chosen = Some(action.to_owned()));
    Ok(chosen)
}

#[cfg(target_os = "macos")]
fn show(note: &Note) -> Result<Option<String>, notify_rust::error::Error> {
    // The notification centre has no actions through notify-rust: the body says what to run.
    notify_rust::Notification::new()
        .appname("cmdr")
        .summary(&note.summary)
        .body(&note.body)
        .show()?;
    Ok(None)
}

#[cfg(windows)]
fn show(_note: &Note) -> Result<Option<String>, std::io::Error> {
    Err(std::io::Error::other(
        "desktop notifications are not supported on Windows yet",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_follow_settings_and_policy() {
        let changed = EventKind::TokenChanged {
            account: "acme".into(),
            profile: "acme".into(),
            old_fingerprint: None,
            new_fingerprint: None,
            expires_at: None,
            expiry_source: None,
        };
        let all = DesktopSettings::default();
        let note = note_for(&changed, &all, true, false, false).expect("note");
        assert_eq!(note.ask.as_deref(), Some("acme"));
        assert!(note.body.contains("cmdrctl accept acme"));
        // `auto` accounts already use the new token: nothing to ask.
        assert_eq!(note_for(&changed, &all, false, false, false), None);
        let off = DesktopSettings {
            token_changed: false,
            ..all
        };
        assert_eq!(note_for(&changed, &off, true, false, false), None);
        let expired = EventKind::Expired {
            account: "acme".into(),
            profile: "acme".into(),
            expires_at: "2026-11-29T10:00:00Z".into(),
        };
        assert!(
            note_for(&expired, &all, false, false, false)
                .is_some_and(|n| n.urgent && n.ask.is_none() && n.renew.is_none())
        );
        // Renew is offered only where `cmdrctl renew` would work; otherwise the body says
        // how to make it work.
        let renew = note_for(&expired, &all, false, true, false).expect("note");
        assert_eq!(renew.renew.as_deref(), Some("acme"));
        assert!(renew.body.contains("cmdrctl renew acme"), "{}", renew.body);
        let no_portal = note_for(&expired, &all, false, false, false).expect("note");
        assert!(
            no_portal.body.contains("--portal URL"),
            "{}",
            no_portal.body
        );
        let soon = EventKind::ExpiringSoon {
            account: "acme".into(),
            profile: "acme".into(),
            expires_at: "2026-11-29T10:00:00Z".into(),
        };
        assert_eq!(
            note_for(&soon, &all, false, true, false).and_then(|n| n.renew),
            Some("acme".into())
        );
        assert_eq!(
            note_for(&EventKind::DaemonStopping, &all, false, false, false),
            None
        );
    }
}
