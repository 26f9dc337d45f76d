//! The cmdrd binary: arguments, logging, signals; everything else is in the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use cmdrd::cli::Args;
use std::sync::Arc;

use cmdrd::log::file::LogFile;
use cmdrd::log::{Capped, Coalesce, Coalescer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    // The endpoint's guard process (crates/cmdrd/src/endpoint/guard.rs), started by cmdrd.
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if argv
            .get(1)
            .is_some_and(|a| a == cmdrd::endpoint::guard::FLAG)
        {
            return cmdrd::endpoint::guard::run(&argv[2..]);
        }
        // The endpoint's sentinel (crates/cmdrd/src/endpoint/sentinel.rs), started by cmdrctl.
        if argv
            .get(1)
            .is_some_and(|a| a == cmdrd::endpoint::sentinel::FLAG)
        {
            return cmdrd::endpoint::sentinel::run(&argv[2..]);
        }
        // The sentinel's buddy, started by the sentinel.
        if argv
            .get(1)
            .is_some_and(|a| a == cmdrd::endpoint::sentinel::BUDDY_FLAG)
        {
            return cmdrd::endpoint::sentinel::buddy(&argv[2..]);
        }
    }
    tune_allocator();
    let args = Args::parse();
    if let Some(dir) = &args.generate_assets {
        let command = <Args as clap::CommandFactory>::command();
        return match cmdr_config::assets::write(command, "cmdrd", dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("cmdrd: cannot generate assets in {}: {err}", dir.display());
                ExitCode::from(1)
            }
        };
    }
    // Its summaries are written by a task of `cmdrd::run` (crates/cmdrd/src/log.rs).
    init_logging(args.log_file.as_deref()).install();
    harden_process();
    let settings = match cmdrd::Settings::load(args.config.as_deref(), args.socket) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("cmdrd: {err:#}");
            return ExitCode::from(1);
        }
    };
    if let Err(message) = cmdr_config::refuse_root_on_foreign_files(&settings, "cmdrd") {
        eprintln!("cmdrd: {message}");
        return ExitCode::from(1);
    }
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
    let result = runtime.block_on(cmdrd::run(settings, shutdown_signal(), notify_ready));
    // A blocking wait may still run (a desktop notification waits for the user's click
    // without end): the runtime's shutdown does not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    notify_stopping();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cmdrd: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// Type=notify units wait for this; without NOTIFY_SOCKET it does nothing.
#[cfg(unix)]
fn notify_ready() {
    if let Err(err) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %err, "could not notify systemd");
    }
}

#[cfg(unix)]
fn notify_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Windows and others: no service manager waits for a readiness message.
#[cfg(not(unix))]
fn notify_ready() {}

#[cfg(not(unix))]
fn notify_stopping() {}

/// glibc's defaults suit servers that allocate from many threads, not a daemon that idles:
/// an arena per thread and a large-allocation threshold that rises after each big file
/// read left an idle 5,000-profile daemon at 20 MiB (measured; docs/benchmarks.md), most of
/// it free memory stranded between live objects. One arena (the engine does nearly all the
/// allocating) and file-sized buffers always in their own mappings, returned on free, bring
/// it down to what is live. Set before any thread starts.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// The log: `RUST_LOG` (info by default) to stderr or `--log-file`, repeated lines
/// coalesced and bytes capped per interval (`cmdrd::log`).
fn init_logging(log_file: Option<&std::path::Path>) -> Arc<Coalescer> {
    // The SDK's profile parser may quote a line of the file in its warnings: never log it.
    // Explicit directives replace those from RUST_LOG for the same target.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(
            "aws_runtime::env_config=off"
                .parse()
                .expect("static directive"),
        )
        .add_directive("aws_config::profile=off".parse().expect("static directive"))
        // At debug and trace the SDK's runtime prints resolved identities, endpoint and
        // signing parameters and whole responses with the access key id in full (its
        // `Credentials` Debug masks only the secret): never below info.
        .add_directive("aws_smithy_runtime=info".parse().expect("static directive"))
        .add_directive(
            "aws_smithy_runtime_api=info"
                .parse()
                .expect("static directive"),
        )
        .add_directive("aws_sigv4=info".parse().expect("static directive"));
    let coalescer = Coalescer::new();
    let (writer, ansi) = match log_file.map(LogFile::open) {
        Some(Ok(file)) => (BoxMakeWriter::new(file), false),
        Some(Err(err)) => {
            eprintln!("cmdrd: cannot open the log file, logging to stderr: {err}");
            (BoxMakeWriter::new(std::io::stderr), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let output = tracing_subscriber::fmt::layer()
        .with_writer(Capped {
            inner: writer,
            coalescer: Arc::clone(&coalescer),
        })
        .with_ansi(ansi)
        .with_filter(Coalesce(Arc::clone(&coalescer)));
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .init();
    coalescer
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
    #[cfg(windows)]
    {
        // Ctrl+C and Ctrl+Break in a console; closing it, logging off and shutting down
        // give a few seconds, enough to flush the state.
        use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_logoff, ctrl_shutdown};
        match (ctrl_break(), ctrl_close(), ctrl_logoff(), ctrl_shutdown()) {
            (Ok(mut brk), Ok(mut close), Ok(mut logoff), Ok(mut shutdown)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = brk.recv() => {}
                    _ = close.recv() => {}
                    _ = logoff.recv() => {}
                    _ = shutdown.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
