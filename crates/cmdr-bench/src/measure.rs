//! The measures of docs/benchmarks.md, one module each, each against a baseline run in the
//! same process and moment: write→subscriber latency vs a raw `notify` watcher, fan-out,
//! parse + diff vs botocore and the SDK parser alone, client round trips vs `aws configure
//! list`, idle footprint, a write storm, binary size / build time, and the log under a
//! flood. This file holds the options and what several measures share.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cmdr_client::Client;
use cmdr_proto::EventKind;
use notify::event::{AccessKind, AccessMode};
use notify::{RecursiveMode, Watcher as _};

use crate::daemon::Sandbox;
use crate::files;
use crate::report::median;

mod binaries;
mod fanout;
mod footprint;
mod import;
mod latency;
mod log_flood;
mod parse;
mod round_trip;
mod storm;

pub use binaries::binaries;
pub use fanout::fanout;
pub use footprint::footprint;
pub use import::import;
pub use latency::latency;
pub use log_flood::log_flood;
pub use parse::parse;
pub use round_trip::round_trip;
pub use storm::storm;

pub struct Opts {
    pub quick: bool,
    pub bins: PathBuf,
    /// The daemon's default debounce (`[daemon] debounce_ms`), used by the latency target.
    pub debounce_ms: f64,
}

/// How a writer saves the credentials file.
#[derive(Debug, Clone, Copy)]
enum Save {
    /// Write a temp file next to it, then rename over it (vim, VS Code, JetBrains, paste).
    Rename,
    /// Truncate and write the same inode (`aws configure set`, gimme-aws-creds).
    InPlace,
}

impl Save {
    fn label(self) -> &'static str {
        match self {
            Save::Rename => "rename save",
            Save::InPlace => "in-place write",
        }
    }
}

fn save(path: &Path, text: &str, how: Save) -> anyhow::Result<()> {
    match how {
        Save::InPlace => std::fs::write(path, text).context("write in place"),
        Save::Rename => {
            let tmp = path.with_file_name(".credentials.bench-tmp");
            std::fs::write(&tmp, text).context("write temp file")?;
            std::fs::rename(&tmp, path).context("rename over")
        }
    }
}

/// The floor: a plain `notify` watcher on the same directory, filtered as the daemon
/// filters (no access events but close-after-write), calling `on_event` at once.
fn raw_watcher(
    dir: &Path,
    file: &Path,
    on_event: impl Fn(Instant) + Send + 'static,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let name: OsString = file.file_name().context("file name")?.to_owned();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let now = Instant::now();
        let Ok(event) = res else { return };
        let relevant = match event.kind {
            notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            notify::EventKind::Access(_) => false,
            _ => true,
        };
        if relevant
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()))
        {
            on_event(now);
        }
    })
    .context("raw notify watcher")?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .context("raw watch")?;
    Ok(watcher)
}

/// Waits for `token_changed` of account `acme`; the moment it arrived.
async fn next_token_changed(client: &mut Client, limit: Duration) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .context("no token_changed event within the limit")??
            .context("daemon closed the connection")?;
        if matches!(&event.kind, EventKind::TokenChanged { account, .. } if account == "acme") {
            return Ok(Instant::now());
        }
    }
}

/// Waits for the next event of type `kind`; the moment it arrived.
async fn next_event(client: &mut Client, limit: Duration, kind: &str) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .with_context(|| format!("no {kind} event within the limit"))??
            .context("daemon closed the connection")?;
        if event.kind.type_name() == kind {
            return Ok(Instant::now());
        }
    }
}

fn small_sandbox(opts: &Opts, cmdr_config: &str) -> anyhow::Result<Sandbox> {
    Sandbox::new(
        &opts.bins,
        &files::config(10),
        &files::credentials(10, &files::token("start")),
        cmdr_config,
    )
}

/// Peak RSS (KiB) of python3 with a botocore session that has loaded the sandbox's files.
fn python_botocore_rss(sb: &Sandbox) -> Option<u64> {
    let python = which("python3")?;
    peak_rss(
        Some(sb),
        &python,
        &[
            "-c",
            "import botocore.session; s = botocore.session.Session(); \
             s.get_scoped_config(); s.get_credentials()",
        ],
    )
    .ok()
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| dir_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Peak RSS (KiB) of `program args` with the sandbox's environment, via a small helper
/// process (see `--maxrss` in main.rs); median of three runs.
fn peak_rss(sb: Option<&Sandbox>, program: &Path, args: &[&str]) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("current exe")?;
    let mut values = Vec::new();
    for _ in 0..3 {
        let mut cmd = match sb {
            Some(sb) => sb.command(&exe),
            None => Command::new(&exe),
        };
        let out = cmd
            .arg("--maxrss")
            .arg(program)
            .args(args)
            .env("AWS_PROFILE", "acme")
            .output()
            .context("--maxrss helper")?;
        if !out.status.success() {
            bail!("{} failed under --maxrss", program.display());
        }
        values.push(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()?);
    }
    Ok(median(&values) as u64)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
