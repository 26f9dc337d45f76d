//! cmdrctl: the command line over cmdr-client. Exit codes: 0 ok, 1 failure, 2 usage error
//! (clap), 3 daemon not reachable.

mod assets;
mod doctor;
mod handout;
mod hook;
mod output;
mod paste;
mod prompt;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cmdr_client::{Client, ClientError};
use cmdr_proto::{AccountEdit, AccountSpec, Request, Response, TargetSpec};

const EXIT_FAILURE: u8 = 1;
const EXIT_NO_DAEMON: u8 = 3;

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
    /// One short line for shell prompts, e.g. `acme 3h12m`; silent when nothing is bound
    /// or the daemon is down.
    Prompt {
        /// The account to show (default: $CMDR_ACCOUNT, else every account).
        #[arg(long, env = "CMDR_ACCOUNT")]
        account: Option<String>,
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
    },
    /// Print a snippet for your shell's rc file that refreshes the AWS_* variables of a
    /// shell that ran `eval "$(cmdrctl env NAME)"` once the account accepts a new token.
    Hook {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
    /// Run a command with the account's accepted credentials in its environment.
    Exec {
        name: String,
        /// Hand out the accepted credentials even while the account is changed or expired.
        #[arg(long)]
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
    /// Read an "Option 2" block on stdin and write it into the credentials file.
    Paste {
        /// Profile to write (default: the block's `[header]`).
        #[arg(long)]
        profile: Option<String>,
        /// Record when the session ends, e.g. 12h.
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Record when the session ends, RFC 3339.
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
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
    #[arg(long)]
    region: Option<String>,
    /// Target LocalStack (default endpoint http://localhost:4566).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = cmdr_core::account::DEFAULT_LOCALSTACK, conflicts_with = "endpoint")]
    localstack: Option<String>,
    /// Target any AWS-compatible endpoint.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// What to do when the token in the file changes.
    #[arg(long, value_parser = ["ask", "auto"])]
    on_change: Option<String>,
}

impl AccountArgs {
    fn target(&self) -> Option<TargetSpec> {
        if let Some(url) = &self.localstack {
            Some(TargetSpec {
                target: "localstack".into(),
                endpoint: Some(url.clone()),
            })
        } else {
            self.endpoint.as_ref().map(|url| TargetSpec {
                target: "endpoint".into(),
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
    eprintln!("cmdrctl: {err}");
    match err {
        ClientError::NotRunning { .. } => ExitCode::from(EXIT_NO_DAEMON),
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
    let request = match cli.command {
        Command::Doctor { config } => return Ok(doctor::run(config.as_deref(), json)),
        Command::Service {
            action,
            dry_run,
            platform,
        } => return Ok(service::run(action, platform, dry_run)),
        Command::Completions { shell } => {
            assets::completions(shell, &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::GenerateAssets { out } => return Ok(assets::generate(&out)),
        Command::Paste {
            profile,
            expires_in,
            expires_at,
            config,
        } => {
            return Ok(paste::run(paste::Options {
                config: config.as_deref(),
                profile,
                expires_in,
                expires_at,
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
        } => {
            let handout = credentials(&socket, name, force).await?;
            if if_changed.is_some_and(|fp| fp == handout::fingerprint(&handout)) {
                return Ok(ExitCode::SUCCESS);
            }
            print!(
                "{}",
                handout::env_lines(&handout, handout::Shell::pick(shell.as_deref()))
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec {
            name,
            force,
            command,
        } => {
            let handout = credentials(&socket, name, force).await?;
            return Ok(handout::exec(&handout, &command));
        }
        Command::CredentialProcess { name, force } => {
            let handout = credentials(&socket, name, force).await?;
            println!("{}", handout::credential_process_json(&handout));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Watch => return watch(Client::connect(&socket, "cmdrctl").await?, json).await,
        Command::Status => Request::Status,
        Command::Profiles => Request::Profiles,
        Command::Accept { name } => Request::Accept { name },
        Command::Validate { name } => Request::Validate { name },
        Command::Prompt { account, format } => {
            return Ok(prompt::run(&socket, account.as_deref(), &format).await);
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
                        target: "aws".into(),
                        endpoint: None,
                    }),
                    on_change: spec.on_change.clone().unwrap_or_else(|| "ask".into()),
                })
            }
            AccountsCommand::Edit {
                name,
                spec,
                no_region,
                aws,
            } => Request::EditAccount {
                name,
                edit: AccountEdit {
                    profile: spec.profile.clone(),
                    region: spec.region.clone(),
                    clear_region: no_region,
                    target: if aws {
                        Some(TargetSpec {
                            target: "aws".into(),
                            endpoint: None,
                        })
                    } else {
                        spec.target()
                    },
                    on_change: spec.on_change.clone(),
                },
            },
        },
    };
    let verb = match &request {
        Request::AddAccount(_) => "added",
        Request::EditAccount { .. } => "updated",
        Request::Accept { .. } => "accepted",
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
        Response::Subscribed | Response::Credentials(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn credentials(
    socket: &std::path::Path,
    name: String,
    force: bool,
) -> Result<cmdr_proto::HandOut, ClientError> {
    let mut client = Client::connect(socket, "cmdrctl").await?;
    match client.request(Request::Credentials { name, force }).await? {
        Response::Credentials(handout) => Ok(handout),
        _ => Err(ClientError::Proto(cmdr_proto::ProtoError::Malformed(
            "unexpected answer to a credentials request".to_owned(),
        ))),
    }
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
        output::event(&event, json);
        if matches!(event.kind, cmdr_proto::EventKind::DaemonStopping) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
