//! `cmdrctl renew NAME`: gets a new token for an account, in the user's terminal. An
//! account with a portal that is an sso-session (an SSO profile, or a pasted "Option 2"
//! block cmdrd renews) takes `login`'s path: sign in if the portal is not signed in (also
//! when the fetch finds its session ended), then `RenewNow`, and cmdrd fetches the role's
//! credentials at once. Any other account: open its
//! access portal in the browser, or for an SSO profile cmdrd does not keep run `aws sso
//! login` (the plan and the runner are `cmdr_config::renew`).

use std::path::Path;
use std::process::ExitCode;

use cmdr_client::{Client, ClientError};
use cmdr_config::renew::{self, Done, Mode, Plan};
use cmdr_proto::{Request, Response};

pub async fn run(
    socket: &Path,
    name: String,
    device_code: bool,
    no_browser: bool,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    let through_portal = client
        .welcome()
        .features
        .iter()
        .any(|f| f == cmdr_proto::FEATURE_RENEW_NOW);
    if through_portal
        && let Some(plan) = crate::renewals::one(&mut client, &name).await?
        && let Some(session) = plan.session
    {
        drop(client);
        let way = SignIn {
            device_code,
            no_browser,
            json,
        };
        return Ok(portal(socket, &name, &session, plan.signin_expires_at, way).await);
    }
    let info = match client.request(Request::ShowAccount { name }).await? {
        Response::Account(info) => info,
        _ => {
            return Err(ClientError::Proto(cmdr_proto::ProtoError::Malformed(
                "unexpected answer to a show request".to_owned(),
            )));
        }
    };
    drop(client);
    let plan = match renew::plan(&info) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("cmdrctl: {err}");
            return Ok(ExitCode::from(1));
        }
    };
    if !json {
        match &plan {
            Plan::Open { url } => eprintln!("opening {url} in your browser"),
            // `aws sso login` when the AWS CLI v2 is here; else the portal (said after).
            Plan::SsoLogin { profile, .. } => {
                eprintln!("signing in to SSO for profile {profile}");
            }
        }
    }
    let account = &info.name;
    match renew::run(&plan, Mode::Interactive).await {
        Ok(done) => {
            if json {
                let (action, url, profile) = match &done {
                    Done::Opened { url } => ("opened", Some(url.as_str()), None),
                    Done::OpenedInstead { url, .. } => ("opened", Some(url.as_str()), None),
                    Done::SignedIn { profile } => ("signed_in", None, Some(profile.as_str())),
                };
                println!(
                    "{}",
                    serde_json::json!({
                        "account": account,
                        "done": action,
                        "url": url,
                        "profile": profile,
                    })
                );
                return Ok(ExitCode::SUCCESS);
            }
            let accept = if info.on_change == cmdr_proto::OnChange::Ask {
                format!(", then `cmdrctl accept {account}`")
            } else {
                String::new()
            };
            match done {
                Done::Opened { .. } => println!(
                    "opened the portal of {account}: sign in, copy \"Option 2\", then run `cmdrctl paste --clipboard`{accept}"
                ),
                Done::OpenedInstead { why, .. } => println!(
                    "{why}, so the portal of {account} was opened instead: copy \"Option 2\", then run `cmdrctl paste --clipboard`{accept}"
                ),
                Done::SignedIn { profile } => println!(
                    "signed in: `aws sso login --profile {profile}` succeeded; cmdrd sees the new token in the SSO cache{accept}"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("cmdrctl: renew {account}: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A page cursor just before `name`, so that the page after it starts at `name`: its
/// last character made one smaller and followed by the largest character (account names
/// hold no such character, so none sorts between).
pub(crate) fn before(name: &str) -> String {
    let mut cursor = name.to_owned();
    if let Some(smaller) = cursor
        .pop()
        .and_then(|c| char::from_u32(u32::from(c).checked_sub(1)?))
    {
        cursor.push(smaller);
        cursor.push(char::MAX);
    }
    cursor
}

/// How `renew` signs in when it must, and how it answers.
#[derive(Clone, Copy)]
struct SignIn {
    device_code: bool,
    no_browser: bool,
    json: bool,
}

/// `renew` through the portal, in one step: sign in if the portal is not signed in for at
/// least another minute, then cmdrd fetches the credentials now. A portal session that
/// ended while cmdrd still counted it signed in (its refresh or the fetch is refused only
/// when asked) is found by the refused fetch: then sign in and fetch again, once.
async fn portal(
    socket: &Path,
    name: &str,
    session: &str,
    signed_in_until: Option<String>,
    way: SignIn,
) -> ExitCode {
    let fail = |err: &dyn std::fmt::Display| {
        eprintln!("cmdrctl: renew {name}: {err}");
        ExitCode::from(1)
    };
    let soon = chrono::Utc::now() + chrono::Duration::minutes(1);
    let signed_in = signed_in_until
        .as_deref()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .is_some_and(|at| at > soon);
    if !signed_in && let Err(err) = sign_in(session, way).await {
        return fail(&err);
    }
    let mut answer = renew_now(socket, name, !signed_in).await;
    if signed_in
        && matches!(answer, Err(ClientError::Daemon(_)))
        && signin_needed(socket, name).await
    {
        if let Err(err) = sign_in(session, way).await {
            return fail(&err);
        }
        answer = renew_now(socket, name, true).await;
    }
    match answer {
        Ok(Response::Renewed(renewed)) => {
            let until = renewed.expires_at.as_deref().unwrap_or("unknown");
            if way.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "account": name,
                        "done": "renewed",
                        "session": session,
                        "expires_at": renewed.expires_at,
                    })
                );
            } else {
                println!(
                    "renewed {name} through sso-session {session}: new credentials until {until}"
                );
            }
            ExitCode::SUCCESS
        }
        Ok(_) => fail(&"unexpected answer to a renew request"),
        Err(err) => fail(&err),
    }
}

/// Signs in to sso-session `session` as `login` does.
async fn sign_in(session: &str, way: SignIn) -> anyhow::Result<()> {
    let settings = cmdr_config::Settings::load(None, None)?;
    let Some(portal) = crate::login::session_portal(&settings, session) else {
        anyhow::bail!(
            "{}: no [sso-session {session}] with sso_start_url and sso_region",
            settings.aws_config.display()
        );
    };
    if !way.json {
        eprintln!("signing in to {} (sso-session {session})", portal.start_url);
    }
    crate::login::sign_in(&settings, &portal, false, way.device_code, way.no_browser).await?;
    Ok(())
}

/// Whether cmdrd now says account `name`'s portal needs a sign-in.
async fn signin_needed(socket: &Path, name: &str) -> bool {
    let asked = async {
        let mut client = Client::connect(socket, "cmdrctl").await?;
        crate::renewals::one(&mut client, name).await
    };
    matches!(asked.await, Ok(Some(plan)) if plan.signin_needed())
}

/// `RenewNow`. Right after a sign-in the daemon sees the new token through its watch of
/// the SSO cache; a keeper that has not yet may answer that it needs one: ask again
/// briefly.
async fn renew_now(socket: &Path, name: &str, after_signin: bool) -> Result<Response, ClientError> {
    let renewed = || async {
        let mut client = Client::connect(socket, "cmdrctl").await?;
        client
            .request(Request::RenewNow {
                name: name.to_owned(),
            })
            .await
    };
    let mut tries = 0;
    loop {
        match renewed().await {
            Err(ClientError::Daemon(err))
                if after_signin && tries < 10 && err.code == cmdr_proto::ErrorCode::Internal =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::before;

    #[test]
    fn the_cursor_before_a_name_sorts_just_before_it() {
        for name in ["acme", "a", "acme-dev", "a0", "Z_1"] {
            let cursor = before(name);
            assert!(cursor.as_str() < name, "{name}");
            // No account name (ASCII letters, digits, `-`, `_`, `.`) sorts between.
            for other in ["acmd", "acmd-", "acm", "acme-", "a-", "Z_0", "Z_0z"] {
                assert!(
                    !(cursor.as_str() < other && other < name),
                    "{other} between {cursor:?} and {name}"
                );
            }
        }
    }
}
