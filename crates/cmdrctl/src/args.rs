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

/// A `prompt --format` template: every `{field}` must be one the prompt fills in (a typo
/// would otherwise be printed as it is, at every prompt).
fn prompt_format(text: &str) -> Result<String, String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let field = &after[..close];
        let is_name = !field.is_empty()
            && field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if is_name && !crate::prompt::FIELDS.contains(&field) {
            return Err(format!(
                "unknown field `{{{}}}`: use {}",
                field.escape_debug(),
                crate::prompt::FIELDS
                    .iter()
                    .map(|f| format!("{{{f}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(text.to_owned())
}

/// Why `env` cannot write lines for the shell it would pick: `--shell` wins; else the
/// shell named by `$SHELL` (`shell_var`) must be one it writes for, or a POSIX shell.
/// Unset: POSIX lines.
pub fn env_shell_problem(
    flag: Option<ShellName>,
    shell_var: Option<&std::ffi::OsStr>,
) -> Option<String> {
    if flag.is_some() {
        return None;
    }
    let path = std::path::Path::new(shell_var?);
    let base = path.file_name()?.to_string_lossy().into_owned();
    let base = base.strip_suffix(".exe").unwrap_or(&base);
    const POSIX: [&str; 8] = [
        "dash", "ksh", "ksh93", "mksh", "ash", "busybox", "yash", "rbash",
    ];
    if ShellName::from_str(base, false).is_ok() || POSIX.contains(&base) {
        return None;
    }
    Some(format!(
        "cannot write `env` lines for the shell `{}` ($SHELL): use --shell bash|zsh|sh|fish|powershell, or --json",
        base.escape_debug()
    ))
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
    /// Stream events until interrupted; reconnects when the daemon restarts.
    Watch {
        /// Stop when the daemon stops (exit 3) instead of waiting for it to come back.
        #[arg(long)]
        once: bool,
    },
    /// Check an account's credentials with STS GetCallerIdentity against its target.
    Validate { name: String },
    /// Get a new token: for an account with a portal (an SSO profile, or a pasted "Option 2"
    /// block whose portal is an sso-session), sign in if needed (as `login`) and have cmdrd
    /// fetch the role's credentials now; otherwise open the account's access portal.
    Renew {
        name: String,
        /// Sign in with the device code flow, if a sign-in is needed.
        #[arg(long)]
        device_code: bool,
        /// Print the sign-in URL instead of opening a browser, if a sign-in is needed.
        #[arg(long)]
        no_browser: bool,
    },
    /// Open the AWS console signed in as the account's accepted session (a federation
    /// sign-in link, valid 15 minutes: a bearer secret).
    Console {
        name: String,
        /// Print the link instead of opening it (anyone holding it is signed in).
        #[arg(long)]
        print: bool,
    },
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
        #[arg(long, default_value = "{account} {left}", value_parser = prompt_format)]
        format: String,
    },
    /// Containers that follow an account: `container setup` once, then `docker run
    /// $(cmdrctl container env NAME) IMAGE`.
    #[command(subcommand)]
    Container(crate::container::Action),
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
    /// Sign in to an IAM Identity Center portal (an sso-session) without the daemon:
    /// authorization code with PKCE in the browser, or the device code flow.
    Login {
        /// The sso-session (default: the only one in the config file; with --portal: the
        /// URL's host name).
        name: Option<String>,
        /// The portal's start URL (adds an [sso-session] section when missing).
        #[arg(long, value_name = "URL", requires = "sso_region")]
        portal: Option<String>,
        /// The portal's region.
        #[arg(long, value_name = "REGION", requires = "portal")]
        sso_region: Option<String>,
        /// Use the device code flow (a URL and a code to confirm anywhere).
        #[arg(long)]
        device_code: bool,
        /// Print the sign-in URL instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        #[arg(long, value_name = "PATH", hide = true)]
        config: Option<PathBuf>,
    },
    /// End the portal session of an sso-session and remove its cached token.
    Logout {
        name: Option<String>,
        #[arg(long, value_name = "PATH", hide = true)]
        config: Option<PathBuf>,
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
        /// Whether cmdrd renews the account itself through its portal (default on for a
        /// pasted "Option 2" profile whose portal is known).
        #[arg(long, value_name = "on|off")]
        auto_renew: Option<OnOff>,
    },
    /// Remove an account (the profile and the files are untouched).
    Remove { name: String },
    /// Every account and role a signed-in portal grants becomes an SSO profile in the
    /// config file (existing profiles untouched) and a bound account.
    Import {
        /// The sso-session (portal) to import from; `cmdrctl login NAME` first.
        name: String,
        /// Import only this role (repeat for several; case-insensitive).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// The new profiles' and accounts' region (default: the portal's region).
        #[arg(long, value_parser = region)]
        region: Option<String>,
        /// Show what would be written and bound; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "PATH", hide = true)]
        config: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_formats_with_unknown_fields_are_refused() {
        for good in [
            "{account} {left}",
            "{state}:{profile}@{region}",
            "plain",
            "{ {} }",
            "\u{1b}[31m{account}",
        ] {
            assert!(prompt_format(good).is_ok(), "{good}");
        }
        for bad in ["{acount} {left}", "{expires}", "{account} {Left}"] {
            let err = prompt_format(bad).expect_err(bad);
            assert!(
                err.contains("unknown field") && err.contains("{account}"),
                "{err}"
            );
        }
    }

    #[test]
    fn env_refuses_a_shell_it_cannot_write_for() {
        let check =
            |flag, var: Option<&str>| env_shell_problem(flag, var.map(std::ffi::OsStr::new));
        assert_eq!(check(None, None), None);
        for ok in [
            "/bin/bash",
            "/usr/bin/zsh",
            "/bin/sh",
            "/usr/bin/fish",
            "/bin/dash",
            "pwsh.exe",
        ] {
            assert_eq!(check(None, Some(ok)), None, "{ok}");
        }
        for bad in ["/bin/tcsh", "/bin/csh", "/usr/bin/nu", "/usr/bin/xonsh"] {
            let why = check(None, Some(bad)).expect(bad);
            assert!(why.contains("--shell bash"), "{why}");
        }
        assert_eq!(check(Some(ShellName::Fish), Some("/bin/tcsh")), None);
    }
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
    /// The portal's region: with --portal, an IAM Identity Center portal cmdrd can renew
    /// the account through (adds an [sso-session] section for it to the config file when
    /// none has its start URL, as `login --portal URL --sso-region R` does).
    #[arg(long, value_name = "REGION", value_parser = region, requires = "portal")]
    pub sso_region: Option<String>,
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

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}
