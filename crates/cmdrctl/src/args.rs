//! What the user typed: cmdrctl's clap definitions and value parsers. `main.rs` turns
//! them into what to do.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cmdr_core::input::{self, InputError};
use cmdr_proto::{OnChange, TargetKind, TargetSpec};

use crate::service;

/// A shell `env --shell` writes lines for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellName {
    Bash,
    Zsh,
    Sh,
    Fish,
    Powershell,
    Pwsh,
}

/// A shell `hook` has a prompt hook for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookShell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Pwsh,
}

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
    #[arg(long, global = true, value_name = "PATH",
          help = format!("Socket of the daemon (default: $CMDR_SOCKET, else [paths] socket in the config file, else {})", cmdr_client::DEFAULT_SOCKET_HELP))]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        #[arg(long)]
        shell: Option<ShellName>,
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
    Hook { shell: HookShell },
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
        /// With --clipboard: clear the clipboard after a successful paste, if it still
        /// holds what was pasted (also `clear_clipboard = true` under [paste] in config.toml).
        #[arg(long, requires = "clipboard")]
        clear_clipboard: bool,
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
    /// Write cmdrctl's man pages and completions under DIR (for packages; cmdrd has
    /// `--generate-assets DIR`).
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
pub enum AccountsCommand {
    /// Bind a new account to a profile, accepting the token in the file now.
    #[command(mut_arg("profile", |arg| arg.required(true)))]
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
pub struct AccountArgs {
    /// The AWS profile to bind.
    #[arg(long)]
    pub profile: Option<String>,
    /// Region (default: the profile's region).
    #[arg(long, value_parser = region)]
    pub region: Option<String>,
    /// Target LocalStack (default endpoint http://localhost:4566).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = cmdr_core::account::DEFAULT_LOCALSTACK, conflicts_with = "endpoint", value_parser = endpoint)]
    pub localstack: Option<String>,
    /// Target any AWS-compatible endpoint.
    #[arg(long, value_name = "URL", value_parser = endpoint)]
    pub endpoint: Option<String>,
    /// What to do when the token in the file changes.
    #[arg(long, value_parser = clap::builder::TypedValueParser::map(
        clap::builder::PossibleValuesParser::new(["ask", "auto"]),
        |policy| if policy == "auto" { OnChange::Auto } else { OnChange::Ask },
    ))]
    pub on_change: Option<OnChange>,
    /// The access portal tokens come from, opened by `cmdrctl renew` (default: the
    /// profile's sso_start_url).
    #[arg(long, value_name = "URL")]
    pub portal: Option<String>,
}

impl AccountArgs {
    pub fn target(&self) -> Option<TargetSpec> {
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
