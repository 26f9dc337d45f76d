//! Handing out an account's credentials: the refusal codes, which profiles the daemon
//! resolves with the SDK's providers, the cache of what it resolved, and the clients
//! waiting for an answer (the socket's `Credentials`/`Serve` requests; the credentials
//! endpoint sends `Serve`).

use chrono::{DateTime, Utc};
use cmdr_core::{AccountState, Credentials, ProfileKind};
use cmdr_proto::{ErrorCode, ErrorReply, HandOut, Outcome, Response};
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

/// A client waiting for credentials: one of the socket's old `Credentials` requests
/// (answered with the old shape and codes) or a `Serve` request.
pub struct Waiter {
    reply: oneshot::Sender<Outcome>,
    legacy: bool,
    /// Set while it waits for a resolution.
    served: Option<Served>,
}

impl Waiter {
    pub fn legacy(reply: oneshot::Sender<Outcome>) -> Waiter {
        Waiter {
            reply,
            legacy: true,
            served: None,
        }
    }

    pub fn serve(reply: oneshot::Sender<Outcome>) -> Waiter {
        Waiter {
            reply,
            legacy: false,
            served: None,
        }
    }

    /// Keeps what the answer needs besides the keys, for when they are resolved.
    pub fn with(mut self, served: Served) -> Waiter {
        self.served = Some(served);
        self
    }

    pub fn refuse(self, mut error: ErrorReply) {
        if self.legacy
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
        let handout = HandOut {
            account: served.account.clone(),
            profile: served.profile.clone(),
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
            session_token: credentials.session_token.clone(),
            region: served.region.clone(),
            endpoint: served.endpoint.clone(),
            expires_at,
        };
        let response = if self.legacy {
            Response::Credentials(handout)
        } else {
            Response::Served(cmdr_proto::Served {
                handout,
                expiry_source: served.expiry_source.clone(),
                account_id: served.account_id.clone(),
            })
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
