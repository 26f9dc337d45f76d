//! The guard on Windows: a `cmdrd.exe --guard-endpoint` child without a console. cmdrd
//! duplicates each listening socket into it (`WSADuplicateSocketW`) and writes the
//! protocol records to the guard's standard input, which stays open: a `q` on it is a
//! clean stop, its end cmdrd's death. Before it is stopped ([`retire`]: `TerminateProcess`,
//! Windows has no SIGTERM) it is checked by its creation time, kept in the pid file.

use std::io::{Read as _, Write};
use std::os::windows::io::AsRawHandle as _;
use std::os::windows::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    PROCESS_TERMINATE, TerminateProcess, WaitForSingleObject,
};

use super::{FLAG, HOLD_AFTER_CRASH, RETIRE_WAIT, Spec, pid_file, wipe};
use crate::endpoint::handover;

/// No console window, and not in cmdrd's console group (Ctrl+C there is for cmdrd).
const CREATE_NO_WINDOW: u32 = 0x0800_0000;
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

/// A listening socket as the guard is given it.
pub type Raw = std::os::windows::io::RawSocket;

/// Starts a guard holding duplicates of `spec.listeners` and writes its pid file; returns
/// it and its standard input (the pipe that tells it of a clean stop or cmdrd's death).
pub(super) fn start(spec: &Spec) -> std::io::Result<(Child, Box<dyn Write + Send>)> {
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg(FLAG)
        .arg(&spec.tokens)
        .arg(&spec.containers)
        .arg(offer_name(&spec.tokens))
        .creation_flags(CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    match hand_over(&mut child, spec) {
        Ok(stdin) => Ok((child, Box::new(stdin))),
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(err)
        }
    }
}

/// Gives the guard its sockets and writes its pid file; the guard's stdin is returned open.
fn hand_over(child: &mut Child, spec: &Spec) -> std::io::Result<std::process::ChildStdin> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no pipe to the guard"))?;
    stdin.write_all(&handover::records_for(&spec.listeners, child.id())?)?;
    stdin.flush()?;
    let line = match creation_time(child.as_raw_handle() as HANDLE) {
        Some(at) => format!("{} {at}\n", child.id()),
        None => format!("{}\n", child.id()),
    };
    cmdr_config::write_atomic(&spec.pid_file, line.as_bytes(), 0o600)?;
    Ok(stdin)
}

/// When the process behind `handle` was created (100 ns since 1601): with its pid, it
/// names one process whatever pid is reused later.
pub(in crate::endpoint) fn creation_time(handle: HANDLE) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a live process handle and four live FILETIMEs to fill.
    let ok = unsafe {
        GetProcessTimes(
            handle,
            &raw mut created,
            &raw mut exited,
            &raw mut kernel,
            &raw mut user,
        )
    };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// An open process handle, closed on drop.
pub(in crate::endpoint) struct Process(pub(in crate::endpoint) HANDLE);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: a handle this value owns.
        unsafe { CloseHandle(self.0) };
    }
}

/// The live process that `text` names ("PID CREATION", as a pid or run file holds it),
/// opened with `access` (and the right to read its creation time); `None` when it is this
/// process, gone, not ours to open, or another process that got the pid since.
pub(in crate::endpoint) fn open_named(text: &str, access: u32) -> Option<(u32, Process)> {
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse::<u32>().ok()?;
    let created = words.next()?.parse::<u64>().ok()?;
    if pid == std::process::id() {
        return None;
    }
    // SAFETY: OpenProcess returns a new handle or null.
    let handle = unsafe { OpenProcess(access | PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return None;
    }
    let process = Process(handle);
    (creation_time(process.0) == Some(created)).then_some((pid, process))
}

/// Stops the guard an earlier cmdrd left (after a crash), so its port can be bound again.
/// Only the process the pid file names (pid and creation time) is stopped; waits until it
/// is gone.
pub fn retire(tokens: &Path) -> bool {
    let file = pid_file(tokens);
    let text = cmdr_config::userfile::read_bounded(&file, 64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    // Gone, not ours to open, or the pid was reused: nothing to stop.
    let Some((pid, process)) = open_named(&text, PROCESS_TERMINATE | PROCESS_SYNCHRONIZE) else {
        return true;
    };
    // SAFETY: a live handle opened with PROCESS_TERMINATE and PROCESS_SYNCHRONIZE.
    let gone = unsafe {
        TerminateProcess(process.0, 0);
        WaitForSingleObject(process.0, RETIRE_WAIT.as_millis() as u32)
    };
    if gone == WAIT_OBJECT_0 {
        tracing::info!(pid, "retired the endpoint guard an earlier run left");
    } else {
        tracing::warn!(pid, "the endpoint guard of an earlier run did not exit");
    }
    gone == WAIT_OBJECT_0
}

/// The name the guard of `tokens` (`cmdrd.endpoint/PORT`) offers its sockets at
/// (`handover.rs`), `-` when the path says no port.
fn offer_name(tokens: &Path) -> String {
    let port = tokens
        .file_name()
        .and_then(|n| n.to_str()?.parse::<u16>().ok());
    match (tokens.parent(), port) {
        (Some(root), Some(port)) => handover::path(root, port, handover::Holder::Guard),
        _ => "-".to_owned(),
    }
}

/// The guard's `main`: `cmdrd --guard-endpoint TOKENS CONTAINERS OFFER`, its sockets'
/// records on standard input; it offers them to the sentinel and the next cmdrd at the
/// pipe OFFER (`-`: nowhere).
pub fn run(args: &[std::ffi::OsString]) -> ExitCode {
    let [tokens, containers, offer] = args else {
        return ExitCode::from(2);
    };
    let (tokens, containers) = (PathBuf::from(tokens), PathBuf::from(containers));
    let mut stdin = std::io::stdin().lock();
    // The listening sockets are only held, never accepted on: they stay open until the
    // process exits.
    let Ok(held) = handover::read_records(&mut stdin) else {
        return ExitCode::from(2);
    };
    if let Some(name) = offer.to_str().filter(|o| *o != "-") {
        // Without it, the next cmdrd retires this guard before it binds the port.
        let _ = handover::offer(name, held);
    }
    let mut byte = [0u8; 1];
    match stdin.read(&mut byte) {
        // cmdrd stopped cleanly and removed its tokens.
        Ok(1) => ExitCode::SUCCESS,
        // cmdrd died: no token may wait for whoever binds the port next. The port stays
        // held for the next cmdrd (which stops this), or an hour.
        _ => {
            wipe(&tokens, &containers);
            std::thread::sleep(HOLD_AFTER_CRASH);
            ExitCode::SUCCESS
        }
    }
}
