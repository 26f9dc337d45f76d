//! The daemon's settings: `$XDG_CONFIG_HOME/cmdr/config.toml`, the environment, defaults;
//! resolved once at start into absolute paths and durations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use cmdr_client::{SocketLocation, SocketSource};
use serde::Deserialize;

/// Which events become notifications: `[notifications]` in config.toml as it is, each key
/// optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesktopSettings {
    pub enabled: bool,
    pub token_changed: bool,
    pub expiring_soon: bool,
    pub expired: bool,
    pub identity_changed: bool,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        DesktopSettings {
            enabled: true,
            token_changed: true,
            expiring_soon: true,
            expired: true,
            identity_changed: true,
        }
    }
}

/// `[endpoint]` in config.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSettings {
    pub enabled: bool,
    /// `None`: the port chosen the first time, kept in the data directory.
    pub listen: Option<SocketAddr>,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            enabled: true,
            listen: None,
        }
    }
}

/// Parses `listen`: a loopback IPv4 address with a port (the SDKs take plain HTTP only
/// from loopback, and some only from an IP literal).
pub fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = text.parse().with_context(|| {
        format!("invalid endpoint.listen {text:?}: expected e.g. \"127.0.0.1:4144\"")
    })?;
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => Ok(addr),
        _ => bail!(
            "invalid endpoint.listen {text:?}: the credentials endpoint listens on 127.0.0.1 only (the AWS SDKs refuse plain HTTP elsewhere)"
        ),
    }
}

/// Where the daemon keeps what only the user may read at run time: beside the socket (a
/// private directory), or in the data directory where the socket is a named pipe. `name`
/// is prefixed with the socket's file stem, so daemons with sockets in one directory keep
/// apart.
fn beside_socket(socket: &Path, data_dir: &Path, name: &str) -> PathBuf {
    match socket.parent() {
        Some(dir) if cfg!(unix) && !dir.as_os_str().is_empty() => {
            let stem = socket
                .file_stem()
                .map_or_else(|| "cmdrd".into(), |s| s.to_string_lossy().into_owned());
            dir.join(format!("{stem}.{name}"))
        }
        _ => data_dir.join(name),
    }
}

/// The single token file of older versions (removed at start: its token is dead).
pub fn token_file(socket: &Path, data_dir: &Path) -> PathBuf {
    match socket.parent() {
        Some(dir) if cfg!(unix) && !dir.as_os_str().is_empty() => dir.join("endpoint.token"),
        _ => data_dir.join("endpoint.token"),
    }
}

/// The endpoint's tokens: `<this>/<port>/<account>`, one file per account, valid only for
/// the port in their path. Removed when cmdrd stops and before it binds.
pub fn endpoint_tokens_dir(socket: &Path, data_dir: &Path) -> PathBuf {
    beside_socket(socket, data_dir, "endpoint")
}

/// `<tokens>-PORT.sentinel`: locked by the one endpoint sentinel of `port` while it runs
/// (cmdrd's `endpoint/sentinel.rs`; cmdrctl starts it).
pub fn endpoint_sentinel_file(tokens: &Path, port: u16) -> PathBuf {
    let mut name = tokens.as_os_str().to_owned();
    name.push(format!("-{port}.sentinel"));
    PathBuf::from(name)
}

/// Whether the endpoint sentinel of `port` runs: its file is locked.
pub fn endpoint_sentinel_runs(tokens: &Path, port: u16) -> bool {
    std::fs::File::open(endpoint_sentinel_file(tokens, port))
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Containers' token directories: `<this>/<port>/<account>/token`, each directory
/// bind-mounted read-only into the containers of one account. The token files go when
/// cmdrd stops and before it binds; the directories stay while the port does, so a running
/// container finds the new token after a restart on the same port.
pub fn container_tokens_dir(socket: &Path, data_dir: &Path) -> PathBuf {
    beside_socket(socket, data_dir, "containers")
}

/// The user's AWS files without credentials, for processes on the endpoint
/// (`config`, `credentials`, `boto`).
pub fn child_files_dir(socket: &Path, data_dir: &Path) -> PathBuf {
    beside_socket(socket, data_dir, "aws")
}

/// A config file beyond this is refused (real ones are a few hundred bytes).
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// `config.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    paths: PathsSection,
    daemon: DaemonSection,
    notifications: DesktopSettings,
    endpoint: EndpointSection,
    console: ConsoleSection,
    paste: PasteSection,
}

/// `[console]`: where `cmdrctl console` signs in.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConsoleSection {
    /// The federation endpoint, e.g. `https://signin.aws.amazon.com/federation`; default:
    /// the account's partition's.
    signin_url: Option<String>,
}

/// `[paste]`: `cmdrctl paste`'s defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PasteSection {
    /// Clear the clipboard after a successful `paste --clipboard` (if it still holds
    /// what was pasted).
    clear_clipboard: Option<bool>,
}

/// `[endpoint]`: the credentials endpoint for running processes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EndpointSection {
    enabled: Option<bool>,
    /// `127.0.0.1:PORT`.
    listen: Option<String>,
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
    renew_before: Option<String>,
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
    /// How long before its token ends an account that renews itself through its portal is
    /// renewed (`[daemon] renew_before`, default 10 min).
    pub renew_before: chrono::Duration,
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
    /// `[console] signin_url`: the federation endpoint; `None`: the partition's.
    pub console_signin_url: Option<String>,
}

/// `[paste]` in config.toml, resolved: what only `cmdrctl paste` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasteSettings {
    /// `clear_clipboard`: `paste --clipboard` clears what it pasted.
    pub clear_clipboard: bool,
}

impl PasteSettings {
    /// The `[paste]` section of the config file `Settings::load` reads.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<PasteSettings> {
        let (_, file) = read_config_file(config_file)?;
        Ok(PasteSettings {
            clear_clipboard: file.paste.clear_clipboard.unwrap_or(false),
        })
    }
}

/// The AWS files a service (started without this shell's environment) would watch:
/// `[paths]` in config.toml, else `~/.aws/config` and `~/.aws/credentials`.
pub fn service_aws_paths() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dirs = directories::BaseDirs::new()
        .context("cannot determine the home directory (is HOME set?)")?;
    let home = dirs.home_dir().to_owned();
    let (_, file) = read_config_file(None)?;
    let pick = |value: &Option<String>, default: &str| {
        value.as_deref().filter(|p| !p.is_empty()).map_or_else(
            || home.join(".aws").join(default),
            |p| expand_home(p, &home),
        )
    };
    Ok((
        pick(&file.paths.config, "config"),
        pick(&file.paths.credentials, "credentials"),
    ))
}

/// The config file (`config_file`, else the default location, which may be missing) and
/// what it says; every key optional.
fn read_config_file(config_file: Option<&Path>) -> anyhow::Result<(Option<PathBuf>, ConfigFile)> {
    let dirs = directories::BaseDirs::new()
        .context("cannot determine the home directory (is HOME set?)")?;
    let default_config = dirs.config_dir().join("cmdr").join("config.toml");
    let (path, explicit) = match config_file {
        Some(p) => (p.to_owned(), true),
        None => (default_config, false),
    };
    // Bounded, regular files only: a FIFO or a device here must not hang anyone.
    let read = crate::userfile::read_bounded(&path, MAX_CONFIG_LEN)
        .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other));
    match read {
        Ok(text) => {
            let file = toml::from_str::<ConfigFile>(&text).map_err(|err| {
                anyhow::anyhow!(
                    "invalid config file {}: {}",
                    path.display(),
                    one_line(&err, &text)
                )
            })?;
            Ok((Some(path), file))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok((None, ConfigFile::default()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// A TOML error on one line, `line L, column C: MESSAGE` (toml's own display draws the
/// line under a caret over several lines, which a terminal-safe message escapes to `\n`).
fn one_line(err: &toml::de::Error, text: &str) -> String {
    let message = err
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
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
        token_file(&self.socket.path, &self.data_dir)
    }

    pub fn endpoint_tokens_dir(&self) -> PathBuf {
        endpoint_tokens_dir(&self.socket.path, &self.data_dir)
    }

    pub fn container_tokens_dir(&self) -> PathBuf {
        container_tokens_dir(&self.socket.path, &self.data_dir)
    }

    pub fn child_files_dir(&self) -> PathBuf {
        child_files_dir(&self.socket.path, &self.data_dir)
    }

    /// Resolves settings from the real environment. `config_file` overrides the default
    /// location; `socket` (from `--socket`) overrides everything else.
    pub fn load(config_file: Option<&Path>, socket: Option<PathBuf>) -> anyhow::Result<Settings> {
        let dirs = directories::BaseDirs::new()
            .context("cannot determine the home directory (is HOME set?)")?;
        let home = dirs.home_dir().to_owned();
        let (config_file, file) = read_config_file(config_file)?;
        let env_path = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let expand = |p: &str| expand_home(p, &home);

        let aws_dir = home.join(".aws");
        // A `[paths]` value, expanded; empty counts as unset.
        let configured =
            |value: &Option<String>| value.as_deref().filter(|p| !p.is_empty()).map(expand);
        // Byte for byte: a path that is not UTF-8 must not be converted lossily.
        let from_env = |name: &str| env_path(name).map(|p| expand_home_path(p, &home));
        let aws_config = configured(&file.paths.config)
            .or_else(|| from_env("AWS_CONFIG_FILE"))
            .unwrap_or_else(|| aws_dir.join("config"));
        let aws_credentials = configured(&file.paths.credentials)
            .or_else(|| from_env("AWS_SHARED_CREDENTIALS_FILE"))
            .unwrap_or_else(|| aws_dir.join("credentials"));
        let sso_cache =
            configured(&file.paths.sso_cache).unwrap_or_else(|| aws_dir.join("sso").join("cache"));
        let data_dir =
            configured(&file.paths.data_dir).unwrap_or_else(|| dirs.data_local_dir().join("cmdr"));
        let at = |path, source| SocketLocation {
            path,
            note: None,
            source,
        };
        let socket = match (socket, cmdr_client::socket_from_env()) {
            (Some(path), _) => at(path, SocketSource::Flag),
            (None, Some(path)) => at(path, SocketSource::Env),
            (None, None) => match configured(&file.paths.socket) {
                Some(path) => at(path, SocketSource::Config),
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
        let mut settings = Settings {
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
            renew_before: duration(
                d.renew_before.as_deref(),
                chrono::Duration::minutes(10),
                "renew_before",
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
            desktop: file.notifications,
            endpoint: EndpointSettings {
                enabled: file.endpoint.enabled.unwrap_or(true),
                listen: file
                    .endpoint
                    .listen
                    .as_deref()
                    .map(parse_listen)
                    .transpose()?,
            },
            console_signin_url: file
                .console
                .signin_url
                .map(|url| {
                    cmdr_core::input::check_endpoint(&url)
                        .map(|()| url)
                        .map_err(|err| anyhow::anyhow!("invalid console.signin_url: {err}"))
                })
                .transpose()?,
        };
        settings.socket.path = absolute_socket(settings.socket.path);
        Ok(settings)
    }
}

/// A relative socket path (`CMDR_SOCKET=rt/cmdrd.sock`) made absolute, so the paths
/// beside it (the endpoint's token files, handed to processes that change directory) name
/// the same files from anywhere. A Windows pipe name is left as it is.
fn absolute_socket(path: PathBuf) -> PathBuf {
    if cfg!(unix) {
        std::path::absolute(&path).unwrap_or(path)
    } else {
        path
    }
}

/// The socket a client connects to, in the daemon's order: `--socket`, `CMDR_SOCKET`,
/// `[paths] socket` in the default config file, the platform's default. A config file that
/// cannot be used counts as absent here (the daemon says what is wrong with it).
pub fn client_socket(flag: Option<PathBuf>) -> SocketLocation {
    match Settings::load(None, flag.clone()) {
        Ok(settings) => settings.socket,
        Err(_) => match flag {
            Some(path) => SocketLocation {
                path: absolute_socket(path),
                note: None,
                source: SocketSource::Flag,
            },
            None => {
                let mut location = cmdr_client::default_socket();
                location.path = absolute_socket(location.path);
                location
            }
        },
    }
}

/// [`expand_home`] on a path of any bytes: a leading `~` component is HOME.
fn expand_home_path(path: PathBuf, home: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) if rest.as_os_str().is_empty() => home.to_owned(),
        Ok(rest) => home.join(rest),
        Err(_) => path,
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

    /// A relative socket (`CMDR_SOCKET=rt/cmdrd.sock`) names the same files from any
    /// directory: the endpoint's token files beside it are handed to processes that move.
    #[cfg(unix)]
    #[test]
    fn a_relative_socket_is_made_absolute() {
        let path = absolute_socket(PathBuf::from("rt/cmdrd.sock"));
        assert!(path.is_absolute(), "{}", path.display());
        assert!(path.ends_with("rt/cmdrd.sock"));
        let tokens = endpoint_tokens_dir(&path, Path::new("/data"));
        assert!(tokens.is_absolute(), "{}", tokens.display());
    }

    #[test]
    fn home_expansion() {
        let home = Path::new("/home/u");
        assert_eq!(expand_home("~/x/y", home), PathBuf::from("/home/u/x/y"));
        assert_eq!(expand_home("~", home), PathBuf::from("/home/u"));
        assert_eq!(expand_home("/abs", home), PathBuf::from("/abs"));
        assert_eq!(expand_home("~other/x", home), PathBuf::from("~other/x"));
        for (path, want) in [("~/x/y", "/home/u/x/y"), ("~", "/home/u"), ("/abs", "/abs")] {
            assert_eq!(
                expand_home_path(PathBuf::from(path), home),
                PathBuf::from(want)
            );
        }
        assert_eq!(
            expand_home_path(PathBuf::from("~other/x"), home),
            PathBuf::from("~other/x")
        );
    }

    #[test]
    fn config_file_rejects_unknown_keys() {
        assert!(toml::from_str::<ConfigFile>("[paths]\ncredentials = \"~/c\"\n").is_ok());
        assert!(toml::from_str::<ConfigFile>("[paths]\ncredentail = \"~/c\"\n").is_err());
        assert!(toml::from_str::<ConfigFile>("[daemon]\nwarn_before = \"10m\"\n").is_ok());
        let paste = toml::from_str::<ConfigFile>("[paste]\nclear_clipboard = true\n");
        assert_eq!(paste.ok().and_then(|f| f.paste.clear_clipboard), Some(true));
        assert!(toml::from_str::<ConfigFile>("[paste]\nclear = true\n").is_err());
        let text = "[daemon]\nthis is = = not toml [\n";
        let err = toml::from_str::<ConfigFile>(text).expect_err("not toml");
        let said = one_line(&err, text);
        assert!(said.starts_with("line 2, column 6: "), "{said}");
        assert!(!said.contains('\n'), "{said}");
    }
}
