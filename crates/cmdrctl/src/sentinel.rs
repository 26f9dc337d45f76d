//! Starts cmdrd's endpoint sentinel (`crates/cmdrd/src/endpoint/sentinel.rs`) for the port
//! a process is about to be given (`exec`, `env --serve`, `container env`): it runs in the
//! caller's session, outside cmdrd's service, so a kill of cmdrd and its guard together
//! still leaves someone to remove that port's token files. One runs per port: this
//! command returns at once when it does.

use std::path::Path;

/// Starts the sentinel for the endpoint at `url` unless one runs. It cannot start only
/// when the cmdrd binary is missing, and then says so (the process still runs: the guard
/// covers every crash of cmdrd alone).
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn ensure(socket: &Path, url: &str) {
    use std::os::unix::process::CommandExt as _;
    let (Some(port), Some(dir)) = (port_of(url), socket.parent()) else {
        return;
    };
    if dir.as_os_str().is_empty() {
        return;
    }
    let mut single = cmdr_config::endpoint_tokens_dir(socket, dir).into_os_string();
    single.push(format!("-{port}.sentinel"));
    if let Ok(file) = std::fs::File::open(&single)
        && let Err(std::fs::TryLockError::WouldBlock) = file.try_lock()
    {
        return;
    }
    let started = crate::service::find_cmdrd().and_then(|cmdrd| {
        // It forks and its parent exits at once: this waits for that, not for the sentinel.
        let status = std::process::Command::new(cmdrd)
            .arg0("cmdr-sentinel")
            .arg("--sentinel-endpoint")
            .arg(socket)
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "it exited with {status}");
        Ok(())
    });
    if let Err(err) = started {
        eprintln!(
            "cmdrctl: warning: cannot start the endpoint sentinel ({err:#}): if cmdrd and its guard are killed together, this process's token file stays until cmdrd starts again"
        );
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn ensure(_socket: &Path, _url: &str) {}

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
