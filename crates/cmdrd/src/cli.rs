//! cmdrd's command line, in the library so that cmdrctl can generate its man page and
//! completions from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// cmdr's per-user daemon: watches the AWS config and credentials files and pushes
/// account events to clients over a local socket.
#[derive(Debug, Parser)]
#[command(name = "cmdrd", version, about, long_about = None)]
pub struct Args {
    /// Socket path (default: $XDG_RUNTIME_DIR/cmdr/cmdrd.sock).
    #[arg(long, env = "CMDR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file (default: $XDG_CONFIG_HOME/cmdr/config.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}
