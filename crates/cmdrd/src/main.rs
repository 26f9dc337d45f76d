//! The cmdrd binary: arguments, logging, signals; everything else is in the library.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// cmdr's per-user daemon: watches the AWS config and credentials files and pushes
/// account events to clients over a local socket.
#[derive(Debug, Parser)]
#[command(name = "cmdrd", version, about)]
struct Args {
    /// Socket path (default: $XDG_RUNTIME_DIR/cmdr/cmdrd.sock).
    #[arg(long, env = "CMDR_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Config file (default: $XDG_CONFIG_HOME/cmdr/config.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    harden_process();
    let settings = match cmdrd::Settings::load(args.config.as_deref(), args.socket) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("cmdrd: {err:#}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cmdrd: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmdrd::run(settings, shutdown_signal(), || {})) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cmdrd: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    // The SDK's profile parser may quote a line of the file in its warnings: never log it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "aws_runtime::env_config=off"
                .parse()
                .expect("static directive"),
        )
        .add_directive("aws_config::profile=off".parse().expect("static directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Other processes of the same user must not read our memory (ptrace, core dumps).
fn harden_process() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes a flag.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!("could not mark the process non-dumpable");
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
