//! `cmdrctl watch`: the event stream. It outlives a daemon restart (reconnecting with
//! backoff, quiet on stdout) unless `--once`; text output names the command that acts on
//! an event (`cmdrctl accept acme`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use cmdr_client::{Client, ClientError};
use cmdr_proto::{AccountInfo, EventKind, OnChange, RenewalPlan, Request, Response};

use crate::output::{self, Hint};

/// Reconnect attempts: 100 ms doubling to 2 s, so a restarted daemon is back in the
/// stream within about 2 s.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

pub async fn run(socket: &Path, json: bool, once: bool) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    client.subscribe().await?;
    if !json {
        eprintln!("watching cmdrd events (Ctrl-C to stop)");
    }
    loop {
        match stream(&mut client, socket, json).await? {
            Ended::Interrupted => return Ok(ExitCode::SUCCESS),
            Ended::Stopped if once => {
                eprintln!("cmdrctl: cmdrd stopped; nothing more to watch");
                return Ok(ExitCode::from(crate::EXIT_NO_DAEMON));
            }
            Ended::Stopped => {
                eprintln!(
                    "cmdrctl: cmdrd stopped; waiting for it to come back (Ctrl-C to stop; --once exits instead)"
                );
            }
        }
        let Some(again) = reconnect(socket).await? else {
            return Ok(ExitCode::SUCCESS);
        };
        client = again;
        // A restarted daemon that could not get its endpoint's port back says so with
        // `endpoint_moved`, first in the new stream.
        eprintln!("cmdrctl: reconnected to cmdrd");
    }
}

enum Ended {
    Interrupted,
    /// `daemon_stopping`, or the connection closed.
    Stopped,
}

async fn stream(client: &mut Client, socket: &Path, json: bool) -> Result<Ended, ClientError> {
    loop {
        let event = tokio::select! {
            event = client.next_event() => event,
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Interrupted),
        };
        let event = match event {
            Ok(Some(event)) => event,
            // Closed, or cut off mid-frame by a daemon that died.
            Ok(None) | Err(ClientError::Io { .. } | ClientError::Closed) => {
                return Ok(Ended::Stopped);
            }
            Err(err) => return Err(err),
        };
        // A newer daemon's event type: the contract says clients ignore it.
        if event.kind == EventKind::Unknown {
            continue;
        }
        if json {
            output::event(&event, true);
        } else {
            let hint = match next_step(&event.kind) {
                Some(step) => step.hint(&about(socket, &step).await, chrono::Utc::now()),
                None => None,
            };
            output::event_with_hint(&event, hint.as_ref());
        }
        if matches!(event.kind, EventKind::DaemonStopping) {
            return Ok(Ended::Stopped);
        }
    }
}

/// Connects and subscribes again once the daemon answers; `None` on Ctrl-C.
async fn reconnect(socket: &Path) -> Result<Option<Client>, ClientError> {
    let mut delay = RECONNECT_FIRST;
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = tokio::signal::ctrl_c() => return Ok(None),
        }
        match Client::connect(socket, "cmdrctl").await {
            Ok(mut client) => {
                if client.subscribe().await.is_ok() {
                    return Ok(Some(client));
                }
            }
            // Another daemon than the one that stopped: waiting will not change that.
            Err(err @ (ClientError::Incompatible(_) | ClientError::OtherUser { .. })) => {
                return Err(err);
            }
            // Not back yet.
            Err(_) => {}
        }
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

/// What a person does next about an event, before knowing the account's details.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Accept(String),
    /// Another AWS account than the one validated before: accepting is a decision.
    AcceptIfIntended(String),
    Renew(String),
    /// The token nears its end: renew, unless cmdrd renews it itself first.
    RenewSoon(String),
    Show(String),
    Doctor,
    /// Sign in to a portal (an sso-session) again.
    Login(String),
    /// Start again, with `cmdrctl exec`, what was started for the endpoint's old URL.
    ExecAgain,
}

fn next_step(kind: &EventKind) -> Option<Step> {
    match kind {
        EventKind::TokenChanged { account, .. } => Some(Step::Accept(account.clone())),
        EventKind::IdentityChanged { account, .. } => Some(Step::AcceptIfIntended(account.clone())),
        EventKind::ExpiringSoon { account, .. } => Some(Step::RenewSoon(account.clone())),
        EventKind::Expired { account, .. } => Some(Step::Renew(account.clone())),
        EventKind::ValidationFailed { account, .. } => Some(Step::Show(account.clone())),
        EventKind::FileError { .. } => Some(Step::Doctor),
        EventKind::SigninRequired { session, .. } => Some(Step::Login(session.clone())),
        EventKind::EndpointMoved { .. } => Some(Step::ExecAgain),
        // Nothing to do about these. Every type is named: a new one must be placed.
        EventKind::ProfileAdded { .. }
        | EventKind::ProfileRemoved { .. }
        | EventKind::ProfileChanged { .. }
        | EventKind::TokenAccepted { .. }
        | EventKind::Validated { .. }
        | EventKind::FileRecovered { .. }
        | EventKind::AccountAdded { .. }
        | EventKind::AccountRemoved { .. }
        | EventKind::AccountUpdated { .. }
        | EventKind::Lagged { .. }
        | EventKind::DaemonStopping
        | EventKind::SignedIn { .. }
        | EventKind::TokenRenewed { .. }
        | EventKind::Unknown => None,
    }
}

/// What the daemon says of the account behind a step, asked when the event arrives.
#[derive(Debug, Default)]
struct About {
    info: Option<AccountInfo>,
    /// How it renews (`None` from a daemon that does not say).
    plan: Option<RenewalPlan>,
}

impl Step {
    fn account(&self) -> Option<&str> {
        match self {
            Step::Accept(a)
            | Step::AcceptIfIntended(a)
            | Step::Renew(a)
            | Step::RenewSoon(a)
            | Step::Show(a) => Some(a),
            Step::Doctor | Step::Login(_) | Step::ExecAgain => None,
        }
    }

    /// The hint, given the account as the daemon describes it now (nothing known: the
    /// plain command).
    fn hint(&self, about: &About, now: chrono::DateTime<chrono::Utc>) -> Option<Hint> {
        let info = &about.info;
        Some(Hint::Run(match self {
            // An `auto` account has accepted by itself: nothing to do.
            Step::Accept(_) if info.as_ref().is_some_and(|i| i.on_change == OnChange::Auto) => {
                return None;
            }
            Step::Accept(a) => format!("cmdrctl accept {a}"),
            Step::AcceptIfIntended(a) => {
                format!("cmdrctl accept {a}, only if this AWS account is the one you meant")
            }
            // cmdrd renews it before it ends, by itself: a note, not a command.
            Step::RenewSoon(_) if about.plan.as_ref().is_some_and(|p| p.renews_at.is_some()) => {
                return output::renews_at(about.plan.as_ref(), now).map(Hint::Note);
            }
            Step::Renew(a) | Step::RenewSoon(a) => {
                match info.as_ref().map(cmdr_config::renew::plan) {
                    // A portal account signs in first when it must (`renew` is one step).
                    _ if about.plan.as_ref().is_some_and(|p| p.session.is_some()) => {
                        format!("cmdrctl renew {a}")
                    }
                    Some(Err(_)) => "cmdrctl paste (a new token)".to_owned(),
                    _ => format!("cmdrctl renew {a}"),
                }
            }
            Step::Show(a) => format!("cmdrctl accounts show {a}"),
            Step::Doctor => "cmdrctl doctor".to_owned(),
            Step::Login(session) => format!("cmdrctl login {session}"),
            // Processes started for the old URL: no account is named by the event.
            Step::ExecAgain => "cmdrctl exec ACCOUNT -- COMMAND".to_owned(),
        }))
    }
}

/// The account behind a step and how it renews, asked on a connection of its own (the
/// watch connection carries only events); nothing if the daemon cannot say within a
/// second.
async fn about(socket: &Path, step: &Step) -> About {
    let Some(name) = step.account().map(str::to_owned) else {
        return About::default();
    };
    let deadline = Duration::from_secs(1);
    let asked = async {
        let mut client = Client::connect_within(socket, "cmdrctl", deadline)
            .await
            .ok()?;
        let info = match client
            .request(Request::ShowAccount { name: name.clone() })
            .await
        {
            Ok(Response::Account(info)) => Some(info),
            _ => None,
        };
        let plan = match step {
            Step::Renew(_) | Step::RenewSoon(_) => crate::renewals::one(&mut client, &name)
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        Some(About { info, plan })
    };
    tokio::time::timeout(deadline * 2, asked)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Option<Hint> {
        Some(Hint::Run(text.to_owned()))
    }

    #[test]
    fn events_name_the_command_that_acts_on_them() {
        let now = chrono::Utc::now();
        let none = About::default();
        let changed = EventKind::TokenChanged {
            account: "acme".into(),
            profile: "acme".into(),
            old_fingerprint: None,
            new_fingerprint: None,
            expires_at: None,
            expiry_source: None,
        };
        let step = next_step(&changed).expect("a step");
        assert_eq!(step.hint(&none, now), run("cmdrctl accept acme"));
        let expired = EventKind::Expired {
            account: "acme".into(),
            profile: "acme".into(),
            expires_at: "t".into(),
        };
        let step = next_step(&expired).expect("a step");
        assert_eq!(step.hint(&none, now), run("cmdrctl renew acme"));
        assert_eq!(next_step(&EventKind::DaemonStopping), None);
        let ended = EventKind::SigninRequired {
            portal: "https://acme.awsapps.com/start".into(),
            session: "acme".into(),
            reason: "refused".into(),
        };
        let step = next_step(&ended).expect("a step");
        assert_eq!(step.hint(&none, now), run("cmdrctl login acme"));
    }

    /// `expiring_soon` of an account cmdrd renews before its end: when, not a command; one
    /// whose portal needs a sign-in: `renew` (which signs in first).
    #[test]
    fn an_account_that_renews_itself_is_not_told_to_renew() {
        let now = chrono::Utc::now();
        let soon = EventKind::ExpiringSoon {
            account: "acme".into(),
            profile: "acme".into(),
            expires_at: "t".into(),
        };
        let step = next_step(&soon).expect("a step");
        let at = now + chrono::Duration::minutes(5);
        let plan = |renews_at: Option<String>, signin: Option<String>| About {
            info: None,
            plan: Some(RenewalPlan {
                account: "acme".into(),
                auto_renew: true,
                session: Some("corp".into()),
                signin_expires_at: signin,
                renews_at,
            }),
        };
        let renewing = plan(
            Some(at.to_rfc3339()),
            Some((now + chrono::Duration::hours(8)).to_rfc3339()),
        );
        assert_eq!(
            step.hint(&renewing, now),
            Some(Hint::Note(format!(
                "renews itself at {}",
                at.with_timezone(&chrono::Local).format("%H:%M")
            )))
        );
        assert_eq!(step.hint(&plan(None, None), now), run("cmdrctl renew acme"));
        assert_eq!(step.hint(&About::default(), now), run("cmdrctl renew acme"));
    }
}
