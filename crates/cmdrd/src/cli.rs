//! cmdrd's command line.

use std::path::PathBuf;

use clap::Parser;

/// cmdr's per-user daemon: watches the AWS config and credentials files and pushes
/// account events to clients over a local socket.
#[derive(Debug, Parser)]
#[command(name = "cmdrd", version, about, long_about = None)]
pub struct Args {
    #[arg(long, value_name = "PATH",
          help = format!("Socket path (default: $CMDR_SOCKET, else [paths] socket in the config file, else {})", cmdr_client::DEFAULT_SOCKET_HELP))]
    pub socket: Option<PathBuf>,
    #[arg(long, value_name = "PATH",
          help = format!("Config file (default: {})", cmdr_client::DEFAULT_CONFIG_HELP))]
    pub config: Option<PathBuf>,
    /// Write the log to FILE instead of stderr, rotated by size (FILE.1 keeps the older
    /// part); for service managers that do not rotate what they capture (launchd).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Write cmdrd's man page and completions under DIR and exit (for packages).
    #[arg(long, value_name = "DIR", hide = true)]
    pub generate_assets: Option<PathBuf>,
}
