//! cmdr-proto: the wire contract between cmdrd and its clients. Messages, the one
//! [`PROTOCOL_VERSION`], and the two frame codecs. serde only, no I/O.
//!
//! A connection starts with the client's [`Hello`]; its first byte picks the codec for the
//! whole connection: `{` means JSON lines (one JSON object per `\n`-terminated line, for
//! editor plugins in any language), anything else means binary frames (a big-endian `u32`
//! length, then postcard). The daemon answers [`Welcome`] or [`ServerMessage::Refused`].

mod codec;
mod event;
mod kinds;
mod page;
mod renewal;

use serde::{Deserialize, Serialize};

pub use codec::{Codec, FrameDecoder, ProtoError, encode, encode_within};
pub use event::{EVENT_TYPES, Event, EventKind};
pub use kinds::{AccountState, FileHealth, FileKind, OnChange, ProfileKind, TargetKind};
pub use page::{FEATURE_PAGES, MAX_PAGE_ITEMS, PAGE_BUDGET, Page, PageRequest};
pub use renewal::{RenewalFacts, RenewalPlan, Renewed};

/// Bumped on any incompatible change. Within a version, changes are additive.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts, checked before allocating; what a client sends
/// (hello, requests) stays within it.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// The largest frame the daemon sends and a client accepts: answers grow with the files
/// and the accounts (100,000 profiles are ~10 MB). Beyond it the daemon sends an error
/// reply instead, never nothing.
pub const MAX_REPLY_LEN: usize = 64 << 20;

/// The first message on every connection. Its shape never changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub client: String,
    pub client_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub daemon_version: String,
    pub features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMessage {
    Hello(Hello),
    Request { id: u64, request: Request },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome(Welcome),
    /// The connection is refused (incompatible protocol, too many connections); it closes.
    Refused {
        message: String,
    },
    Response {
        id: u64,
        outcome: Outcome,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // built once per response, never stored in bulk
pub enum Outcome {
    Ok(Response),
    Err(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Status,
    Profiles,
    ListAccounts,
    ShowAccount {
        name: String,
    },
    AddAccount(AccountSpec),
    EditAccount {
        name: String,
        edit: AccountEdit,
    },
    RemoveAccount {
        name: String,
    },
    Accept {
        name: String,
    },
    /// Start receiving events on this connection.
    Subscribe,
    Unsubscribe,
    /// STS GetCallerIdentity with the account's credentials against its target.
    Validate {
        name: String,
    },
    /// The account's accepted credentials, for `env`, `exec` and `credential-process`.
    /// Refused while the account is `changed`, `expired`, `missing` or `invalid` unless
    /// `force`.
    Credentials {
        name: String,
        force: bool,
    },
    /// The account's accepted credentials with what a server of them needs (the
    /// credentials endpoint, `credential-process`): the token's own expiry and source and
    /// the AWS account id. Credentials of SSO, role and process profiles are resolved by
    /// the daemon. Refused with the state's error code.
    Serve {
        name: String,
        force: bool,
    },
    /// A page of `profiles`, for a list of any length (the daemon's feature `pages`).
    ProfilesPage(PageRequest),
    /// A page of `list_accounts`, likewise.
    AccountsPage(PageRequest),
    /// `show_account` with the reason for the account's state (`misconfigured`,
    /// `invalid`, …): answered with [`Response::AccountDetail`]. A request of its own, so
    /// that `AccountInfo`'s encoding (also inside lists) stays as older clients read it;
    /// an older daemon refuses it, and the client falls back to `show_account`.
    AccountDetail {
        name: String,
    },
    /// `accept`, answered with whether anything changed (the daemon's feature
    /// `accept_result`): the one rule for that is the daemon's.
    AcceptToken {
        name: String,
    },
    /// What a process needs to follow the account through the credentials endpoint, with
    /// no secret in it (the daemon's feature `child_env`): checked as `Serve` is.
    ChildEnv {
        name: String,
    },
    /// The AWS console's federation sign-in URL for the account's accepted session (the
    /// daemon's feature `console`). The answer is a bearer secret.
    ConsoleUrl {
        name: String,
    },
    /// What a container on the `cmdr` network needs to follow the account (the daemon's
    /// feature `container_env`), answered as `ChildEnv` with `url` on 169.254.170.2 and
    /// `token_file` in the directory its containers mount.
    ContainerEnv {
        name: String,
    },
    /// A page of how each account renews (the daemon's feature `renewals`): what
    /// `accounts list --json` adds to each `AccountInfo`, whose encoding stays as older
    /// clients read it.
    RenewalsPage(PageRequest),
    /// Fetch the account's credentials through its portal now (the daemon's feature
    /// `renew_now`): a pasted "Option 2" account is renewed, written and accepted; an SSO
    /// account's role credentials are fetched anew. Answered once done.
    RenewNow {
        name: String,
    },
    /// A page of how each account renews and when (the daemon's feature `renewal_plans`):
    /// `renewals_page` with `renews_at`, cmdrd's own judgement of whether an
    /// `expiring_soon` is an alarm.
    RenewalPlans(PageRequest),
}

/// The daemon answers `Request::RenewalPlans`.
pub const FEATURE_RENEWAL_PLANS: &str = "renewal_plans";
/// The daemon answers `Request::RenewalsPage`.
pub const FEATURE_RENEWALS: &str = "renewals";
/// The daemon answers `Request::RenewNow`.
pub const FEATURE_RENEW_NOW: &str = "renew_now";

/// The daemon answers `Request::ContainerEnv`.
pub const FEATURE_CONTAINER_ENV: &str = "container_env";

/// The daemon answers `Request::ConsoleUrl`.
pub const FEATURE_CONSOLE: &str = "console";

/// The daemon answers `Request::AcceptToken`.
pub const FEATURE_ACCEPT_RESULT: &str = "accept_result";
/// The daemon answers `Request::ChildEnv`.
pub const FEATURE_CHILD_ENV: &str = "child_env";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(StatusInfo),
    Profiles(Vec<ProfileInfo>),
    Accounts(Vec<AccountInfo>),
    Account(AccountInfo),
    Subscribed,
    Done,
    Validated(Identity),
    Credentials(HandOut),
    Served(Served),
    ProfilesPage(Page<ProfileInfo>),
    AccountsPage(Page<AccountInfo>),
    AccountDetail(AccountDetail),
    Accepted(Accepted),
    ChildEnv(ChildEnv),
    ConsoleUrl(ConsoleUrl),
    RenewalsPage(Page<RenewalFacts>),
    Renewed(Renewed),
    RenewalPlans(Page<RenewalPlan>),
}

/// A console sign-in URL: whoever holds it is signed in as the account for 15 minutes.
/// `Debug` is redacted and memory is zeroed on drop.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
pub struct ConsoleUrl {
    pub url: String,
}

impl std::fmt::Debug for ConsoleUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUrl").finish_non_exhaustive()
    }
}

/// The answer to `Request::AccountDetail`: the account as `show_account` gives it, and
/// why it is in its state, with the command that fixes it (`None` for `ok`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDetail {
    pub info: AccountInfo,
    pub reason: Option<String>,
    /// How the account renews itself, or why it cannot (`accounts show`). Last, with the
    /// two below, so older clients still read what they know.
    #[serde(default)]
    pub renewal: Option<String>,
    /// When the sign-in to the account's portal ends (its sso-session's token), while cmdrd
    /// keeps that portal: the second clock, beside `expires_at` of the role's token.
    #[serde(default)]
    pub signin_expires_at: Option<String>,
    /// Whether cmdrd renews the account's token itself (a portal profile, or a pasted
    /// "Option 2" block whose portal is known): an `expiring_soon` is then no alarm.
    #[serde(default)]
    pub auto_renew: bool,
}

/// The answer to `Request::AcceptToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub account: AccountInfo,
    /// Whether the account took a token (or an identity) it did not have: false means
    /// there was nothing to accept.
    pub changed: bool,
}

/// The answer to `Request::ChildEnv`: where a process started for one account gets its
/// credentials. No secret: the token is in `token_file`. Paths travel as bytes (a path
/// need not be UTF-8); see [`path_from_wire`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildEnv {
    pub account: String,
    /// The account's own URL on the endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub url: String,
    /// The account's own token, valid only at `url` and only while cmdrd holds its port
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
    pub token_file: Vec<u8>,
    /// The user's AWS files without any credential (`AWS_CONFIG_FILE`,
    /// `AWS_SHARED_CREDENTIALS_FILE`), so that no profile outranks the endpoint.
    pub config_file: Vec<u8>,
    pub credentials_file: Vec<u8>,
    /// An empty file for `BOTO_CONFIG`: botocore's boto-era files would outrank it too.
    pub boto_config: Vec<u8>,
    /// The user's own AWS files, as the daemon watches them (`CMDR_AWS_CONFIG_FILE`,
    /// `CMDR_AWS_SHARED_CREDENTIALS_FILE`), for cmdrctl run inside.
    pub user_config_file: Vec<u8>,
    pub user_credentials_file: Vec<u8>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// The accepted token's own expiry, RFC 3339 UTC.
    pub expires_at: Option<String>,
}

/// A path as it travels: its bytes on Unix, UTF-8 elsewhere.
pub fn path_to_wire(path: &std::path::Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The inverse of [`path_to_wire`].
pub fn path_from_wire(bytes: &[u8]) -> std::path::PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        std::path::PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// The answer to `Request::Serve`. `handout.expires_at` is the token's own expiry; what is
/// served caps it (`cmdr_core::expiry::served_until`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub handout: HandOut,
    /// `expiry_source` of `accounts list --json`.
    pub expiry_source: String,
    /// Once STS has told it.
    pub account_id: Option<String>,
}

/// Where the credentials endpoint listens; `status --json` shows it (null when disabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// `http://127.0.0.1:PORT/v1/credentials/`: append the percent-encoded account name.
    pub url: String,
    /// The directory of the tokens every request must carry in `Authorization`, one per
    /// account: append the account name (as for `url`).
    pub token_file: String,
    /// The URL it had before this start, when another program held that port: processes
    /// started with the old URL fail (their token is gone) until started again.
    #[serde(default)]
    pub moved_from: Option<String>,
    /// The same URLs for containers on the `cmdr` network (`http://169.254.170.2:PORT/…`),
    /// when the daemon serves them (Linux); see `cmdrctl container env`.
    #[serde(default)]
    pub gateway_url: Option<String>,
}

/// Secrets for one account. `Debug` is redacted and memory is zeroed on drop; it only
/// ever travels to a client of the same uid, in answer to `Request::Credentials`.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
pub struct HandOut {
    pub account: String,
    pub profile: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for HandOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandOut")
            .field("account", &self.account)
            .field("profile", &self.profile)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What STS says the credentials are. `validate --json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub account_id: String,
    pub arn: String,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    Exists,
    NoProfile,
    BadRequest,
    Internal,
    ValidationFailed,
    /// The account's credentials are not handed out in its current state.
    NotAccepted,
    /// Refusals of `Request::Serve`, one per account state that refuses.
    Changed,
    Expired,
    Missing,
    Invalid,
    Misconfigured,
    /// A code this build does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The name in JSON: `not_found`, `changed`, …
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Exists => "exists",
            ErrorCode::NoProfile => "no_profile",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Internal => "internal",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::NotAccepted => "not_accepted",
            ErrorCode::Changed => "changed",
            ErrorCode::Expired => "expired",
            ErrorCode::Missing => "missing",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Misconfigured => "misconfigured",
            ErrorCode::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

/// `aws`, `localstack` or `endpoint`, with the endpoint URL for the last two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub target: TargetKind,
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: TargetSpec,
    pub on_change: OnChange,
    /// The access portal, an http(s) URL; `None`: the profile's `sso_start_url`.
    #[serde(default)]
    pub portal: Option<String>,
}

/// Fields to change; `None` keeps the value. `clear_region` drops the region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEdit {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub clear_region: bool,
    pub target: Option<TargetSpec>,
    pub on_change: Option<OnChange>,
    #[serde(default)]
    pub portal: Option<String>,
    /// Drops the portal: back to the profile's `sso_start_url`.
    #[serde(default)]
    pub clear_portal: bool,
    /// `--auto-renew on|off`: whether cmdrd renews the account itself through its portal.
    #[serde(default)]
    pub auto_renew: Option<bool>,
}

/// One account, as `accounts list --json` prints it. Times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub name: String,
    pub profile: String,
    pub region: Option<String>,
    pub target: TargetKind,
    pub endpoint: Option<String>,
    pub on_change: OnChange,
    pub state: AccountState,
    pub fingerprint: Option<String>,
    pub accepted_fingerprint: Option<String>,
    pub accepted_at: Option<String>,
    pub expires_at: Option<String>,
    pub expiry_source: Option<String>,
    pub account_id: Option<String>,
    /// Where `renew` sends the user: `--portal`, else the profile's `sso_start_url`.
    #[serde(default)]
    pub portal: Option<String>,
    /// The bound profile's kind (`sso`, `session`, …; `None` while it is missing): `renew`
    /// runs `aws sso login` for `sso`.
    #[serde(default)]
    pub profile_kind: Option<ProfileKind>,
}

/// One profile, as `profiles --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub name: String,
    pub kind: ProfileKind,
    pub region: Option<String>,
    pub sources: Vec<String>,
    pub access_key_id: Option<String>,
    pub fingerprint: Option<String>,
    pub expires_at: Option<String>,
    pub expiry_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub daemon_version: String,
    pub protocol: u32,
    pub pid: u32,
    pub started_at: String,
    pub uptime_secs: u64,
    pub socket: String,
    /// Why the socket is not in the default place, if it is not.
    pub socket_note: Option<String>,
    pub files: Vec<FileStatus>,
    pub profiles: u32,
    pub accounts: Vec<StateCount>,
    /// What changed in the files while the daemon was not running, found at start.
    pub changes_while_down: Vec<String>,
    pub subscribers: u32,
    /// The credentials endpoint; `None` when disabled. Last, so that older clients
    /// decoding binary frames still read what they know.
    #[serde(default)]
    pub endpoint: Option<EndpointInfo>,
    /// What the user should know of their files and of the daemon (a `[default]` with
    /// keys, an endpoint that moved). Last, for the same reason as `endpoint`.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The IAM Identity Center portals cmdrd keeps signed in (one per sso-session).
    #[serde(default)]
    pub portals: Vec<PortalInfo>,
}

/// One portal (an `[sso-session]`), as `status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalInfo {
    pub session: String,
    pub start_url: String,
    pub region: String,
    /// When its access token ends (RFC 3339 UTC); `None`: not signed in.
    pub signed_in_until: Option<String>,
    /// Whether it has a refresh token cmdrd can renew it with.
    pub refreshable: bool,
    /// `signed_in`, `signin_required` or `signed_out`.
    pub state: String,
    /// Why a sign-in is required.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    pub kind: FileKind,
    pub path: String,
    pub exists: bool,
    pub health: FileHealth,
    pub error_line: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    pub state: AccountState,
    pub count: u32,
}
