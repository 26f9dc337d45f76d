//! cmdr-client: find the daemon's socket, connect, handshake, send requests and receive
//! events. Used by cmdrctl and by any Rust tool that wants cmdr's events.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdr_proto::{
    AccountInfo, ClientMessage, Codec, ErrorReply, Event, FEATURE_PAGES, FrameDecoder, Hello,
    MAX_PAGE_ITEMS, MAX_REPLY_LEN, Outcome, PROTOCOL_VERSION, Page, PageRequest, ProfileInfo,
    ProtoError, Request, Response, ServerMessage, Welcome, encode,
};
use interprocess::local_socket::tokio::{Stream, prelude::*};
use interprocess::local_socket::{GenericFilePath, ToFsName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a command waits for the daemon by default: connect, handshake, and each
/// request. A wedged or stopped daemon is an error after this, never a hang.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// What the shell prompt and the prompt hooks allow: they run at every prompt, so a slow
/// daemon must cost the user no more than this, silently.
pub const PROMPT_DEADLINE: Duration = Duration::from_millis(200);
/// `validate` waits for STS, which the daemon bounds with its own timeouts
/// (`validate_timeout`, for resolving the credentials and for the call itself).
pub const VALIDATE_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `work` (connecting, then requests) within one `budget` in all: what the shell
/// prompt and its hooks allow, where a deadline per step would add up.
pub async fn within<T>(
    budget: Duration,
    work: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(budget, work)
        .await
        .unwrap_or(Err(ClientError::Timeout(budget)))
}

/// Where the socket is, and why it is not in the default place if it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketLocation {
    pub path: PathBuf,
    pub note: Option<String>,
    /// Where the path came from.
    pub source: SocketSource,
}

/// Where a socket path came from, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// `--socket`.
    Flag,
    /// `CMDR_SOCKET`.
    Env,
    /// `[paths] socket` in config.toml.
    Config,
    /// The platform's default.
    Default,
}

/// `CMDR_SOCKET`, the one place it is read; empty counts as unset.
pub fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os("CMDR_SOCKET")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The default socket, as `--help` describes it on this platform.
#[cfg(target_os = "linux")]
pub const DEFAULT_SOCKET_HELP: &str = "$XDG_RUNTIME_DIR/cmdr/cmdrd.sock, else /tmp/cmdr-UID/";
#[cfg(target_os = "macos")]
pub const DEFAULT_SOCKET_HELP: &str = "$TMPDIR/cmdr-UID/cmdrd.sock";
#[cfg(windows)]
pub const DEFAULT_SOCKET_HELP: &str = r"\\.\pipe\cmdrd-SID, SID being your user's";
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub const DEFAULT_SOCKET_HELP: &str = "/tmp/cmdr-UID/cmdrd.sock";

/// Where cmdr's `config.toml` is by default, as `--help` describes it on this platform.
#[cfg(windows)]
pub const DEFAULT_CONFIG_HELP: &str = r"%APPDATA%\cmdr\config.toml";
#[cfg(target_os = "macos")]
pub const DEFAULT_CONFIG_HELP: &str = "~/Library/Application Support/cmdr/config.toml";
#[cfg(not(any(windows, target_os = "macos")))]
pub const DEFAULT_CONFIG_HELP: &str = "$XDG_CONFIG_HOME/cmdr/config.toml";

/// The socket path: `CMDR_SOCKET`, else `$XDG_RUNTIME_DIR/cmdr/cmdrd.sock` on Linux, else a
/// private per-user directory under the temp dir.
pub fn default_socket() -> SocketLocation {
    if let Some(path) = socket_from_env() {
        return SocketLocation {
            path,
            note: None,
            source: SocketSource::Env,
        };
    }
    default_socket_for(std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
}

#[cfg(unix)]
fn default_socket_for(runtime_dir: Option<PathBuf>) -> SocketLocation {
    let uid = current_uid();
    if cfg!(target_os = "linux")
        && let Some(dir) = runtime_dir.filter(|d| d.is_absolute())
    {
        return SocketLocation {
            path: dir.join("cmdr").join("cmdrd.sock"),
            note: None,
            source: SocketSource::Default,
        };
    }
    // macOS: TMPDIR is already per user. Elsewhere /tmp, in a directory only we may own.
    let base = std::env::var_os("TMPDIR")
        .filter(|_| cfg!(target_os = "macos"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let dir = base.join(format!("cmdr-{uid}"));
    SocketLocation {
        note: cfg!(target_os = "linux").then(|| {
            format!(
                "XDG_RUNTIME_DIR is not set; using the private fallback {}",
                dir.display()
            )
        }),
        path: dir.join("cmdrd.sock"),
        source: SocketSource::Default,
    }
}

/// The real uid of this process (it names the `/tmp` fallback directory).
#[cfg(unix)]
pub fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Why a daemon closed the connection before saying anything, or could not be reached:
/// the socket or its directory belongs to another uid.
#[cfg(unix)]
fn other_user(socket: &Path) -> Option<ClientError> {
    use std::os::unix::fs::MetadataExt as _;
    let euid = unix::current_euid();
    let owner = std::fs::symlink_metadata(socket)
        .ok()
        .or_else(|| std::fs::metadata(socket.parent()?).ok())?
        .uid();
    (owner != euid).then(|| ClientError::OtherUser {
        socket: socket.to_owned(),
        uid: owner,
    })
}

#[cfg(not(unix))]
fn other_user(_socket: &Path) -> Option<ClientError> {
    None
}

/// Windows: a named pipe named after the user's SID (not `USERNAME`, which the
/// environment can change and two domains can share).
#[cfg(windows)]
fn default_socket_for(_runtime_dir: Option<PathBuf>) -> SocketLocation {
    let user = windows::current_user_sid()
        .ok()
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "user".to_owned());
    SocketLocation {
        path: PathBuf::from(format!(r"\\.\pipe\cmdrd-{user}")),
        note: None,
        source: SocketSource::Default,
    }
}

#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
use windows::check_daemon_user;

#[cfg(unix)]
pub mod unix;
#[cfg(unix)]
use unix::{check_before_connect, check_daemon_user};

#[cfg(not(unix))]
fn check_before_connect(_socket: &Path) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn check_daemon_user(_stream: &Stream, _socket: &Path) -> Result<(), ClientError> {
    Ok(())
}

/// A socket directory not to be trusted (Unix): `path` is the offending directory (the
/// socket's own, or one of its ancestors), `reason` says what is wrong and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct UnsafeDir {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cmdrd is not running (no daemon at {}): start it with `cmdrd` or `cmdrctl service install`", socket.display())]
    NotRunning { socket: PathBuf, source: io::Error },
    #[error("incompatible cmdrd: {0}")]
    Incompatible(String),
    #[error("cmdrd refused the connection: {0}")]
    Refused(String),
    #[error("{}", .0.message)]
    Daemon(ErrorReply),
    #[error("connection to cmdrd at {}: {source}", socket.display())]
    Io { socket: PathBuf, source: io::Error },
    #[error("protocol error talking to cmdrd: {0}")]
    Proto(#[from] ProtoError),
    #[error("cmdrd closed the connection")]
    Closed,
    /// The socket (or its directory) belongs to another uid: that daemon serves only its
    /// owner and closes other users' connections.
    #[error("the cmdrd at {} belongs to another user (uid {uid}): start your own with `cmdrd`, or point CMDR_SOCKET at your own socket", socket.display())]
    OtherUser { socket: PathBuf, uid: u32 },
    #[error("cmdrd did not answer within {0:?}")]
    Timeout(Duration),
    /// Unix: the socket's directory (or an ancestor) is not ours alone: whoever owns or
    /// can write it could have put their own daemon there.
    #[error(
        "refusing the socket directory {0}; remove it, or use a directory of your own (XDG_RUNTIME_DIR, CMDR_SOCKET)"
    )]
    UnsafeSocketDir(UnsafeDir),
    /// The system would not say who runs the process at the other end of the socket.
    #[error("cannot tell who runs the cmdrd at {}: {reason}", socket.display())]
    PeerUnknown { socket: PathBuf, reason: String },
}

/// A connection to cmdrd that has completed the handshake.
pub struct Client {
    socket: PathBuf,
    stream: Stream,
    decoder: FrameDecoder,
    next_id: u64,
    pending_events: VecDeque<Event>,
    welcome: Welcome,
    deadline: Duration,
}

impl Client {
    /// Connects and says hello within [`DEFAULT_DEADLINE`]; each request then has that
    /// deadline too. `client` names the program, e.g. `cmdrctl`.
    pub async fn connect(socket: &Path, client_name: &str) -> Result<Client, ClientError> {
        Client::connect_within(socket, client_name, DEFAULT_DEADLINE).await
    }

    /// Connects and says hello within `deadline`, which each request then gets as well.
    pub async fn connect_within(
        socket: &Path,
        client_name: &str,
        deadline: Duration,
    ) -> Result<Client, ClientError> {
        tokio::time::timeout(deadline, Client::handshake(socket, client_name, deadline))
            .await
            .map_err(|_| ClientError::Timeout(deadline))?
    }

    /// The deadline of each later request.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    async fn handshake(
        socket: &Path,
        client_name: &str,
        deadline: Duration,
    ) -> Result<Client, ClientError> {
        check_before_connect(socket)?;
        let name =
            socket
                .to_fs_name::<GenericFilePath>()
                .map_err(|source| ClientError::NotRunning {
                    socket: socket.to_owned(),
                    source,
                })?;
        let stream = Stream::connect(name).await.map_err(|source| {
            other_user(socket).unwrap_or_else(|| ClientError::NotRunning {
                socket: socket.to_owned(),
                source,
            })
        })?;
        check_daemon_user(&stream, socket)?;
        let mut client = Client {
            socket: socket.to_owned(),
            stream,
            decoder: FrameDecoder::with_max(Codec::Binary, MAX_REPLY_LEN),
            next_id: 1,
            pending_events: VecDeque::new(),
            welcome: Welcome {
                protocol: 0,
                daemon_version: String::new(),
                features: Vec::new(),
            },
            deadline,
        };
        let greeting = async {
            client
                .send(&ClientMessage::Hello(Hello {
                    protocol: PROTOCOL_VERSION,
                    client: client_name.to_owned(),
                    client_version: env!("CARGO_PKG_VERSION").to_owned(),
                }))
                .await?;
            client.read().await
        };
        let answer = match greeting.await {
            Err(ClientError::Closed) => Err(other_user(socket).unwrap_or(ClientError::Closed)),
            // A daemon whose listen queue is full never completed the connection.
            Err(ClientError::Io { socket, source })
                if source.kind() == io::ErrorKind::NotConnected =>
            {
                Err(ClientError::NotRunning { socket, source })
            }
            other => other,
        };
        match answer? {
            ServerMessage::Welcome(welcome) if welcome.protocol == PROTOCOL_VERSION => {
                client.welcome = welcome;
                Ok(client)
            }
            ServerMessage::Welcome(welcome) => Err(ClientError::Incompatible(format!(
                "cmdrd {} speaks protocol {}, this client speaks {PROTOCOL_VERSION}",
                welcome.daemon_version, welcome.protocol
            ))),
            ServerMessage::Refused { message } if message.contains("protocol") => {
                Err(ClientError::Incompatible(message))
            }
            ServerMessage::Refused { message } => Err(ClientError::Refused(message)),
            _ => Err(ClientError::Proto(ProtoError::Malformed(
                "expected a welcome".to_owned(),
            ))),
        }
    }

    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Sends a request and waits for its response, within the client's deadline (at least
    /// [`VALIDATE_DEADLINE`] for `validate`); events that arrive meanwhile are kept for
    /// [`Client::next_event`].
    pub async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let deadline = match request {
            Request::Validate { .. } => self.deadline.max(VALIDATE_DEADLINE),
            _ => self.deadline,
        };
        tokio::time::timeout(deadline, self.request_now(request))
            .await
            .map_err(|_| ClientError::Timeout(deadline))?
    }

    async fn request_now(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientMessage::Request { id, request }).await?;
        loop {
            match self.read().await? {
                ServerMessage::Response { id: got, outcome } if got == id => {
                    return match outcome {
                        Outcome::Ok(response) => Ok(response),
                        Outcome::Err(err) => Err(ClientError::Daemon(err)),
                    };
                }
                ServerMessage::Event(event) => self.pending_events.push_back(event),
                ServerMessage::Refused { message } => return Err(ClientError::Refused(message)),
                _ => {}
            }
        }
    }

    /// Sends `requests` pipelined, at most `window` unanswered at once (the daemon reads
    /// 32), and returns their answers in order, each within the deadline of the one before.
    pub async fn pipeline(
        &mut self,
        requests: Vec<Request>,
        window: usize,
    ) -> Result<Vec<Result<Response, ClientError>>, ClientError> {
        let (window, first, total) = (window.max(1), self.next_id, requests.len());
        let mut answers: Vec<Option<Result<Response, ClientError>>> =
            std::iter::repeat_with(|| None).take(total).collect();
        let mut queue = requests.into_iter();
        let (mut sent, mut done) = (0usize, 0usize);
        while done < total {
            while sent - done < window
                && let Some(request) = queue.next()
            {
                let id = self.next_id;
                self.next_id += 1;
                self.send(&ClientMessage::Request { id, request }).await?;
                sent += 1;
            }
            let deadline = self.deadline;
            let message = tokio::time::timeout(deadline, self.read())
                .await
                .map_err(|_| ClientError::Timeout(deadline))??;
            match message {
                ServerMessage::Response { id, outcome } if id >= first => {
                    let slot = usize::try_from(id - first)
                        .ok()
                        .and_then(|i| answers.get_mut(i));
                    if let Some(slot @ None) = slot {
                        *slot = Some(match outcome {
                            Outcome::Ok(response) => Ok(response),
                            Outcome::Err(err) => Err(ClientError::Daemon(err)),
                        });
                        done += 1;
                    }
                }
                ServerMessage::Event(event) => self.pending_events.push_back(event),
                ServerMessage::Refused { message } => return Err(ClientError::Refused(message)),
                _ => {}
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// Every profile, in name order: a page at a time from a daemon that pages (each page
    /// a request with its own deadline), else in one answer.
    pub async fn profiles(&mut self) -> Result<Vec<ProfileInfo>, ClientError> {
        self.list(
            Request::Profiles,
            Request::ProfilesPage,
            |response| match response {
                Response::Profiles(all) => Listed::All(all),
                Response::ProfilesPage(page) => Listed::Page(page),
                _ => Listed::Other,
            },
        )
        .await
    }

    /// Every account, in name order, like [`Client::profiles`].
    pub async fn accounts(&mut self) -> Result<Vec<AccountInfo>, ClientError> {
        self.list(
            Request::ListAccounts,
            Request::AccountsPage,
            |response| match response {
                Response::Accounts(all) => Listed::All(all),
                Response::AccountsPage(page) => Listed::Page(page),
                _ => Listed::Other,
            },
        )
        .await
    }

    /// A whole list: `whole` from a daemon without the `pages` feature, else `page`
    /// requests from the first page to the last. Each cursor must sort after the one
    /// before: a daemon that repeats a page is an error, not an endless loop.
    async fn list<T>(
        &mut self,
        whole: Request,
        page: fn(PageRequest) -> Request,
        listed: fn(Response) -> Listed<T>,
    ) -> Result<Vec<T>, ClientError> {
        let pages = self.welcome.features.iter().any(|f| f == FEATURE_PAGES);
        if !pages {
            return match listed(self.request(whole).await?) {
                Listed::All(all) => Ok(all),
                _ => Err(unexpected()),
            };
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let ask = PageRequest {
                after: after.clone(),
                limit: MAX_PAGE_ITEMS,
            };
            let Listed::Page(page) = listed(self.request(page(ask)).await?) else {
                return Err(unexpected());
            };
            all.extend(page.items);
            match page.next {
                None => return Ok(all),
                Some(next) if after.as_ref().is_none_or(|a| next > *a) => after = Some(next),
                Some(_) => {
                    return Err(ClientError::Proto(ProtoError::Malformed(
                        "the daemon's page cursor went backwards".to_owned(),
                    )));
                }
            }
        }
    }

    /// Subscribes this connection to events.
    pub async fn subscribe(&mut self) -> Result<(), ClientError> {
        self.request(Request::Subscribe).await.map(|_| ())
    }

    /// The next event; `Ok(None)` when the daemon closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(event) = self.pending_events.pop_front() {
            return Ok(Some(event));
        }
        loop {
            match self.read().await {
                Ok(ServerMessage::Event(event)) => return Ok(Some(event)),
                Ok(_) => {}
                Err(ClientError::Closed) => return Ok(None),
                Err(err) => return Err(err),
            }
        }
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        let frame = encode(Codec::Binary, message)?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|source| self.io_error(source))
    }

    async fn read(&mut self) -> Result<ServerMessage, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(message) = self.decoder.decode()? {
                return Ok(message);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|source| self.io_error(source))?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.decoder.extend(&chunk[..n]);
        }
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => ClientError::Closed,
            _ => ClientError::Io {
                socket: self.socket.clone(),
                source,
            },
        }
    }
}

/// What a list request was answered with.
enum Listed<T> {
    All(Vec<T>),
    Page(Page<T>),
    Other,
}

/// A list request answered with something else.
fn unexpected() -> ClientError {
    ClientError::Proto(ProtoError::Malformed(
        "the daemon answered a list request with another kind of answer".to_owned(),
    ))
}

#[cfg(all(test, windows))]
mod windows_tests {
    use super::*;

    #[test]
    fn pipe_named_after_the_user_sid() {
        let loc = default_socket_for(None);
        let sid = windows::current_user_sid().expect("sid");
        assert_eq!(loc.path, PathBuf::from(format!(r"\\.\pipe\cmdrd-{sid}")));
        assert_eq!(loc.note, None);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn socket_paths() {
        let loc = default_socket_for(Some(PathBuf::from("/run/user/1000")));
        if cfg!(target_os = "linux") {
            assert_eq!(loc.path, PathBuf::from("/run/user/1000/cmdr/cmdrd.sock"));
            assert_eq!(loc.note, None);
            let fallback = default_socket_for(None);
            assert!(fallback.path.starts_with("/tmp"), "{fallback:?}");
            assert!(fallback.note.is_some());
            // A relative XDG_RUNTIME_DIR is invalid per the spec: fall back.
            assert!(
                default_socket_for(Some(PathBuf::from("rel")))
                    .note
                    .is_some()
            );
        }
    }
}
