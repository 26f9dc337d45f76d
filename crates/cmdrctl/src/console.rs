//! `cmdrctl console NAME [--print]`: the AWS console signed in as the account's accepted
//! session. The daemon makes the federation URL; it is a bearer secret, so it is opened in
//! the browser and printed only with `--print` (to stdout), never logged.

use std::process::ExitCode;

use cmdr_client::{Client, ClientError};
use cmdr_proto::{Request, Response};

pub async fn run(
    socket: &std::path::Path,
    name: String,
    print: bool,
    json: bool,
) -> Result<ExitCode, ClientError> {
    if json && !print {
        eprintln!("cmdrctl: console --json prints the URL: add --print");
        return Ok(ExitCode::from(2));
    }
    let mut client = Client::connect(socket, "cmdrctl").await?;
    if !client
        .welcome()
        .features
        .iter()
        .any(|f| f == cmdr_proto::FEATURE_CONSOLE)
    {
        return Err(ClientError::Incompatible(format!(
            "cmdrd {} cannot sign in to the console: restart cmdrd",
            client.welcome().daemon_version
        )));
    }
    let Response::ConsoleUrl(console) = client.request(Request::ConsoleUrl { name }).await? else {
        return Err(ClientError::Proto(cmdr_proto::ProtoError::Malformed(
            "unexpected answer to a console request".to_owned(),
        )));
    };
    if print {
        if json {
            crate::output::print_json(&serde_json::json!({ "url": console.url }));
        } else {
            println!("{}", console.url);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match cmdr_config::renew::open(&console.url).await {
        Ok(()) => {
            eprintln!(
                "opened the AWS console in the browser (the sign-in link is valid for 15 minutes)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            // The opener's error names its command line, and with it the URL: a bearer
            // secret, printed only with `--print`.
            let why = err.to_string().replace(&console.url, "<the sign-in URL>");
            eprintln!(
                "cmdrctl: cannot open a browser ({why}); run `cmdrctl console --print` and open the URL yourself"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
