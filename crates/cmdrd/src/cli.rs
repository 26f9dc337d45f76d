//! cmdrd's command line, in the library so that cmdrctl can generate its man page and
//! completions from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// cmdr's per-user daemon: watches the AWS config and credentials files and pushes
/// account events to clients over a local socket.
#[derive(Debug, Parser)]
#[command(name = "cmdrd", version, about, long_about = None)]
pub struct Args {
    #[arg(long, env = "CMDR_SOCKET", value_name = "PATH",
          help = format!("Socket path (default: {})", cmdr_client::DEFAULT_SOCKET_HELP))]
    pub socket: Option<PathBuf>,
    #[arg(long, value_name = "PATH",
          help = format!("Config file (default: {})", cmdr_client::DEFAULT_CONFIG_HELP))]
    pub config: Option<PathBuf>,
}
