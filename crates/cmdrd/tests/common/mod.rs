//! What cmdrd's own test files share: the daemon's settings for a temp directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon's socket: under `dir` on Unix, a named pipe of this process on Windows.
#[cfg(windows)]
pub fn socket_path(_dir: &Path) -> PathBuf {
    PathBuf::from(format!(
        r"\\.\pipe\cmdrd-test-client-{}",
        std::process::id()
    ))
}

#[cfg(unix)]
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("run").join("cmdrd.sock")
}

/// Settings with every path under `dir` (the socket at [`socket_path`]), short
/// timings, and neither desktop notifications nor the credentials endpoint.
pub fn settings(dir: &Path) -> cmdrd::Settings {
    cmdrd::Settings {
        aws_config: dir.join("config"),
        aws_credentials: dir.join("credentials"),
        sso_cache: dir.join("sso"),
        data_dir: dir.join("data"),
        socket: cmdr_client::SocketLocation {
            path: socket_path(dir),
            note: None,
            source: cmdr_client::SocketSource::Flag,
        },
        debounce: Duration::from_millis(50),
        warn_before: chrono::Duration::minutes(15),
        renew_before: chrono::Duration::minutes(10),
        default_session_duration: chrono::Duration::hours(12),
        validate_on_change: false,
        validate_timeout: Duration::from_secs(5),
        max_connections: 8,
        event_buffer: 64,
        config_file: None,
        desktop: cmdrd::desktop::DesktopSettings {
            enabled: false,
            ..cmdrd::desktop::DesktopSettings::default()
        },
        endpoint: cmdrd::endpoint::EndpointSettings {
            enabled: false,
            listen: None,
        },
        console_signin_url: None,
    }
}
