//! Starts cmdrd's endpoint sentinel (`crates/cmdrd/src/endpoint/sentinel.rs`) for the port
//! a process is about to be given (`exec`, `env --serve`, `container env`): it runs in the
//! caller's session, outside cmdrd's service, so a kill of cmdrd and its guard together
//! still leaves someone to remove that port's token files. One runs per port: this
//! command returns at once when it does.

use std::path::Path;

/// Starts the sentinel for the endpoint at `url` unless one runs. It cannot start only
/// when the cmdrd binary is missing, and then says so (the process still runs: the guard
/// covers every crash of cmdrd alone).
pub fn ensure(socket: &Path, url: &str) {
    // It leaves the working directory: a relative socket would name another one.
    let Ok(socket) = std::path::absolute(socket) else {
        return;
    };
    let socket = socket.as_path();
    let (Some(port), Some(tokens)) = (port_of(url), tokens_dir(socket)) else {
        return;
    };
    if cmdr_config::endpoint_sentinel_runs(&tokens, port) {
        return;
    }
    if let Err(err) = crate::service::find_cmdrd().and_then(|cmdrd| start(&cmdrd, socket, port)) {
        eprintln!(
            "cmdrctl: warning: cannot start the endpoint sentinel ({err:#}): if cmdrd and its guard are killed together, this process's token file stays until cmdrd starts again"
        );
    }
}

/// Where cmdrd keeps the endpoint's tokens for `socket`: beside it (Unix).
#[cfg(unix)]
fn tokens_dir(socket: &Path) -> Option<std::path::PathBuf> {
    let dir = socket.parent().filter(|d| !d.as_os_str().is_empty())?;
    Some(cmdr_config::endpoint_tokens_dir(socket, dir))
}

/// Where cmdrd keeps the endpoint's tokens: in its data directory (Windows).
#[cfg(windows)]
fn tokens_dir(socket: &Path) -> Option<std::path::PathBuf> {
    let settings = cmdr_config::Settings::load(None, Some(socket.to_owned())).ok()?;
    Some(settings.endpoint_tokens_dir())
}

/// Unix: it forks and its parent exits at once; this waits for that, not for the sentinel.
#[cfg(unix)]
fn start(cmdrd: &Path, socket: &Path, port: u16) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let status = command(cmdrd, socket, port)
        .arg0("cmdr-sentinel")
        .status()?;
    // 3: cmdrd holds no lock for the port (`sentinel/unix.rs`).
    anyhow::ensure!(
        status.code() != Some(3),
        "the running cmdrd keeps no lock for port {port}; it is older than this cmdrctl: restart it"
    );
    anyhow::ensure!(status.success(), "it exited with {status}");
    Ok(())
}

/// Windows: started detached (no console, its own process group); not waited for. A
/// Windows child inherits every inheritable handle, so this process's own standard handles
/// are kept from it while it starts: a pipe it held (`cmdrctl env … | …`) would never end.
#[cfg(windows)]
fn start(cmdrd: &Path, socket: &Path, port: u16) -> anyhow::Result<()> {
    use std::os::windows::process::CommandExt as _;
    use windows_sys::Win32::Foundation::{
        GetHandleInformation, HANDLE_FLAG_INHERIT, SetHandleInformation,
    };
    use windows_sys::Win32::System::Console::{
        GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
    };
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    // The standard handles with their flags as they were.
    let handles = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
        // SAFETY: GetStdHandle has no preconditions; null or invalid handles are skipped.
        .map(|which| unsafe { GetStdHandle(which) })
        .into_iter()
        .filter(|h| !h.is_null() && *h as isize != -1)
        .filter_map(|handle| {
            let mut flags = 0u32;
            // SAFETY: a standard handle of this process and a live u32 to fill.
            (unsafe { GetHandleInformation(handle, &raw mut flags) } != 0)
                .then_some((handle, flags & HANDLE_FLAG_INHERIT))
        })
        .collect::<Vec<_>>();
    for &(handle, _) in &handles {
        // SAFETY: a standard handle of this process; only its inherit flag changes.
        unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0) };
    }
    let spawned = command(cmdrd, socket, port)
        .creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
        .spawn();
    // As they were: `exec`'s child inherits them.
    for &(handle, inherit) in &handles {
        // SAFETY: as above.
        unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, inherit) };
    }
    spawned?;
    Ok(())
}

fn command(cmdrd: &Path, socket: &Path, port: u16) -> std::process::Command {
    let mut command = std::process::Command::new(cmdrd);
    command
        .arg("--sentinel-endpoint")
        .arg(socket)
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// The port of an endpoint URL (`http://HOST:PORT/…`).
fn port_of(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::port_of;

    #[test]
    fn ports_of_endpoint_urls() {
        assert_eq!(
            port_of("http://127.0.0.1:4144/v1/credentials/acme"),
            Some(4144)
        );
        assert_eq!(
            port_of("http://169.254.170.2:80/v1/credentials/a:b"),
            Some(80)
        );
        assert_eq!(port_of("http://127.0.0.1/v1/credentials/acme"), None);
        assert_eq!(port_of("nonsense"), None);
    }
}
