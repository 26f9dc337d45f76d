//! A benchmark sandbox: a temp HOME with its own XDG directories and socket, the real
//! release `cmdrd`, clients for it, and what `/proc` says about the daemon process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cmdr_client::Client;
use cmdr_testkit::{TempHome, sys};

/// The temp HOME's paths (`home`, `aws`, `log`…) and `socket()`, `credentials()`… come
/// from [`TempHome`] (shared with the end-to-end tests), through `Deref`.
pub struct Sandbox {
    temp: TempHome,
    pub bins: PathBuf,
    daemon: Option<Child>,
    /// More environment for every command (e.g. the loopback Identity Center's URL).
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// A temp HOME with `~/.aws/{config,credentials}` and cmdr's `config.toml` holding
    /// `cmdr_config` (validation is always off: no network).
    pub fn new(
        bins: &Path,
        config: &str,
        credentials: &str,
        cmdr_config: &str,
    ) -> anyhow::Result<Sandbox> {
        let temp = TempHome::new("cmdr-bench-", cmdr_config).context("temp HOME")?;
        std::fs::create_dir_all(&temp.aws).context("create ~/.aws")?;
        std::fs::write(temp.config(), config).context("write config")?;
        std::fs::write(temp.credentials(), credentials).context("write credentials")?;
        Ok(Sandbox {
            temp,
            bins: bins.to_owned(),
            daemon: None,
            env: Vec::new(),
        })
    }

    /// A command with the sandbox's environment and nothing else of ours.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.temp.env(&mut cmd);
        cmd.env("AWS_CONFIG_FILE", self.config())
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials())
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        cmd
    }

    /// Sets `name` for every command started after this (the daemon included).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.to_owned(), value.to_owned()));
    }

    pub fn ctl(&self) -> Command {
        self.command(self.bins.join("cmdrctl"))
    }

    /// Starts cmdrd (logging at `rust_log` to [`Sandbox::log`]) and waits until it answers.
    pub async fn start(&mut self, rust_log: &str) -> anyhow::Result<()> {
        let log = std::fs::File::create(&self.log).context("daemon log")?;
        let child = self
            .command(self.bins.join("cmdrd"))
            .env("RUST_LOG", rust_log)
            .stdout(log.try_clone().context("daemon log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.bins.join("cmdrd").display()))?;
        self.daemon = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.client("cmdr-bench").await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("cmdrd exited with {status}: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("cmdrd did not answer within 30 s: {}", self.log_tail())
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.daemon
            .as_ref()
            .map(Child::id)
            .context("daemon not started")
    }

    pub async fn client(&self, name: &str) -> anyhow::Result<Client> {
        Client::connect(&self.socket(), name)
            .await
            .context("connect to cmdrd")
    }

    /// Binds account `acme` to profile `acme` (policy `ask`).
    pub fn add_account(&self) -> anyhow::Result<()> {
        let out = self
            .ctl()
            .args(["accounts", "add", "acme", "--profile", "acme"])
            .output()
            .context("cmdrctl accounts add")?;
        if !out.status.success() {
            bail!(
                "cmdrctl accounts add failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        self.temp.log_tail(20)
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = sys::signal(child.id(), sys::Signal::Term);
            let _ = child.wait();
        }
    }
}

impl std::ops::Deref for Sandbox {
    type Target = TempHome;

    fn deref(&self) -> &TempHome {
        &self.temp
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One reading of a process from `/proc`.
#[derive(Debug, Clone, Default)]
pub struct ProcStats {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// User + system time of the whole process (exited threads included), in seconds.
    pub cpu_secs: f64,
    /// Context switches summed over the live threads, by thread name.
    pub switches: Vec<(String, u64)>,
}

impl ProcStats {
    pub fn read(pid: u32) -> anyhow::Result<ProcStats> {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let status = std::fs::read_to_string(dir.join("status")).context("/proc status")?;
        let stat = std::fs::read_to_string(dir.join("stat")).context("/proc stat")?;
        let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let hz = sys::clock_ticks_per_second() as f64;
        let mut switches: Vec<(String, u64)> = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(dir.join("task")) {
            for task in tasks.filter_map(Result::ok) {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let text = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                let n = field(&text, "voluntary_ctxt_switches:")
                    + field(&text, "nonvoluntary_ctxt_switches:");
                let comm = comm.trim().to_owned();
                match switches.iter_mut().find(|(c, _)| *c == comm) {
                    Some((_, total)) => *total += n,
                    None => switches.push((comm, n)),
                }
            }
        }
        switches.sort();
        Ok(ProcStats {
            rss_kib: field(&status, "VmRSS:"),
            hwm_kib: field(&status, "VmHWM:"),
            // Fields after the command name start at field 3 (state): utime is 14, stime 15.
            cpu_secs: (ticks(11) + ticks(12)) as f64 / hz,
            switches,
        })
    }

    pub fn total_switches(&self) -> u64 {
        self.switches.iter().map(|(_, n)| n).sum()
    }
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs a command to completion; its wall time and peak RSS (KiB, from `wait4`).
pub fn run_measured(cmd: &mut Command) -> anyhow::Result<(Duration, u64, bool)> {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
    let (ok, peak_rss) = sys::wait_with_peak_rss(child).context("wait4")?;
    Ok((started.elapsed(), peak_rss, ok))
}
