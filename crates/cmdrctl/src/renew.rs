//! `cmdrctl renew NAME`: starts getting a new token for an account, in the user's terminal:
//! opens its access portal in the browser, or for an SSO profile runs `aws sso login` and
//! reports the outcome (the plan and the runner are `cmdr_config::renew`, shared with the
//! desktop notifications).

use std::path::Path;
use std::process::ExitCode;

use cmdr_client::{Client, ClientError};
use cmdr_config::renew::{self, Done, Mode, Plan};
use cmdr_proto::{Request, Response};

pub async fn run(socket: &Path, name: String, json: bool) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
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
