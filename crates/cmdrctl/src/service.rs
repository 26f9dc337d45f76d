//! `cmdrctl service install|uninstall|status`: register cmdrd to start at login, as a
//! systemd user unit (Linux), a launchd agent (macOS) or a value under the user's `Run`
//! registry key (Windows). The unit and the plist are generated here, and `systemd/` and
//! `launchd/` in the repository hold the same output (a test keeps them equal).
//! `--dry-run` prints the files and commands instead.
//!
//! Windows uses `HKCU\...\CurrentVersion\Run` rather than a Task Scheduler task: it is per
//! user and needs no elevation, no Task Scheduler service and no stored password; it is
//! one value that `reg.exe` (on every Windows) writes, queries and deletes; and it shows in
//! Task Manager's Startup tab, where users look. What a task would add, restart after a
//! crash, cmdrd does not need at login. The value starts cmdrd in a minimized console
//! (`start /min`), where its log is and which closes it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub const UNIT_NAME: &str = "cmdrd.service";
pub const LAUNCHD_LABEL: &str = "dev.cmdr.cmdrd";
pub const RUN_KEY: &str = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run";
pub const RUN_VALUE: &str = "cmdrd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    Linux,
    Macos,
    Windows,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Macos
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Action {
    /// Write the unit or agent for this user, then enable and start it.
    Install,
    /// Stop, disable and remove it.
    Uninstall,
    /// Show whether it is installed and running.
    Status,
}

/// The systemd user unit for a `cmdrd` at `cmdrd`.
pub fn systemd_unit(cmdrd: &Path) -> String {
    format!(
        "\
# cmdrd: cmdr's per-user AWS credentials daemon, as a systemd user unit.
# Installed by `cmdrctl service install` (with the path of your cmdrd) or by the package.
#
# A user unit does not see your shell's environment. Set the AWS file paths in
# ~/.config/cmdr/config.toml ([paths] config = ..., credentials = ...), or with
# `systemctl --user set-environment AWS_SHARED_CREDENTIALS_FILE=...`, or in
# ~/.config/environment.d/cmdr.conf; then `systemctl --user restart cmdrd`.
[Unit]
Description=cmdr AWS credentials daemon
Documentation=man:cmdrd(1)

[Service]
Type=notify
ExecStart={}
Restart=on-failure
RestartSec=2s
# Only cmdrd is signalled: after a crash its endpoint guard (cmdr-guard) keeps the port
# until the restarted cmdrd takes it back; a clean stop ends the guard itself.
KillMode=process
Environment=RUST_LOG=info
UMask=0077
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=default.target
",
        cmdrd.display()
    )
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The launchd agent: started at login, restarted after a crash but not after a clean
/// exit, background priority, logs under ~/Library/Logs. launchd never rotates what it
/// captures, so cmdrd writes its log itself (`--log-file`: rotated by size, one older
/// copy); stdout and stderr keep only what comes before logging starts (a bad argument).
pub fn launchd_plist(cmdrd: &Path, home: &Path) -> String {
    let program = xml_escape(&cmdrd.display().to_string());
    // macOS paths, whatever platform generates them (`--platform macos --dry-run`).
    let log = xml_escape(&format!("{}/Library/Logs/cmdrd.log", home.display()));
    let early = xml_escape(&format!("{}/Library/Logs/cmdrd.stderr.log", home.display()));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- cmdrd, cmdr's per-user AWS credentials daemon. `cmdrctl service install` writes this
     to ~/Library/LaunchAgents with your paths. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{program}</string>
    <string>--log-file</string>
    <string>{log}</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ProcessType</key>
  <string>Background</string>
  <key>StandardOutPath</key>
  <string>{early}</string>
  <key>StandardErrorPath</key>
  <string>{early}</string>
  <key>EnvironmentVariables</key>
  <dict>
    <key>RUST_LOG</key>
    <string>info</string>
  </dict>
</dict>
</plist>
"#
    )
}

/// What an action does: files to write or remove, commands to run.
struct Plan {
    write: Vec<(PathBuf, String)>,
    remove: Vec<PathBuf>,
    commands: Vec<Vec<String>>,
    /// Commands whose failure is fine (e.g. stopping what is not running).
    tolerant: Vec<Vec<String>>,
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

fn home() -> anyhow::Result<PathBuf> {
    directories::BaseDirs::new()
        .map(|d| d.home_dir().to_owned())
        .ok_or_else(|| anyhow::anyhow!("cannot determine the home directory"))
}

/// The installed cmdrd: next to this cmdrctl, else on PATH.
pub fn find_cmdrd() -> anyhow::Result<PathBuf> {
    let name = if cfg!(windows) { "cmdrd.exe" } else { "cmdrd" };
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
    {
        return Ok(sibling);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("cmdrd not found next to cmdrctl or on PATH; install it first")
        })
}

fn plan(action: Action, platform: Platform, cmdrd: &Path) -> anyhow::Result<Plan> {
    let home = home()?;
    match platform {
        Platform::Linux => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| home.join(".config"));
            let unit = config.join("systemd/user").join(UNIT_NAME);
            Ok(match action {
                Action::Install => Plan {
                    write: vec![(unit, systemd_unit(cmdrd))],
                    remove: vec![],
                    commands: vec![
                        cmd(&["systemctl", "--user", "daemon-reload"]),
                        cmd(&["systemctl", "--user", "enable", "--now", UNIT_NAME]),
                    ],
                    tolerant: vec![],
                },
                Action::Uninstall => Plan {
                    write: vec![],
                    remove: vec![unit],
                    commands: vec![cmd(&["systemctl", "--user", "daemon-reload"])],
                    tolerant: vec![cmd(&["systemctl", "--user", "disable", "--now", UNIT_NAME])],
                },
                Action::Status => Plan {
                    write: vec![],
                    remove: vec![],
                    commands: vec![cmd(&[
                        "systemctl",
                        "--user",
                        "status",
                        "--no-pager",
                        UNIT_NAME,
                    ])],
                    tolerant: vec![],
                },
            })
        }
        Platform::Macos => {
            let plist = home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist"));
            let domain = format!("gui/{}", uid());
            let service = format!("{domain}/{LAUNCHD_LABEL}");
            let plist_arg = plist.display().to_string();
            Ok(match action {
                Action::Install => Plan {
                    write: vec![(plist, launchd_plist(cmdrd, &home))],
                    remove: vec![],
                    commands: vec![cmd(&["launchctl", "bootstrap", &domain, &plist_arg])],
                    tolerant: vec![cmd(&["launchctl", "bootout", &service])],
                },
                Action::Uninstall => Plan {
                    write: vec![],
                    remove: vec![plist],
                    commands: vec![],
                    tolerant: vec![cmd(&["launchctl", "bootout", &service])],
                },
                Action::Status => Plan {
                    write: vec![],
                    remove: vec![],
                    commands: vec![cmd(&["launchctl", "print", &service])],
                    tolerant: vec![],
                },
            })
        }
        Platform::Windows => Ok(match action {
            Action::Install => Plan {
                write: vec![],
                remove: vec![],
                commands: vec![
                    cmd(&[
                        "reg",
                        "add",
                        RUN_KEY,
                        "/v",
                        RUN_VALUE,
                        "/t",
                        "REG_SZ",
                        "/d",
                        &run_command(cmdrd),
                        "/f",
                    ]),
                    // Start it now too, as the other platforms do.
                    cmd(&["cmd.exe", "/d", "/c", &start_command(cmdrd)]),
                ],
                tolerant: vec![],
            },
            Action::Uninstall => Plan {
                write: vec![],
                remove: vec![],
                commands: vec![],
                tolerant: vec![cmd(&["reg", "delete", RUN_KEY, "/v", RUN_VALUE, "/f"])],
            },
            Action::Status => Plan {
                write: vec![],
                remove: vec![],
                commands: vec![cmd(&["reg", "query", RUN_KEY, "/v", RUN_VALUE])],
                tolerant: vec![],
            },
        }),
    }
}

/// `start` with an empty title and a minimized window, then the quoted program.
fn start_command(cmdrd: &Path) -> String {
    format!(r#"start "" /min "{}""#, cmdrd.display())
}

/// The `Run` value: `cmd.exe` runs `start`, so cmdrd gets its own minimized console.
pub fn run_command(cmdrd: &Path) -> String {
    format!("cmd.exe /d /c {}", start_command(cmdrd))
}

#[cfg(unix)]
fn uid() -> u32 {
    cmdr_client::current_uid()
}

#[cfg(not(unix))]
fn uid() -> u32 {
    0
}

/// What stands between this shell and a systemd user manager, if anything: the program,
/// the session (`$XDG_RUNTIME_DIR`), or the manager itself (its bus), in that order.
fn systemd_user_problem() -> Option<String> {
    let output = match Command::new("systemctl")
        .args(["--user", "show-environment"])
        .output()
    {
        Ok(output) => output,
        Err(_) => return Some("systemd is not here: `systemctl` is not on PATH".to_owned()),
    };
    if output.status.success() {
        return None;
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said =
        cmdr_core::text::escape_controls(said.lines().next().unwrap_or("").trim()).into_owned();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(" (it said: {said})")
    };
    if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty()) {
        return Some(format!(
            "no systemd user session for this shell: $XDG_RUNTIME_DIR is not set (su, sudo, ssh without logind, cron or a container), so `systemctl --user` cannot reach your user's manager{said}"
        ));
    }
    Some(format!(
        "your user's systemd manager is not running or not reachable: `systemctl --user show-environment` failed{said}"
    ))
}

/// What works instead when the service manager cannot be used.
fn instead(platform: Platform, cmdrd: &Path) -> String {
    let line = format!("({} >/dev/null 2>&1 &)", cmdrd.display());
    match platform {
        Platform::Linux => format!(
            "what works instead:\n  - `loginctl enable-linger $USER` (then log in again): your systemd user manager runs even without a login session; then run `cmdrctl service install` again\n  - start cmdrd from your login file (~/.profile, ~/.bash_profile or ~/.zprofile); a second one exits by itself:\n      {line}\n  - `cmdrctl service install --dry-run` prints the unit and the commands, to install by hand"
        ),
        _ => format!(
            "what works instead: start cmdrd from your login file ({line}), or see `cmdrctl service install --dry-run`"
        ),
    }
}

pub fn run(action: Action, platform: Option<Platform>, dry_run: bool) -> ExitCode {
    if matches!(action, Action::Install) {
        for warning in environment_warnings() {
            eprintln!("{}", cmdr_core::text::escape_controls(&warning));
        }
    }
    match execute(action, platform.unwrap_or_else(Platform::current), dry_run) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cmdrctl: service: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// A service does not start from this shell: an `AWS_*` file path set here, and not in
/// cmdr's config.toml, would not reach it, and it would watch other files than the shell's
/// tools (and `paste`) use.
fn environment_warnings() -> Vec<String> {
    let Ok((config, credentials)) = cmdr_config::service_aws_paths() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (var, key, service) in [
        ("AWS_SHARED_CREDENTIALS_FILE", "credentials", credentials),
        ("AWS_CONFIG_FILE", "config", config),
    ] {
        let Some(shell) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let shell = PathBuf::from(shell);
        if shell == service {
            continue;
        }
        out.push(format!(
            "warning: this shell sets {var}={}, but the service does not start from this shell and will watch {}: set `{key} = \"{}\"` under [paths] in cmdr's config.toml (or `systemctl --user set-environment {var}=…` / launchctl setenv), then restart it",
            shell.display(),
            service.display(),
            shell.display()
        ));
    }
    out
}

fn execute(action: Action, platform: Platform, dry_run: bool) -> anyhow::Result<ExitCode> {
    let cmdrd = if dry_run {
        find_cmdrd().unwrap_or_else(|_| {
            PathBuf::from(match platform {
                Platform::Windows => r"C:\Program Files\cmdr\cmdrd.exe",
                _ => "/usr/bin/cmdrd",
            })
        })
    } else {
        find_cmdrd()?
    };
    let plan = plan(action, platform, &cmdrd)?;
    if dry_run {
        for command in &plan.tolerant {
            println!("# run (failure ignored): {}", command.join(" "));
        }
        for (path, content) in &plan.write {
            println!("# write {}\n{content}", path.display());
        }
        for path in &plan.remove {
            println!("# remove {}", path.display());
        }
        for command in &plan.commands {
            println!("# run: {}", command.join(" "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if platform != Platform::current() {
        anyhow::bail!("--platform other than this machine's works only with --dry-run");
    }
    let missing = match platform {
        Platform::Linux => systemd_user_problem(),
        Platform::Macos => Command::new("launchctl")
            .arg("version")
            .output()
            .is_err()
            .then(|| "launchd's `launchctl` is not on PATH".to_owned()),
        // reg.exe is part of every Windows; it is the manager here.
        Platform::Windows => None,
    };
    if let Some(missing) = missing {
        anyhow::bail!("{missing}\n{}", instead(platform, &cmdrd));
    }
    for command in &plan.tolerant {
        let _ = Command::new(&command[0]).args(&command[1..]).output();
    }
    for (path, content) in &plan.write {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if platform == Platform::Macos {
            std::fs::create_dir_all(home()?.join("Library/Logs"))?;
        }
        std::fs::write(path, content)?;
        println!("wrote {}", path.display());
    }
    for path in &plan.remove {
        match std::fs::remove_file(path) {
            Ok(()) => println!("removed {}", path.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                println!("{} was not installed", path.display());
            }
            Err(err) => return Err(err.into()),
        }
    }
    for command in &plan.commands {
        let status = Command::new(&command[0]).args(&command[1..]).status()?;
        if !status.success() {
            if action == Action::Status {
                return Ok(ExitCode::from(1));
            }
            anyhow::bail!("`{}` failed ({status})", command.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's unit and plist are exactly what this module generates.
    #[test]
    fn repository_files_are_generated() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let unit = std::fs::read_to_string(root.join("systemd").join(UNIT_NAME)).expect("unit");
        assert_eq!(unit, systemd_unit(Path::new("/usr/bin/cmdrd")));
        let plist =
            std::fs::read_to_string(root.join("launchd").join(format!("{LAUNCHD_LABEL}.plist")))
                .expect("plist");
        assert_eq!(
            plist,
            launchd_plist(
                Path::new("/usr/local/bin/cmdrd"),
                Path::new("/Users/USERNAME")
            )
        );
    }

    #[test]
    fn windows_install_writes_the_run_value() {
        let exe = Path::new(r"C:\Users\a b\cmdr\cmdrd.exe");
        let plan = plan(Action::Install, Platform::Windows, exe).expect("plan");
        assert_eq!(
            plan.commands[0],
            cmd(&[
                "reg",
                "add",
                RUN_KEY,
                "/v",
                "cmdrd",
                "/t",
                "REG_SZ",
                "/d",
                r#"cmd.exe /d /c start "" /min "C:\Users\a b\cmdr\cmdrd.exe""#,
                "/f"
            ])
        );
        let uninstall = plan_for(Action::Uninstall, exe);
        assert_eq!(uninstall.tolerant[0][..2], cmd(&["reg", "delete"])[..]);
        let status = plan_for(Action::Status, exe);
        assert_eq!(status.commands[0][..2], cmd(&["reg", "query"])[..]);
    }

    fn plan_for(action: Action, exe: &Path) -> Plan {
        plan(action, Platform::Windows, exe).expect("plan")
    }

    #[test]
    fn paths_are_escaped_in_the_plist() {
        let plist = launchd_plist(Path::new("/opt/a&b/cmdrd"), Path::new("/Users/x"));
        assert!(plist.contains("<string>/opt/a&amp;b/cmdrd</string>"));
    }
}
