//! Handing out an account's credentials: the refusal codes, which profiles the daemon
//! resolves with the SDK's providers, the cache of what it resolved, and the clients
//! waiting for an answer (the socket's `Credentials`/`Serve` requests; the credentials
//! endpoint sends `Serve`).

use chrono::{DateTime, Utc};
use cmdr_core::{AccountState, Credentials, ProfileKind};
use cmdr_proto::{ErrorCode, ErrorReply, HandOut, Outcome, Response, path_to_wire};
use tokio::sync::oneshot;

/// Resolved credentials are resolved again this long before they end, so that nothing is
/// handed out that dies in a client's hands.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// Resolved credentials that do not say when they end are resolved again after this.
const UNDATED_FOR: chrono::Duration = chrono::Duration::minutes(15);

/// Profiles whose credentials are not in the files: the SDK's providers get them.
pub fn resolvable(kind: ProfileKind) -> bool {
    matches!(
        kind,
        ProfileKind::Sso
            | ProfileKind::AssumeRole
            | ProfileKind::CredentialProcess
            | ProfileKind::WebIdentity
    )
}

/// The error code of a refusal in `state` (the endpoint's `code`).
pub fn refusal_code(state: AccountState) -> ErrorCode {
    match state {
        AccountState::Changed => ErrorCode::Changed,
        AccountState::Expired => ErrorCode::Expired,
        AccountState::Missing => ErrorCode::Missing,
        AccountState::Invalid => ErrorCode::Invalid,
        AccountState::Misconfigured => ErrorCode::Misconfigured,
        AccountState::Ok | AccountState::Expiring | AccountState::Unvalidated => {
            ErrorCode::NotAccepted
        }
    }
}

/// What resolved credentials were resolved from: the account's accepted token and its
/// profile's properties. Either changing makes them stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub fingerprint: Option<String>,
    pub digest: u64,
}

pub struct Cached {
    pub key: CacheKey,
    pub credentials: Credentials,
    pub expires_at: Option<DateTime<Utc>>,
    pub resolved_at: DateTime<Utc>,
}

impl Cached {
    pub fn fresh(&self, key: &CacheKey, now: DateTime<Utc>) -> bool {
        let until = self
            .expires_at
            .map_or(self.resolved_at + UNDATED_FOR, |at| at - REFRESH_MARGIN);
        self.key == *key && now < until
    }
}

/// Everything of an answer but the keys and their expiry.
#[derive(Debug, Clone)]
pub struct Served {
    pub account: String,
    pub profile: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub account_id: Option<String>,
    pub expiry_source: String,
}

/// Where a process started for an account finds its credentials (`Request::ChildEnv`).
#[derive(Debug, Clone)]
pub struct ChildPaths {
    pub url: String,
    pub token_file: std::path::PathBuf,
    pub config_file: std::path::PathBuf,
    pub credentials_file: std::path::PathBuf,
    pub boto_config: std::path::PathBuf,
    pub user_config_file: std::path::PathBuf,
    pub user_credentials_file: std::path::PathBuf,
}

/// What a waiting client asked for.
enum Asked {
    /// The socket's old `Credentials` request: the old shape and codes.
    Legacy,
    Serve,
    /// The same checks, answered without the keys.
    Child(Box<ChildPaths>),
}

/// A client waiting for credentials.
pub struct Waiter {
    reply: oneshot::Sender<Outcome>,
    asked: Asked,
    /// Set while it waits for a resolution.
    served: Option<Served>,
}

impl Waiter {
    pub fn legacy(reply: oneshot::Sender<Outcome>) -> Waiter {
        Waiter {
            reply,
            asked: Asked::Legacy,
            served: None,
        }
    }

    pub fn serve(reply: oneshot::Sender<Outcome>) -> Waiter {
        Waiter {
            reply,
            asked: Asked::Serve,
            served: None,
        }
    }

    pub fn child(reply: oneshot::Sender<Outcome>, paths: ChildPaths) -> Waiter {
        Waiter {
            reply,
            asked: Asked::Child(Box::new(paths)),
            served: None,
        }
    }

    /// Keeps what the answer needs besides the keys, for when they are resolved.
    pub fn with(mut self, served: Served) -> Waiter {
        self.served = Some(served);
        self
    }

    pub fn refuse(self, mut error: ErrorReply) {
        if matches!(self.asked, Asked::Legacy)
            && matches!(
                error.code,
                ErrorCode::Changed
                    | ErrorCode::Expired
                    | ErrorCode::Missing
                    | ErrorCode::Invalid
                    | ErrorCode::Misconfigured
            )
        {
            // Clients of the old request know only the old code.
            error.code = ErrorCode::NotAccepted;
        }
        let _ = self.reply.send(Outcome::Err(error));
    }

    pub fn answer(self, served: &Served, credentials: &Credentials, expires_at: Option<String>) {
        let handout = || HandOut {
            account: served.account.clone(),
            profile: served.profile.clone(),
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
            session_token: credentials.session_token.clone(),
            region: served.region.clone(),
            endpoint: served.endpoint.clone(),
            expires_at: expires_at.clone(),
        };
        let response = match &self.asked {
            Asked::Legacy => Response::Credentials(handout()),
            Asked::Serve => Response::Served(cmdr_proto::Served {
                handout: handout(),
                expiry_source: served.expiry_source.clone(),
                account_id: served.account_id.clone(),
            }),
            Asked::Child(paths) => Response::ChildEnv(cmdr_proto::ChildEnv {
                account: served.account.clone(),
                url: paths.url.clone(),
                token_file: path_to_wire(&paths.token_file),
                config_file: path_to_wire(&paths.config_file),
                credentials_file: path_to_wire(&paths.credentials_file),
                boto_config: path_to_wire(&paths.boto_config),
                user_config_file: path_to_wire(&paths.user_config_file),
                user_credentials_file: path_to_wire(&paths.user_credentials_file),
                region: served.region.clone(),
                endpoint: served.endpoint.clone(),
                expires_at,
            }),
        };
        let _ = self.reply.send(Outcome::Ok(response));
    }

    /// Answers a waiter that was kept [`Waiter::with`] its answer.
    pub fn answer_pending(mut self, credentials: &Credentials, expires_at: Option<String>) {
        match self.served.take() {
            Some(served) => self.answer(&served, credentials, expires_at),
            None => self.refuse(ErrorReply {
                code: ErrorCode::Internal,
                message: "internal error: a resolution lost its request".to_owned(),
            }),
        }
    }
}
