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
mod console;
mod container;
mod doctor;
mod handout;
mod harden;
mod hook;
mod import;
mod login;
mod output;
mod paste;
mod portal;
mod prompt;
mod renew;
mod renewals;
mod report;
mod sentinel;
mod service;
mod stdout;
mod watch;

use std::process::ExitCode;

use chrono::Utc;
use clap::Parser as _;
use cmdr_client::{Client, ClientError};

use crate::args::{AccountsCommand, Cli, Command};
use crate::report::{needs_fixing, report, unexpected, usage_problem};
use cmdr_proto::{AccountEdit, AccountSpec, OnChange, Request, Response, TargetKind, TargetSpec};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_NO_DAEMON: u8 = 3;

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
    if let Some(refusal) = usage_problem(&cli) {
        eprintln!("cmdrctl: {refusal}");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    // A region no known partition has is kept, with a warning naming the nearest one.
    if let Command::Accounts(AccountsCommand::Add { spec, .. } | AccountsCommand::Edit { spec, .. }) =
        &cli.command
        && let Some(warning) = spec
            .region
            .as_deref()
            .and_then(cmdr_core::input::region_warning)
    {
        eprintln!("cmdrctl: warning: {warning}");
    }
    // Commands that write the user's files themselves: never as root on another user's.
    let writes_locally = match &cli.command {
        Command::Paste { config, .. }
        | Command::Login { config, .. }
        | Command::Logout { config, .. }
        | Command::Accounts(AccountsCommand::Import { config, .. }) => Some(config.as_deref()),
        Command::Service { .. } | Command::Renew { .. } => Some(None),
        Command::Accounts(
            AccountsCommand::Add { spec, .. } | AccountsCommand::Edit { spec, .. },
        ) if spec.sso_region.is_some() => Some(None),
        _ => None,
    };
    if let Some(config) = writes_locally
        && let Ok(settings) = cmdr_config::Settings::load(config, None)
        && let Err(message) = cmdr_config::refuse_root_on_foreign_files(&settings, "cmdrctl")
    {
        eprintln!("cmdrctl: {message}");
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    // `--portal URL --sso-region R`: the portal's [sso-session], decided before the daemon
    // is asked and written once it took the account.
    let session = match &cli.command {
        Command::Accounts(
            AccountsCommand::Add { name, spec } | AccountsCommand::Edit { name, spec, .. },
        ) => match (&spec.portal, &spec.sso_region) {
            (Some(url), Some(region)) => {
                let planned = cmdr_config::Settings::load(None, None).and_then(|settings| {
                    let plan = portal::plan(&settings, url, region, name)?;
                    Ok((settings, plan, name.clone()))
                });
                match planned {
                    Ok(planned) => Some(planned),
                    Err(err) => {
                        eprintln!("cmdrctl: {err:#}");
                        return Ok(ExitCode::from(EXIT_FAILURE));
                    }
                }
            }
            _ => None,
        },
        _ => None,
    };
    let request = match cli.command {
        Command::Doctor { config } => return Ok(doctor::run(config.as_deref(), json)),
        Command::Login {
            name,
            portal,
            sso_region,
            device_code,
            no_browser,
            config,
        } => {
            return Ok(login::login(
                config.as_deref(),
                name,
                portal,
                sso_region,
                device_code,
                no_browser,
                json,
            )
            .await);
        }
        Command::Logout { name, config } => return Ok(login::logout(config.as_deref(), name).await),
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
            let vars = match handout::printable(vars) {
                Ok(vars) => vars,
                Err(message) => {
                    eprintln!("cmdrctl: {message}");
                    return Ok(ExitCode::FAILURE);
                }
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
        Command::Watch { once } => return watch::run(&socket, json, once).await,
        Command::Status => Request::Status,
        Command::Profiles => Request::Profiles,
        Command::Accept { name } => return accept(&socket, name, json).await,
        Command::Validate { name } => Request::Validate { name },
        Command::Renew {
            name,
            device_code,
            no_browser,
        } => return renew::run(&socket, name, device_code, no_browser, json).await,
        Command::Container(action) => return container::run(&socket, action, json).await,
        Command::Console { name, print } => {
            return console::run(&socket, name, print, json).await;
        }
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
        Command::Accounts(AccountsCommand::Import {
            name,
            roles,
            region,
            dry_run,
            config,
        }) => {
            return Ok(import::run(import::Options {
                config: config.as_deref(),
                socket: &socket,
                name,
                roles,
                region,
                dry_run,
                json,
            })
            .await);
        }
        Command::Accounts(AccountsCommand::Show { name }) => {
            return show(&socket, name, json).await;
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
        Response::Status(status) if json => output::status(&status, json),
        Response::Status(status) => {
            output::status(&status, json);
            // The accounts that renew themselves, and when: the second clock beside the
            // portals' (only from a daemon that says how accounts renew).
            if let Some(renewals) = renewals::all(&mut client).await?
                && renewals.values().any(|f| f.auto_renew)
            {
                let accounts = client.accounts().await?;
                output::renewing(&accounts, &renewals);
            }
        }
        Response::Profiles(profiles) => output::profiles(&profiles, json),
        Response::Accounts(accounts) if json => {
            let renewals = renewals::all(&mut client).await?;
            output::accounts_json(&accounts, renewals.as_ref());
        }
        Response::Accounts(accounts) => {
            let renewals = renewals::all(&mut client).await?;
            output::accounts(&accounts, renewals.as_ref(), json);
        }
        // After `add`/`edit`, an account in a state that needs fixing says why.
        Response::Account(account) if !json && needs_fixing(account.state) => {
            let asked = client
                .request(Request::AccountDetail {
                    name: account.name.clone(),
                })
                .await;
            let why = match asked {
                Ok(Response::AccountDetail(detail)) => detail.reason,
                _ => None,
            };
            output::account_why(&account, verb, why.as_deref());
        }
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
        | Response::AccountsPage(_)
        | Response::Accepted(_)
        | Response::ChildEnv(_)
        | Response::ConsoleUrl(_)
        | Response::RenewalsPage(_)
        | Response::RenewalPlans(_)
        | Response::Renewed(_) => {}
        Response::AccountDetail(detail) => output::account_detail(&detail, json),
    }
    if let Some((settings, plan, account)) = session {
        return Ok(portal::finish(&settings, plan, &account, json));
    }
    Ok(ExitCode::SUCCESS)
}

/// The request of an `accounts` subcommand.
fn accounts_request(command: AccountsCommand) -> Request {
    match command {
        AccountsCommand::List => Request::ListAccounts,
        AccountsCommand::Show { name } => Request::ShowAccount { name },
        // Handled in `run` before any request is made.
        AccountsCommand::Import { .. } => Request::ListAccounts,
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
            auto_renew,
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
                auto_renew: auto_renew.map(|a| a == args::OnOff::On),
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
    let has = |feature: &str| client.welcome().features.iter().any(|f| f == feature);
    // Whether anything was accepted is the daemon's to say (one rule, in cmdr-core); a
    // daemon from before that answer gets the old request and no such remark.
    let (after, changed) = if has(cmdr_proto::FEATURE_ACCEPT_RESULT) {
        match client.request(Request::AcceptToken { name }).await? {
            Response::Accepted(accepted) => (accepted.account, Some(accepted.changed)),
            _ => return Err(unexpected("an accept request")),
        }
    } else {
        match client.request(Request::Accept { name }).await? {
            Response::Account(info) => (info, None),
            _ => return Err(unexpected("an accept request")),
        }
    };
    if json {
        output::print_json(&after);
    } else if changed == Some(false) {
        println!(
            "account {} already uses the token in the file (state {}): nothing to accept",
            after.name, after.state
        );
    } else {
        output::account(&after, "accepted", false);
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

/// The endpoint variables of an account, from the daemon's `child_env` answer (checked
/// as a hand-out is, so a refusal now is clearer than an SDK error in the child later).
/// No secret passes through cmdrctl on this path.
async fn served(
    socket: &std::path::Path,
    name: String,
    deadline: std::time::Duration,
) -> Result<Vec<(&'static str, Option<std::ffi::OsString>)>, ClientError> {
    let mut client = Client::connect_within(socket, "cmdrctl", deadline).await?;
    if !client
        .welcome()
        .features
        .iter()
        .any(|f| f == cmdr_proto::FEATURE_CHILD_ENV)
    {
        return Err(ClientError::Incompatible(format!(
            "cmdrd {} is older than this cmdrctl and cannot start processes on its endpoint safely: restart cmdrd",
            client.welcome().daemon_version
        )));
    }
    match client.request(Request::ChildEnv { name }).await? {
        Response::ChildEnv(child) => {
            sentinel::ensure(socket, &child.url);
            Ok(handout::served_variables(&child))
        }
        _ => Err(unexpected("a child_env request")),
    }
}

/// `accounts show NAME`: the account with the reason for its state; from a daemon older
/// than that request, the account alone.
async fn show(socket: &std::path::Path, name: String, json: bool) -> Result<ExitCode, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    let detail = match client
        .request(Request::AccountDetail { name: name.clone() })
        .await
    {
        Ok(Response::AccountDetail(detail)) => detail,
        Err(err @ ClientError::Daemon(_)) => return Err(err),
        // An older daemon does not know the request (and closes the connection).
        _ => {
            let mut client = Client::connect(socket, "cmdrctl").await?;
            match client.request(Request::ShowAccount { name }).await? {
                Response::Account(info) => cmdr_proto::AccountDetail {
                    info,
                    reason: None,
                    renewal: None,
                    signin_expires_at: None,
                    auto_renew: false,
                },
                _ => return Err(unexpected("a show request")),
            }
        }
    };
    output::account_detail(&detail, json);
    Ok(ExitCode::SUCCESS)
}
