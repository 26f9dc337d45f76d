//! cmdrctl: the command line over cmdr-client. Exit codes: 0 ok, 1 failure, 2 usage error
//! (clap, or a value the daemon rejects as malformed), 3 daemon not reachable.

// Every `print!`/`println!` below goes through `stdout::write`, so a closed pipe ends
// cmdrctl as SIGPIPE ends other Unix tools instead of panicking (see stdout.rs). Defined
// before the modules so that they use these too.
macro_rules! println {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

mod args;
mod clipboard;
mod doctor;
mod handout;
mod harden;
mod hook;
mod output;
mod paste;
mod prompt;
mod renew;
mod service;
mod stdout;

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser as _;
use cmdr_client::{Client, ClientError};

use crate::args::{AccountsCommand, Cli, Command};
use cmdr_proto::{
    AccountEdit, AccountSpec, AccountState, ErrorCode, OnChange, Request, Response, TargetKind,
    TargetSpec,
};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NO_DAEMON: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cmdrctl: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

fn report(err: &ClientError) -> ExitCode {
    // Daemon errors may quote what a peer or a file said.
    eprintln!(
        "cmdrctl: {}",
        cmdr_core::text::escape_controls(&err.to_string())
    );
    match err {
        ClientError::NotRunning { .. } | ClientError::OtherUser { .. } => {
            ExitCode::from(EXIT_NO_DAEMON)
        }
        // The daemon found a value malformed (or the name taken): a usage error.
        ClientError::Daemon(reply)
            if matches!(reply.code, ErrorCode::BadRequest | ErrorCode::Exists) =>
        {
            ExitCode::from(EXIT_USAGE)
        }
        ClientError::Timeout(_) => {
            eprintln!(
                "hint: cmdrd may be stopped or stuck; restart it (`cmdrctl service install` sets it up to restart)"
            );
            ExitCode::from(EXIT_NO_DAEMON)
        }
        ClientError::Incompatible(_) => {
            eprintln!(
                "hint: restart cmdrd after upgrading, so that both come from the same release"
            );
            ExitCode::from(EXIT_FAILURE)
        }
        _ => ExitCode::from(EXIT_FAILURE),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, ClientError> {
    let socket = cmdr_config::client_socket(cli.socket.clone()).path;
    let json = cli.json;
    // A malformed portal is a usage error, stated before the daemon (which checks it too)
    // is asked.
    if let Command::Accounts(AccountsCommand::Add { spec, .. } | AccountsCommand::Edit { spec, .. }) =
        &cli.command
        && let Some(url) = &spec.portal
        && let Err(err) = cmdr_core::account::check_portal(url)
    {
        eprintln!("cmdrctl: {err}");
        return Ok(ExitCode::from(2));
    }
    let request = match cli.command {
        Command::Doctor { config } => return Ok(doctor::run(config.as_deref(), json)),
        Command::Service {
            action,
            dry_run,
            platform,
        } => return Ok(service::run(action, platform, dry_run)),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "cmdrctl",
                &mut text,
            );
            stdout::write_bytes(&text);
            return Ok(ExitCode::SUCCESS);
        }
        Command::GenerateAssets { out } => {
            let command = <Cli as clap::CommandFactory>::command();
            return Ok(match cmdr_config::assets::write(command, "cmdrctl", &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!(
                        "cmdrctl: cannot generate assets in {}: {err}",
                        out.display()
                    );
                    ExitCode::from(EXIT_FAILURE)
                }
            });
        }
        Command::Paste {
            profile,
            clipboard,
            clear_clipboard,
            expires_in,
            expires_at,
            force,
            config,
        } => {
            harden::non_dumpable();
            return Ok(paste::run(paste::Options {
                config: config.as_deref(),
                socket: &socket,
                profile,
                clipboard,
                clear_clipboard,
                expires: expires_in.map(|d| Utc::now() + d).or(expires_at),
                force,
                json,
            })
            .await);
        }
        Command::Hook { shell } => {
            print!("{}", hook::snippet(shell));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Env {
            name,
            shell,
            force,
            if_changed,
            serve,
        } => {
            // A shell on the endpoint follows the accepted token by itself.
            if if_changed.as_deref() == Some(handout::SERVED) {
                return Ok(ExitCode::SUCCESS);
            }
            harden::non_dumpable();
            // The prompt hooks run this at every prompt: 200 ms at most, and silent.
            let deadline = if if_changed.is_some() {
                cmdr_client::PROMPT_DEADLINE
            } else {
                cmdr_client::DEFAULT_DEADLINE
            };
            let vars = if serve {
                served(&socket, name, deadline).await?
            } else {
                let asked = credentials(&socket, name, force, deadline);
                // The hook's 200 ms are for connecting and asking together.
                let asked = if if_changed.is_some() {
                    cmdr_client::within(deadline, asked).await
                } else {
                    asked.await
                };
                let handout = match asked {
                    Ok(handout) => handout,
                    Err(ClientError::Timeout(_)) if if_changed.is_some() => {
                        return Ok(ExitCode::from(EXIT_NO_DAEMON));
                    }
                    Err(err) => return Err(err),
                };
                if if_changed.is_some_and(|fp| fp == handout::fingerprint(&handout)) {
                    return Ok(ExitCode::SUCCESS);
                }
                handout::variables(&handout)
            };
            if json {
                output::print_json(&handout::env_json(vars));
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", handout::env_lines(vars, handout::Shell::pick(shell)));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec {
            name,
            static_keys,
            force,
            command,
        } => {
            let deadline = cmdr_client::DEFAULT_DEADLINE;
            if static_keys {
                harden::non_dumpable();
            }
            let vars = if static_keys {
                handout::variables(&credentials(&socket, name, force, deadline).await?)
            } else {
                served(&socket, name, deadline).await?
            };
            return Ok(handout::exec(vars, &command));
        }
        Command::CredentialProcess { name, force } => {
            harden::non_dumpable();
            let handout = credentials(&socket, name, force, cmdr_client::DEFAULT_DEADLINE).await?;
            println!(
                "{}",
                handout::credential_process_json(&handout, chrono::Utc::now())
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Watch => return watch(Client::connect(&socket, "cmdrctl").await?, json).await,
        Command::Status => Request::Status,
        Command::Profiles => Request::Profiles,
        Command::Accept { name } => return accept(&socket, name, json).await,
        Command::Validate { name } => Request::Validate { name },
        Command::Renew { name } => return renew::run(&socket, name, json).await,
        Command::Prompt {
            account,
            all,
            format,
        } => {
            let pick = match (&account, all) {
                (_, true) => prompt::Pick::All,
                (Some(name), false) => prompt::Pick::Named(name),
                (None, false) => prompt::Pick::ExpiringFirst,
            };
            return Ok(prompt::run(&socket, pick, &format, json).await);
        }
        Command::Accounts(command) => accounts_request(command),
    };
    let verb = match &request {
        Request::AddAccount(_) => "added",
        Request::EditAccount { .. } => "updated",
        _ => "",
    };
    let mut client = Client::connect(&socket, "cmdrctl").await?;
    // Lists of any length come a page at a time (from a daemon that pages).
    let response = match request {
        Request::Profiles => Response::Profiles(client.profiles().await?),
        Request::ListAccounts => Response::Accounts(client.accounts().await?),
        request => client.request(request).await?,
    };
    match response {
        Response::Status(status) => output::status(&status, json),
        Response::Profiles(profiles) => output::profiles(&profiles, json),
        Response::Accounts(accounts) => output::accounts(&accounts, json),
        Response::Account(account) => output::account(&account, verb, json),
        Response::Done => {
            if json {
                println!("{{\"ok\":true}}");
            } else {
                println!("done");
            }
        }
        Response::Validated(identity) => output::identity(&identity, json),
        Response::Subscribed
        | Response::Credentials(_)
        | Response::Served(_)
        | Response::ProfilesPage(_)
        | Response::AccountsPage(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The request of an `accounts` subcommand.
fn accounts_request(command: AccountsCommand) -> Request {
    match command {
        AccountsCommand::List => Request::ListAccounts,
        AccountsCommand::Show { name } => Request::ShowAccount { name },
        AccountsCommand::Remove { name } => Request::RemoveAccount { name },
        AccountsCommand::Add { name, spec } => {
            // Required by clap for `add`.
            let profile = spec.profile.clone().unwrap_or_default();
            Request::AddAccount(AccountSpec {
                name,
                profile,
                region: spec.region.clone(),
                target: spec.target().unwrap_or(TargetSpec {
                    target: TargetKind::Aws,
                    endpoint: None,
                }),
                on_change: spec.on_change.unwrap_or(OnChange::Ask),
                portal: spec.portal.clone(),
            })
        }
        AccountsCommand::Edit {
            name,
            spec,
            no_region,
            aws,
            no_portal,
        } => Request::EditAccount {
            name,
            edit: AccountEdit {
                profile: spec.profile.clone(),
                region: spec.region.clone(),
                clear_region: no_region,
                target: if aws {
                    Some(TargetSpec {
                        target: TargetKind::Aws,
                        endpoint: None,
                    })
                } else {
                    spec.target()
                },
                on_change: spec.on_change,
                portal: spec.portal.clone(),
                clear_portal: no_portal,
            },
        },
    }
}

/// `accept NAME`: says so when there is nothing new to accept (the daemon then changes
/// nothing and emits no event).
async fn accept(
    socket: &std::path::Path,
    name: String,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    let before = match client
        .request(Request::ShowAccount { name: name.clone() })
        .await?
    {
        Response::Account(info) => info,
        _ => return Err(unexpected("a show request")),
    };
    let Response::Account(after) = client.request(Request::Accept { name }).await? else {
        return Err(unexpected("an accept request"));
    };
    // What the daemon accepts: another token, or the same one after a failure.
    let new_token = before.fingerprint != before.accepted_fingerprint
        || matches!(
            before.state,
            AccountState::Invalid | AccountState::Misconfigured
        );
    if json {
        output::print_json(&after);
    } else if new_token {
        output::account(&after, "accepted", false);
    } else {
        println!(
            "account {} already uses the token in the file (state {}): nothing to accept",
            after.name, after.state
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn credentials(
    socket: &std::path::Path,
    name: String,
    force: bool,
    deadline: std::time::Duration,
) -> Result<cmdr_proto::HandOut, ClientError> {
    let mut client = Client::connect_within(socket, "cmdrctl", deadline).await?;
    match client.request(Request::Serve { name, force }).await? {
        Response::Served(served) => Ok(served.handout.clone()),
        _ => Err(unexpected("a credentials request")),
    }
}

/// The endpoint variables of an account: checked first (a refusal now is clearer than an
/// SDK error in the child later), then the endpoint from `status`.
async fn served(
    socket: &std::path::Path,
    name: String,
    deadline: std::time::Duration,
) -> Result<Vec<(&'static str, Option<String>)>, ClientError> {
    let handout = credentials(socket, name, false, deadline).await?;
    let mut client = Client::connect_within(socket, "cmdrctl", deadline).await?;
    let Response::Status(status) = client.request(Request::Status).await? else {
        return Err(unexpected("a status request"));
    };
    let Some(endpoint) = status.endpoint else {
        return Err(ClientError::Daemon(cmdr_proto::ErrorReply {
            code: cmdr_proto::ErrorCode::BadRequest,
            message: "the credentials endpoint is disabled (endpoint.enabled in cmdr's config.toml): use --static".to_owned(),
        }));
    };
    Ok(handout::served_variables(&handout, &endpoint))
}

fn unexpected(what: &str) -> ClientError {
    ClientError::Proto(cmdr_proto::ProtoError::Malformed(format!(
        "unexpected answer to {what}"
    )))
}

async fn watch(mut client: Client, json: bool) -> Result<ExitCode, ClientError> {
    client.subscribe().await?;
    if !json {
        eprintln!("watching cmdrd events (Ctrl-C to stop)");
    }
    loop {
        let event = tokio::select! {
            event = client.next_event() => event?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let Some(event) = event else {
            eprintln!("cmdrctl: cmdrd closed the connection");
            return Ok(ExitCode::from(EXIT_NO_DAEMON));
        };
        // A newer daemon's event type: the contract says clients ignore it.
        if event.kind == cmdr_proto::EventKind::Unknown {
            continue;
        }
        output::event(&event, json);
        if matches!(event.kind, cmdr_proto::EventKind::DaemonStopping) {
            eprintln!("cmdrctl: cmdrd stopped; nothing more to watch");
            return Ok(ExitCode::from(EXIT_NO_DAEMON));
        }
    }
}
