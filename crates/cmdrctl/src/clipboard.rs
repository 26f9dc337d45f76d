//! Reads the clipboard for `paste --clipboard` with the platform's own tool (`wl-paste`,
//! `xclip`, `xsel`, `pbpaste`, PowerShell's `Get-Clipboard`): bounded, with a deadline (a
//! wedged clipboard owner must not hang us), and a clear error naming what to install.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::bail;

/// How long a clipboard tool may take: the owner of an X selection answers through the
/// X server, and a stuck one would otherwise block forever.
const DEADLINE: Duration = Duration::from_secs(5);
/// How much of a tool's error output is kept for the message.
const MAX_STDERR: u64 = 4096;

/// One way of reading the clipboard.
struct Tool {
    program: &'static str,
    args: &'static [&'static str],
}

/// The tools to try, in order, for this session.
#[cfg(all(unix, not(target_os = "macos")))]
fn tools() -> (Vec<Tool>, &'static str) {
    let wayland = Tool {
        program: "wl-paste",
        args: &["--no-newline"],
    };
    let xclip = Tool {
        program: "xclip",
        args: &["-selection", "clipboard", "-out"],
    };
    let xsel = Tool {
        program: "xsel",
        args: &["--clipboard", "--output"],
    };
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let tools = if set("WAYLAND_DISPLAY") {
        // XWayland's clipboard is bridged: the X tools are a fallback.
        vec![wayland, xclip, xsel]
    } else {
        vec![xclip, xsel, wayland]
    };
    (
        tools,
        "install wl-clipboard (Wayland) or xclip or xsel (X11); Debian/Ubuntu: `apt install wl-clipboard xclip`",
    )
}

#[cfg(target_os = "macos")]
fn tools() -> (Vec<Tool>, &'static str) {
    (
        vec![Tool {
            program: "pbpaste",
            args: &[],
        }],
        "pbpaste is part of macOS; is /usr/bin on PATH?",
    )
}

#[cfg(windows)]
fn tools() -> (Vec<Tool>, &'static str) {
    let args: &[&str] = &[
        "-NoProfile",
        "-NonInteractive",
        "-Command",
        "Get-Clipboard -Raw",
    ];
    (
        vec![
            Tool {
                program: "pwsh",
                args,
            },
            Tool {
                program: "powershell",
                args,
            },
        ],
        "Windows PowerShell (powershell.exe) or PowerShell 7 (pwsh) must be on PATH",
    )
}

/// The clipboard's text, at most `limit` bytes (more is cut off: the caller refuses it).
/// The caller zeroes the buffer after use.
pub fn read(limit: usize) -> anyhow::Result<Vec<u8>> {
    let (tools, install) = tools();
    let mut failures = Vec::new();
    for tool in &tools {
        match run(tool, limit) {
            Ok(Some(bytes)) => return Ok(bytes),
            Ok(None) => {}
            Err(why) => failures.push(format!("{}: {why}", tool.program)),
        }
    }
    let names: Vec<&str> = tools.iter().map(|t| t.program).collect();
    if failures.is_empty() {
        bail!(
            "cannot read the clipboard: none of {} is installed ({install})",
            names.join(", ")
        );
    }
    bail!("cannot read the clipboard: {}", failures.join("; "))
}

/// Runs one tool: `Ok(None)` if it is not installed, `Err` with its complaint if it failed.
fn run(tool: &Tool, limit: usize) -> Result<Option<Vec<u8>>, String> {
    let mut child = match Command::new(tool.program)
        .args(tool.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipes to the tool".to_owned());
    };
    let (tx, rx) = mpsc::channel();
    let out_tx = tx.clone();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX);
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let read = stdout.take(cap).read_to_end(&mut bytes);
        let _ = out_tx.send(Stream::Out(read.map(|_| bytes)));
    });
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.take(MAX_STDERR).read_to_end(&mut bytes);
        let _ = tx.send(Stream::Err(bytes));
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let (mut out, mut err) = (None, None);
    while out.is_none() || err.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Stream::Out(read)) => out = Some(read),
            Ok(Stream::Err(bytes)) => err = Some(bytes),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(Ok(mut bytes)) = out {
                    bytes.fill(0);
                }
                return Err(format!(
                    "no answer within {} s (is the clipboard's owner stuck?)",
                    DEADLINE.as_secs()
                ));
            }
        }
    }
    let mut bytes = match out {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e.to_string()),
        None => Vec::new(),
    };
    if bytes.len() >= limit {
        // Cut off at `limit` (the caller refuses it): the tool need not finish writing.
        let _ = child.kill();
        let _ = child.wait();
        return Ok(Some(bytes));
    }
    // Both pipes are closed: the tool is exiting.
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        bytes.fill(0);
        let text = String::from_utf8_lossy(&err.unwrap_or_default()).into_owned();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        // Its message is shown to the terminal: no control characters through.
        let clean: String = first
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        return Err(format!("failed ({status}): {clean}"));
    }
    Ok(Some(bytes))
}

enum Stream {
    Out(std::io::Result<Vec<u8>>),
    Err(Vec<u8>),
}

/// The tools that empty the clipboard, in the order [`tools`] reads it.
#[cfg(all(unix, not(target_os = "macos")))]
fn clearers() -> Vec<Tool> {
    let wayland = Tool {
        program: "wl-copy",
        args: &["--clear"],
    };
    let xsel = Tool {
        program: "xsel",
        args: &["--clipboard", "--clear"],
    };
    // Empty stdin: xclip then owns an empty clipboard.
    let xclip = Tool {
        program: "xclip",
        args: &["-selection", "clipboard", "-in"],
    };
    if std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty()) {
        vec![wayland, xclip, xsel]
    } else {
        vec![xclip, xsel, wayland]
    }
}

#[cfg(target_os = "macos")]
fn clearers() -> Vec<Tool> {
    vec![Tool {
        program: "pbcopy",
        args: &[],
    }]
}

#[cfg(windows)]
fn clearers() -> Vec<Tool> {
    let args: &[&str] = &[
        "-NoProfile",
        "-NonInteractive",
        "-Command",
        "Set-Clipboard -Value $null",
    ];
    vec![
        Tool {
            program: "pwsh",
            args,
        },
        Tool {
            program: "powershell",
            args,
        },
    ]
}

/// Empties the clipboard with the first tool that is installed, within the deadline.
pub fn clear() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for tool in clearers() {
        let child = Command::new(tool.program)
            .args(tool.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                failures.push(format!("{}: {err}", tool.program));
                continue;
            }
        };
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    failures.push(format!("{}: failed ({status})", tool.program));
                    break;
                }
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("{}: no answer in time", tool.program));
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        bail!("no tool to clear the clipboard is installed");
    }
    bail!("{}", failures.join("; "))
}
