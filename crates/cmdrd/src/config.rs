//! The daemon's settings: `$XDG_CONFIG_HOME/cmdr/config.toml`, the environment, defaults;
//! resolved once at start into absolute paths and durations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use cmdr_client::SocketLocation;
use serde::Deserialize;

use crate::desktop::DesktopSettings;
use crate::endpoint::EndpointSettings;

/// `config.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    paths: PathsSection,
    daemon: DaemonSection,
    notifications: NotificationsSection,
    endpoint: EndpointSection,
}

/// `[endpoint]`: the credentials endpoint for running processes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EndpointSection {
    enabled: Option<bool>,
    /// `127.0.0.1:PORT`.
    listen: Option<String>,
}

/// `[notifications]`: desktop notifications, per kind.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NotificationsSection {
    enabled: Option<bool>,
    token_changed: Option<bool>,
    expiring_soon: Option<bool>,
    expired: Option<bool>,
    identity_changed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PathsSection {
    config: Option<String>,
    credentials: Option<String>,
    sso_cache: Option<String>,
    data_dir: Option<String>,
    socket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DaemonSection {
    debounce_ms: Option<u64>,
    warn_before: Option<String>,
    default_session_duration: Option<String>,
    validate_on_change: Option<bool>,
    max_connections: Option<usize>,
    event_buffer: Option<usize>,
    validate_timeout: Option<String>,
}

/// Everything the daemon needs to know, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub aws_config: PathBuf,
    pub aws_credentials: PathBuf,
    pub sso_cache: PathBuf,
    pub data_dir: PathBuf,
    pub socket: SocketLocation,
    /// Quiet time after the last file event before reading.
    pub debounce: Duration,
    pub warn_before: chrono::Duration,
    pub default_session_duration: chrono::Duration,
    pub validate_on_change: bool,
    /// Deadline of one STS call.
    pub validate_timeout: Duration,
    pub max_connections: usize,
    /// Events kept for a slow subscriber before it gets `lagged`.
    pub event_buffer: usize,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub desktop: DesktopSettings,
    pub endpoint: EndpointSettings,
}

impl Settings {
    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join("state.json")
    }

    /// Keeps the credentials endpoint's port across restarts.
    pub fn endpoint_port_file(&self) -> PathBuf {
        self.data_dir.join("endpoint.port")
    }

    pub fn endpoint_token_file(&self) -> PathBuf {
        crate::endpoint::token_file(&self.socket.path, &self.data_dir)
    }

    /// Resolves settings from the real environment. `config_file` overrides the default
    /// location; `socket` (from `--socket`) overrides everything else.
    pub fn load(config_file: Option<&Path>, socket: Option<PathBuf>) -> anyhow::Result<Settings> {
        let dirs = directories::BaseDirs::new()
            .context("cannot determine the home directory (is HOME set?)")?;
        let home = dirs.home_dir().to_owned();
        let default_config = dirs.config_dir().join("cmdr").join("config.toml");
        let (path, explicit) = match config_file {
            Some(p) => (p.to_owned(), true),
            None => (default_config, false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?,
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read config file {}", path.display()));
            }
        };
        let config_file = file.as_ref().map(|_| path);
        let file = file.unwrap_or_default();
        let env_path = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let expand = |p: &str| expand_home(p, &home);

        let aws_dir = home.join(".aws");
        let aws_config = file
            .paths
            .config
            .as_deref()
            .map(expand)
            .or_else(|| env_path("AWS_CONFIG_FILE").map(|p| expand(&p.to_string_lossy())))
            .unwrap_or_else(|| aws_dir.join("config"));
        let aws_credentials = file
            .paths
            .credentials
            .as_deref()
            .map(expand)
            .or_else(|| {
                env_path("AWS_SHARED_CREDENTIALS_FILE").map(|p| expand(&p.to_string_lossy()))
            })
            .unwrap_or_else(|| aws_dir.join("credentials"));
        let sso_cache = file
            .paths
            .sso_cache
            .as_deref()
            .map(expand)
            .unwrap_or_else(|| aws_dir.join("sso").join("cache"));
        let data_dir = file
            .paths
            .data_dir
            .as_deref()
            .map(expand)
            .unwrap_or_else(|| dirs.data_dir().join("cmdr"));
        let socket = match socket.or_else(|| env_path("CMDR_SOCKET")) {
            Some(path) => SocketLocation { path, note: None },
            None => match file.paths.socket.as_deref() {
                Some(p) => SocketLocation {
                    path: expand(p),
                    note: None,
                },
                None => cmdr_client::default_socket(),
            },
        };
        let duration = |text: Option<&str>, default: chrono::Duration, key: &str| match text {
            None => Ok(default),
            Some(t) => cmdr_core::parse_duration(t).with_context(|| {
                format!("invalid duration for daemon.{key}: {t:?} (use e.g. 15m, 12h)")
            }),
        };
        let d = &file.daemon;
        let settings = Settings {
            aws_config: absolute(aws_config)?,
            aws_credentials: absolute(aws_credentials)?,
            sso_cache: absolute(sso_cache)?,
            data_dir: absolute(data_dir)?,
            socket,
            debounce: Duration::from_millis(d.debounce_ms.unwrap_or(50).min(10_000)),
            warn_before: duration(
                d.warn_before.as_deref(),
                chrono::Duration::minutes(15),
                "warn_before",
            )?,
            default_session_duration: duration(
                d.default_session_duration.as_deref(),
                chrono::Duration::hours(12),
                "default_session_duration",
            )?,
            validate_on_change: d.validate_on_change.unwrap_or(true),
            validate_timeout: duration(
                d.validate_timeout.as_deref(),
                chrono::Duration::seconds(5),
                "validate_timeout",
            )?
            .to_std()
            .unwrap_or(Duration::from_secs(5)),
            max_connections: d.max_connections.unwrap_or(256).max(1),
            event_buffer: d.event_buffer.unwrap_or(1024).clamp(16, 1 << 16),
            config_file,
            desktop: {
                let n = &file.notifications;
                let on = DesktopSettings::default();
                DesktopSettings {
                    enabled: n.enabled.unwrap_or(on.enabled),
                    token_changed: n.token_changed.unwrap_or(on.token_changed),
                    expiring_soon: n.expiring_soon.unwrap_or(on.expiring_soon),
                    expired: n.expired.unwrap_or(on.expired),
                    identity_changed: n.identity_changed.unwrap_or(on.identity_changed),
                }
            },
            endpoint: EndpointSettings {
                enabled: file.endpoint.enabled.unwrap_or(true),
                listen: file
                    .endpoint
                    .listen
                    .as_deref()
                    .map(crate::endpoint::parse_listen)
                    .transpose()?,
            },
        };
        Ok(settings)
    }
}

fn expand_home(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None if path == "~" => home.to_owned(),
        None => PathBuf::from(path),
    }
}

fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    if path.as_os_str().is_empty() {
        bail!("empty path in settings");
    }
    Ok(std::env::current_dir()
        .context("cannot resolve a relative path")?
        .join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_expansion() {
        let home = Path::new("/home/u");
        assert_eq!(expand_home("~/x/y", home), PathBuf::from("/home/u/x/y"));
        assert_eq!(expand_home("~", home), PathBuf::from("/home/u"));
        assert_eq!(expand_home("/abs", home), PathBuf::from("/abs"));
        assert_eq!(expand_home("~other/x", home), PathBuf::from("~other/x"));
    }

    #[test]
    fn config_file_rejects_unknown_keys() {
        assert!(toml::from_str::<ConfigFile>("[paths]\ncredentials = \"~/c\"\n").is_ok());
        assert!(toml::from_str::<ConfigFile>("[paths]\ncredentail = \"~/c\"\n").is_err());
        assert!(toml::from_str::<ConfigFile>("[daemon]\nwarn_before = \"10m\"\n").is_ok());
    }
}
