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

mod assets;
mod clipboard;
mod doctor;
mod handout;
mod hook;
mod output;
mod paste;
mod prompt;
mod renew;
mod service;
mod stdout;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use cmdr_client::{Client, ClientError};
use cmdr_core::input::{self, InputError};
use cmdr_proto::{
    AccountEdit, AccountSpec, AccountState, ErrorCode, OnChange, Request, Response, TargetKind,
    TargetSpec,
};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NO_DAEMON: u8 = 3;

// clap value parsers: a value that breaks its rule exits 2 with the rule, before anything
// is sent (the daemon applies the same rules to what arrives over the socket).
fn account_name(text: &str) -> Result<String, InputError> {
    input::check_name(text).map(|()| text.to_owned())
}

fn region(text: &str) -> Result<String, InputError> {
    input::check_region(text).map(|()| text.to_owned())
}

fn endpoint(text: &str) -> Result<String, InputError> {
    input::check_endpoint(text).map(|()| text.to_owned())
}

fn expires_at(text: &str) -> Result<DateTime<Utc>, InputError> {
    input::parse_expires_at(text, Utc::now())
}

/// Talk to cmdrd, the AWS credentials daemon.
#[derive(Debug, Parser)]
#[command(name = "cmdrctl", version, about, propagate_version = true)]
pub struct Cli {
    #[arg(long, global = true, env = "CMDR_SOCKET", value_name = "PATH",
          help = format!("Socket of the daemon (default: {})", cmdr_client::DEFAULT_SOCKET_HELP))]
    socket: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Daemon version, uptime, watched files and their health, account summary.
    Status,
    /// Every profile: name, kind, region, source files, expiry, fingerprint.
    Profiles,
    /// Manage accounts (names bound to profiles).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Use the token now in the file for an account (the dialog's "Yes").
    Accept { name: String },
    /// Stream events until interrupted.
    Watch,
    /// Check an account's credentials with STS GetCallerIdentity against its target.
    Validate { name: String },
    /// Start getting a new token: open the account's access portal in the browser, or for
    /// an SSO profile run `aws sso login` for it.
    Renew { name: String },
    /// One short line for shell prompts, e.g. `acme 3h12m`; silent when nothing is bound
    /// or the daemon is down.
    Prompt {
        /// The account to show (default: $CMDR_ACCOUNT, the account of this shell, else the
        /// one expiring first).
        #[arg(long, env = "CMDR_ACCOUNT")]
        account: Option<String>,
        /// Show every account (even in a shell with $CMDR_ACCOUNT).
        #[arg(long)]
        all: bool,
        /// Template with {account}, {left}, {state}, {profile}, {region}.
        #[arg(long, default_value = "{account} {left}")]
        format: String,
    },
    /// Print shell lines that set the account's accepted credentials, region and endpoint:
    /// `eval "$(cmdrctl env acme)"`.
    Env {
        name: String,
        /// bash, zsh, fish or powershell (default: from $SHELL).
        #[arg(long, value_parser = ["bash", "zsh", "sh", "fish", "powershell", "pwsh"])]
        shell: Option<String>,
        /// Hand out the accepted credentials even while the account is changed or expired.
        #[arg(long)]
        force: bool,
        /// Print nothing if the accepted token still has this fingerprint (for `hook`).
        #[arg(long, value_name = "FINGERPRINT")]
        if_changed: Option<String>,
        /// Print the credentials endpoint's variables instead of the keys: the shell's
        /// processes then follow the accepted token.
        #[arg(long, conflicts_with_all = ["force", "if_changed"])]
        serve: bool,
    },
    /// Print a snippet for your shell's rc file that refreshes the AWS_* variables of a
    /// shell that ran `eval "$(cmdrctl env NAME)"` once the account accepts a new token.
    Hook {
        #[arg(value_parser = ["bash", "zsh", "fish", "powershell", "pwsh"])]
        shell: String,
    },
    /// Run a command that gets the account's credentials from the daemon's endpoint, so it
    /// follows the accepted token while it runs (`--static`: the keys themselves).
    Exec {
        name: String,
        /// Put the accepted keys themselves in the environment (for tools without an AWS
        /// SDK); they do not follow a newly accepted token.
        #[arg(long = "static")]
        static_keys: bool,
        /// With --static: hand out the accepted credentials even while the account is
        /// changed or expired.
        #[arg(long, requires = "static_keys")]
        force: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print the account's credentials for an SDK: `credential_process = cmdrctl
    /// credential-process acme`.
    CredentialProcess {
        name: String,
        /// Hand out the accepted credentials even while the account is changed or expired.
        #[arg(long)]
        force: bool,
    },
    /// Read an "Option 2" block on stdin (or the clipboard) and write it into the
    /// credentials file.
    Paste {
        /// Profile to write (default: the block's `[header]`).
        #[arg(long)]
        profile: Option<String>,
        /// Read the block from the clipboard (wl-paste, xclip, xsel, pbpaste,
        /// Get-Clipboard) instead of stdin.
        #[arg(long)]
        clipboard: bool,
        /// Record when the session ends, e.g. 12h.
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at", value_parser = input::parse_session_duration)]
        expires_in: Option<chrono::Duration>,
        /// Record when the session ends, RFC 3339.
        #[arg(long, value_name = "TIME", value_parser = expires_at)]
        expires_at: Option<DateTime<Utc>>,
        /// Write even if the credentials file is read-only (its mode is kept).
        #[arg(long)]
        force: bool,
        #[arg(long, value_name = "PATH",
              help = format!("Config file of cmdr (default: {})", cmdr_client::DEFAULT_CONFIG_HELP))]
        config: Option<PathBuf>,
    },
    /// Register cmdrd to start at login (systemd user unit, launchd agent).
    Service {
        #[command(subcommand)]
        action: service::Action,
        /// Print the files and commands instead of doing anything.
        #[arg(long, global = true)]
        dry_run: bool,
        /// Generate for another platform (with --dry-run).
        #[arg(long, global = true, value_enum)]
        platform: Option<service::Platform>,
    },
    /// Print shell completions for cmdrctl.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages and completions of both binaries under DIR (for packages).
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check both AWS files without the daemon: problems with path and line.
    Doctor {
        #[arg(long, value_name = "PATH",
              help = format!("Config file of cmdr (default: {})", cmdr_client::DEFAULT_CONFIG_HELP))]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Bind a new account to a profile, accepting the token in the file now.
    Add {
        #[arg(value_parser = account_name)]
        name: String,
        #[command(flatten)]
        spec: AccountArgs,
    },
    /// List accounts.
    List,
    /// Show one account.
    Show { name: String },
    /// Change an account.
    Edit {
        name: String,
        #[command(flatten)]
        spec: AccountArgs,
        /// Drop the account's region.
        #[arg(long, conflicts_with = "region")]
        no_region: bool,
        /// Target real AWS again.
        #[arg(long, conflicts_with_all = ["localstack", "endpoint"])]
        aws: bool,
        /// Drop the account's portal (back to the profile's sso_start_url).
        #[arg(long, conflicts_with = "portal")]
        no_portal: bool,
    },
    /// Remove an account (the profile and the files are untouched).
    Remove { name: String },
}

#[derive(Debug, Args)]
struct AccountArgs {
    /// The AWS profile to bind.
    #[arg(long)]
    profile: Option<String>,
    /// Region (default: the profile's region).
    #[arg(long, value_parser = region)]
    region: Option<String>,
    /// Target LocalStack (default endpoint http://localhost:4566).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = cmdr_core::account::DEFAULT_LOCALSTACK, conflicts_with = "endpoint", value_parser = endpoint)]
    localstack: Option<String>,
    /// Target any AWS-compatible endpoint.
    #[arg(long, value_name = "URL", value_parser = endpoint)]
    endpoint: Option<String>,
    /// What to do when the token in the file changes.
    #[arg(long, value_parser = clap::builder::TypedValueParser::map(
        clap::builder::PossibleValuesParser::new(["ask", "auto"]),
        |policy| if policy == "auto" { OnChange::Auto } else { OnChange::Ask },
    ))]
    on_change: Option<OnChange>,
    /// The access portal tokens come from, opened by `cmdrctl renew` (default: the
    /// profile's sso_start_url).
    #[arg(long, value_name = "URL")]
    portal: Option<String>,
}

impl AccountArgs {
    fn target(&self) -> Option<TargetSpec> {
        if let Some(url) = &self.localstack {
            Some(TargetSpec {
                target: TargetKind::Localstack,
                endpoint: Some(url.clone()),
            })
        } else {
            self.endpoint.as_ref().map(|url| TargetSpec {
                target: TargetKind::Endpoint,
                endpoint: Some(url.clone()),
            })
        }
    }
}

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
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| cmdr_client::default_socket().path);
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
            assets::completions(shell, &mut text);
            stdout::write_bytes(&text);
            return Ok(ExitCode::SUCCESS);
        }
        Command::GenerateAssets { out } => return Ok(assets::generate(&out)),
        Command::Paste {
            profile,
            clipboard,
            expires_in,
            expires_at,
            force,
            config,
        } => {
            return Ok(paste::run(paste::Options {
                config: config.as_deref(),
                profile,
                clipboard,
                expires: expires_in.map(|d| Utc::now() + d).or(expires_at),
                force,
                json,
            }));
        }
        Command::Hook { shell } => {
            print!("{}", hook::snippet(&shell));
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
            // The prompt hooks run this at every prompt: 200 ms at most, and silent.
            let deadline = if if_changed.is_some() {
                cmdr_client::PROMPT_DEADLINE
            } else {
                cmdr_client::DEFAULT_DEADLINE
            };
            let vars = if serve {
                served(&socket, name, deadline).await?
            } else {
                let handout = match credentials(&socket, name, force, deadline).await {
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
            print!(
                "{}",
                handout::env_lines(vars, handout::Shell::pick(shell.as_deref()))
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec {
            name,
            static_keys,
            force,
            command,
        } => {
            let deadline = cmdr_client::DEFAULT_DEADLINE;
            let vars = if static_keys {
                handout::variables(&credentials(&socket, name, force, deadline).await?)
            } else {
                served(&socket, name, deadline).await?
            };
            return Ok(handout::exec(vars, &command));
        }
        Command::CredentialProcess { name, force } => {
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
        Command::Accounts(command) => match command {
            AccountsCommand::List => Request::ListAccounts,
            AccountsCommand::Show { name } => Request::ShowAccount { name },
            AccountsCommand::Remove { name } => Request::RemoveAccount { name },
            AccountsCommand::Add { name, spec } => {
                let Some(profile) = spec.profile.clone() else {
                    eprintln!("cmdrctl: accounts add needs --profile PROFILE");
                    return Ok(ExitCode::from(2));
                };
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
        },
    };
    let verb = match &request {
        Request::AddAccount(_) => "added",
        Request::EditAccount { .. } => "updated",
        _ => "",
    };
    let mut client = Client::connect(&socket, "cmdrctl").await?;
    let response = client.request(request).await?;
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
        Response::Subscribed | Response::Credentials(_) | Response::Served(_) => {}
    }
    Ok(ExitCode::SUCCESS)
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
