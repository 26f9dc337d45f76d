//! How cmdrctl reports what went wrong: a client error as one line with its exit code
//! (and the hint that fits), an answer it did not expect, a usage problem.

use std::process::ExitCode;

use cmdr_client::ClientError;
use cmdr_proto::{AccountState, ErrorCode};

use crate::args::{Cli, Command};
use crate::{EXIT_FAILURE, EXIT_NO_DAEMON, EXIT_USAGE};

/// The socket the daemon of this data directory noted (`cmdrd.socket`, beside its lock),
/// when it is not `tried` and exists: cmdrd was started in another environment.
pub(crate) fn running_elsewhere(tried: &std::path::Path) -> Option<std::path::PathBuf> {
    let settings = cmdr_config::Settings::load(None, None).ok()?;
    let note =
        cmdr_config::userfile::read_bounded(&settings.data_dir.join("cmdrd.socket"), 4096).ok()?;
    let path = std::path::PathBuf::from(String::from_utf8(note).ok()?.trim());
    (path.is_absolute() && path != tried && path.exists()).then_some(path)
}

pub(crate) fn report(err: &ClientError) -> ExitCode {
    // Daemon errors may quote what a peer or a file said.
    eprintln!(
        "cmdrctl: {}",
        cmdr_core::text::escape_controls(&err.to_string())
    );
    if let ClientError::NotRunning { socket, .. } = err
        && let Some(other) = running_elsewhere(socket)
    {
        eprintln!(
            "hint: a cmdrd runs with the socket {} (started with another XDG_RUNTIME_DIR or CMDR_SOCKET): run `CMDR_SOCKET={} cmdrctl …`, or restart cmdrd in this environment",
            cmdr_core::text::escape_controls(&other.display().to_string()),
            cmdr_core::text::escape_controls(&other.display().to_string()),
        );
    }
    match err {
        ClientError::NotRunning { .. }
        | ClientError::OtherUser { .. }
        | ClientError::UnsafeSocketDir(_)
        | ClientError::PeerUnknown { .. } => ExitCode::from(EXIT_NO_DAEMON),
        // The daemon found a value malformed, the name taken or the profile unknown: a
        // usage error.
        ClientError::Daemon(reply)
            if matches!(
                reply.code,
                ErrorCode::BadRequest | ErrorCode::Exists | ErrorCode::NoProfile
            ) =>
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

pub(crate) fn unexpected(what: &str) -> ClientError {
    ClientError::Proto(cmdr_proto::ProtoError::Malformed(format!(
        "unexpected answer to {what}"
    )))
}

/// A state whose reason `add`/`edit` show (`changed` says what to do by itself).
pub(crate) fn needs_fixing(state: AccountState) -> bool {
    matches!(
        state,
        AccountState::Misconfigured
            | AccountState::Invalid
            | AccountState::Missing
            | AccountState::Expired
            | AccountState::Unvalidated
    )
}

/// Why the command line cannot be carried out as typed, before anything is asked: `--json`
/// on a command that prints no data, and `env` for a shell it cannot write for.
pub(crate) fn usage_problem(cli: &Cli) -> Option<String> {
    let no_json = match &cli.command {
        Command::Hook { .. } => Some("hook"),
        Command::Completions { .. } => Some("completions"),
        Command::Service { .. } => Some("service"),
        Command::Exec { .. } => Some("exec"),
        Command::GenerateAssets { .. } => Some("generate-assets"),
        _ => None,
    };
    if let Some(command) = no_json
        && cli.json
    {
        return Some(format!(
            "`{command}` has no JSON output: run it without --json"
        ));
    }
    if let Command::Env {
        shell, if_changed, ..
    } = &cli.command
        && !cli.json
        // The prompt hooks always name their shell; stay silent there regardless.
        && if_changed.is_none()
    {
        return crate::args::env_shell_problem(*shell, std::env::var_os("SHELL").as_deref());
    }
    None
}
