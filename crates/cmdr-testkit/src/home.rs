//! [`TempHome`]: a temp directory with a HOME, a private runtime directory (the socket's)
//! and cmdr's `config.toml` with validation off, plus the environment commands run with.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `<root>/home` (with `.aws`, `.config/cmdr`, `.local/share/cmdr`), `<root>/run` (mode
/// 0700, `XDG_RUNTIME_DIR`) and `<root>/cmdrd.log`. Removed when dropped.
pub struct TempHome {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    /// `~/.aws` (not created: some tests start without it).
    pub aws: PathBuf,
    pub run_dir: PathBuf,
    /// cmdr's data directory (`state.json`, `cmdrd.lock`), created by the daemon.
    pub data_dir: PathBuf,
    /// Where the daemon's output goes.
    pub log: PathBuf,
}

impl TempHome {
    /// A new temp HOME in a directory named `<prefix>…`. cmdr's `config.toml` holds
    /// `validate_on_change = false` and then `cmdr_config`: nothing run here may reach AWS
    /// unless a test asks for it (against moto).
    pub fn new(prefix: &str, cmdr_config: &str) -> io::Result<TempHome> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let root = dir.path().to_owned();
        let home = root.join("home");
        let run_dir = root.join("run");
        std::fs::create_dir_all(home.join(".config/cmdr"))?;
        std::fs::create_dir_all(&run_dir)?;
        set_mode(&run_dir, 0o700)?;
        let out = TempHome {
            aws: home.join(".aws"),
            data_dir: home.join(".local/share/cmdr"),
            log: root.join("cmdrd.log"),
            _dir: dir,
            root,
            home,
            run_dir,
        };
        std::fs::write(
            out.cmdr_config(),
            format!("[daemon]\nvalidate_on_change = false\n{cmdr_config}"),
        )?;
        Ok(out)
    }

    /// cmdr's `config.toml`.
    pub fn cmdr_config(&self) -> PathBuf {
        self.home.join(".config/cmdr/config.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("cmdr").join("cmdrd.sock")
    }

    pub fn credentials(&self) -> PathBuf {
        self.aws.join("credentials")
    }

    pub fn config(&self) -> PathBuf {
        self.aws.join("config")
    }

    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join("state.json")
    }

    /// Clears `cmd`'s environment and gives it this home's: `PATH` kept, `HOME`, the XDG
    /// directories, no EC2 metadata lookups, `TZ=UTC`.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.run_dir)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TZ", "UTC");
    }

    /// The daemon's output so far (empty if none).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of [`TempHome::log_text`], for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Drop for TempHome {
    /// A daemon killed with SIGKILL leaves its endpoint guard holding the port
    /// (crates/cmdrd/src/endpoint/guard.rs) until the directory goes; a test's leftovers
    /// should not depend on that: every guard whose paths are under this root (whatever the
    /// socket's location) is stopped here.
    fn drop(&mut self) {
        let mut root = self.root.as_os_str().as_encoded_bytes().to_vec();
        root.push(b'/');
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let mut args = cmdline.split(|b| *b == 0);
            if args.nth(1) == Some(b"--guard-endpoint".as_slice())
                && args.next().is_some_and(|tokens| tokens.starts_with(&root))
            {
                let _ = crate::sys::signal(pid, crate::sys::Signal::Term);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_and_the_environment() {
        let t = TempHome::new("cmdr-testkit-", "[notifications]\n").expect("home");
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
        };
        assert_eq!(mode(&t.run_dir), 0o700);
        assert!(!t.aws.exists() && !t.data_dir.exists());
        assert_eq!(
            std::fs::read_to_string(t.cmdr_config()).expect("config"),
            "[daemon]\nvalidate_on_change = false\n[notifications]\n"
        );
        assert!(t.socket().starts_with(&t.run_dir));
        let mut cmd = Command::new("env");
        t.env(&mut cmd);
        let out = cmd.output().expect("env");
        let text = String::from_utf8_lossy(&out.stdout);
        let home = format!("HOME={}", t.home.display());
        assert!(text.lines().any(|l| l == home), "{text}");
        assert!(text.lines().any(|l| l == "TZ=UTC"), "{text}");
        assert!(!text.contains("CARGO"), "{text}");

        std::fs::write(&t.log, "a\nb\nc\n").expect("log");
        assert_eq!(t.log_tail(2), "b\nc");
        let root = t.root.clone();
        drop(t);
        assert!(!root.exists());
    }
}
