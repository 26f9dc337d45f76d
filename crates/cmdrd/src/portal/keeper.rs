//! One portal's keeper: holds its access token, refreshes it with the refresh token a few
//! minutes before it ends (one refresh at a time, since every request waits in this one
//! task), writes the SSO cache file as the AWS CLI v2 does (atomic, 0600), ignores its own
//! writes, adopts a token another program wrote (`aws sso login`, botocore) instead of
//! fighting it, asks a person (`signin_required`) only once the portal session really
//! ended, and fetches role credentials with the token, cached per role.
//!
//! Deadlines are wall-clock times; the keeper sleeps until the next one, but at most
//! [`crate::timers::MAX_SLEEP`], so a laptop waking from sleep refreshes soon after.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cmdr_proto::PortalInfo;
use cmdr_signin::CachedToken;
use cmdr_signin::cache;
use cmdr_signin::keep::{self, RefreshError, RoleCredentials, RoleError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Ask, Kept, News, Spec};
use crate::timers::{self, Clock};
use crate::validate::Failure;
use crate::wire::timestamp;

/// Refresh this long before the token ends, at most: "a few minutes" …
const REFRESH_BEFORE: chrono::Duration = chrono::Duration::minutes(10);
/// … and at most this share of its lifetime, so a short token is not refreshed the moment
/// it arrives.
const REFRESH_SHARE: i32 = 3;
/// A refresh that failed for want of the service is tried again after this, doubling.
const RETRY_FIRST: chrono::Duration = chrono::Duration::seconds(15);
const RETRY_MAX: chrono::Duration = chrono::Duration::minutes(5);
/// Role credentials are fetched again this long before they end, at most (and at most a
/// third of their lifetime).
const ROLE_MARGIN: chrono::Duration = chrono::Duration::minutes(5);
/// After the session ended, cached role credentials are served until this long before
/// they end.
const ENDED_MARGIN: chrono::Duration = chrono::Duration::seconds(15);

pub(super) struct Keeper {
    spec: Spec,
    file: PathBuf,
    token: Option<CachedToken>,
    /// When the current token was obtained (our refresh) or first seen (someone's write).
    since: DateTime<Utc>,
    /// The file's bytes as last known (our write, or what we adopted).
    basis: Option<Vec<u8>>,
    /// Why only a person can sign in again; `signin_required` was sent for it.
    ended: Option<String>,
    retry_at: Option<DateTime<Utc>>,
    retry_delay: chrono::Duration,
    roles: HashMap<(String, String), (RoleCredentials, DateTime<Utc>)>,
    asks: mpsc::Receiver<Ask>,
    news: mpsc::Sender<News>,
    info: watch::Sender<Kept>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

/// What `status` shows of a portal.
pub(super) fn info_of(spec: &Spec, token: Option<&CachedToken>, ended: Option<&str>) -> PortalInfo {
    let state = match (token, ended) {
        (_, Some(_)) => "signin_required",
        (Some(_), None) => "signed_in",
        (None, None) => "signed_out",
    };
    PortalInfo {
        session: spec.session.clone(),
        start_url: spec.start_url.clone(),
        region: spec.region.clone(),
        // An ended session is signed in until nothing: its token is kept only to tell a
        // newer one from an older one.
        signed_in_until: token
            .filter(|_| ended.is_none())
            .and_then(|t| cache::parse_timestamp(&t.expires_at))
            .map(timestamp),
        refreshable: ended.is_none() && token.is_some_and(refreshable),
        state: state.to_owned(),
        reason: ended.map(str::to_owned),
    }
}

fn refreshable(token: &CachedToken) -> bool {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    set(&token.refresh_token) && set(&token.client_id) && set(&token.client_secret)
}

fn expires(token: &CachedToken) -> Option<DateTime<Utc>> {
    cache::parse_timestamp(&token.expires_at)
}

impl Keeper {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        spec: Spec,
        file: PathBuf,
        bytes: Option<Vec<u8>>,
        asks: mpsc::Receiver<Ask>,
        news: mpsc::Sender<News>,
        info: watch::Sender<Kept>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Keeper {
        let since = clock.now();
        let mut keeper = Keeper {
            spec,
            file,
            token: None,
            since,
            basis: None,
            ended: None,
            retry_at: None,
            retry_delay: RETRY_FIRST,
            roles: HashMap::new(),
            asks,
            news,
            info,
            clock,
            timeout,
        };
        keeper.adopt_bytes(bytes, false);
        keeper
    }

    pub(super) async fn run(mut self, cancel: CancellationToken) {
        tracing::debug!(session = %self.spec.session, "portal keeper started");
        // What it holds from the start (a sign-in that made this portal known), not only
        // after its first turn.
        self.publish();
        loop {
            let now = self.clock.now();
            let sleep = self.deadline().map(|d| timers::sleep_for(d, now));
            tokio::select! {
                () = cancel.cancelled() => break,
                ask = self.asks.recv() => match ask {
                    None => break,
                    Some(Ask::File(bytes)) => self.file_changed(bytes).await,
                    Some(Ask::Role { account_id, role, min_valid, reply }) => {
                        let answer = self.role(&account_id, &role, min_valid).await;
                        // What the fetch learnt (a session found ended) is known before
                        // the answer: whoever was refused can ask why at once.
                        self.publish();
                        let _ = reply.send(answer);
                    }
                },
                () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {
                    if self.deadline().is_some_and(|d| d <= self.clock.now()) {
                        self.due().await;
                    }
                }
            }
            self.publish();
        }
        tracing::debug!(session = %self.spec.session, "portal keeper stopped");
    }

    fn publish(&self) {
        let refresh_at = self
            .deadline()
            .filter(|_| self.token.as_ref().is_some_and(refreshable));
        let info = Kept {
            info: info_of(&self.spec, self.token.as_ref(), self.ended.as_deref()),
            refresh_at,
        };
        self.info.send_if_modified(|old| {
            let changed = *old != info;
            *old = info;
            changed
        });
    }

    /// When the keeper must act next: refresh (or retry it), or, for a token that cannot
    /// be refreshed, notice its end.
    fn deadline(&self) -> Option<DateTime<Utc>> {
        if self.ended.is_some() {
            return None;
        }
        let token = self.token.as_ref()?;
        let end = expires(token)?;
        if let Some(retry) = self.retry_at {
            return Some(retry.min(end));
        }
        if !refreshable(token) {
            return Some(end);
        }
        let lifetime = end - self.since;
        let margin = REFRESH_BEFORE.min(lifetime / REFRESH_SHARE);
        Some(end - margin.max(chrono::Duration::zero()))
    }

    async fn due(&mut self) {
        let Some(token) = self.token.clone() else {
            return;
        };
        if refreshable(&token) {
            self.refresh().await;
        } else if expires(&token).is_none_or(|end| end <= self.clock.now()) {
            self.end("the sign-in ended and has no refresh token to renew it with".to_owned())
                .await;
        }
    }

    /// Refreshes the token once; adopts another program's newer token instead when one
    /// appeared meanwhile.
    async fn refresh(&mut self) {
        let Some(old) = self.token.clone() else {
            return;
        };
        // Signed out since (`logout` removed the file): the refresh token is not used.
        if self.file_removed().await {
            return;
        }
        tracing::debug!(session = %self.spec.session, "refreshing the portal's access token");
        let result = keep::refresh(&old, self.timeout).await;
        // Another program (botocore, `aws sso login`) may have written the file while the
        // refresh ran: its token wins over ours (its refresh token may have rotated ours
        // away), and we never overwrite it.
        if self.theirs_appeared().await {
            return;
        }
        match result {
            Ok(new) => {
                let bytes = match serde_json::to_vec(&new) {
                    Ok(b) => b,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot encode the SSO token");
                        return;
                    }
                };
                if let Err(err) = cmdr_config::write_atomic(&self.file, &bytes, 0o600) {
                    tracing::warn!(path = %self.file.display(), error = %err, "cannot write the refreshed SSO token; keeping it in memory");
                }
                tracing::info!(session = %self.spec.session, expires_at = %new.expires_at, "portal token refreshed");
                self.basis = Some(bytes);
                self.token = Some(new);
                self.since = self.clock.now();
                self.retry_at = None;
                self.retry_delay = RETRY_FIRST;
            }
            Err(RefreshError::Refused(why)) => {
                self.end(format!("the portal refused to renew the sign-in ({why})"))
                    .await;
            }
            Err(RefreshError::NotRefreshable) => {
                if expires(&old).is_none_or(|end| end <= self.clock.now()) {
                    self.end("the sign-in ended and has no refresh token to renew it with".into())
                        .await;
                }
            }
            Err(RefreshError::Failed(why)) => {
                let now = self.clock.now();
                tracing::warn!(session = %self.spec.session, error = %why, retry_in_secs = self.retry_delay.num_seconds(), "cannot refresh the portal's token; will try again");
                self.retry_at = Some(now + self.retry_delay);
                self.retry_delay = (self.retry_delay * 2).min(RETRY_MAX);
            }
        }
    }

    /// Whether the token file we knew is gone (`cmdrctl logout`, `aws sso logout`): then the
    /// keeper is signed out at once, before the watcher's news of it arrives, and keeps no
    /// refresh token to bring the sign-in back with.
    async fn file_removed(&mut self) -> bool {
        let gone =
            std::fs::metadata(&self.file).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if self.basis.is_none() || !gone {
            return false;
        }
        self.file_changed(None).await;
        true
    }

    /// Reads the token file: if another program wrote a usable token of this portal since
    /// we last knew it, adopts it and says so.
    async fn theirs_appeared(&mut self) -> bool {
        let bytes = cmdr_config::userfile::read_bounded(&self.file, 1 << 20).ok();
        if bytes.is_none() && self.file_removed().await {
            // Removed while the refresh ran (`logout`): never written back.
            return true;
        }
        if bytes.is_none() || bytes == self.basis {
            return false;
        }
        let before = self.token.as_ref().map(|t| t.access_token.clone());
        self.file_changed(bytes).await;
        self.token.as_ref().map(|t| t.access_token.clone()) != before
    }

    async fn end(&mut self, reason: String) {
        if self.ended.is_some() {
            return;
        }
        tracing::warn!(session = %self.spec.session, reason = %reason, "the portal session ended; a sign-in is required");
        // Role credentials already fetched stay valid until they end (a session's end does
        // not revoke them, and botocore keeps using its own): they are served until then.
        self.ended = Some(reason.clone());
        let _ = self
            .news
            .send(News::SigninRequired {
                session: self.spec.session.clone(),
                portal: self.spec.start_url.clone(),
                reason,
            })
            .await;
    }

    async fn file_changed(&mut self, bytes: Option<Vec<u8>>) {
        if bytes.is_some() && bytes == self.basis {
            return; // our own write, or nothing new
        }
        if self.adopt_bytes(bytes, true) {
            let _ = self
                .news
                .send(News::SignedIn {
                    session: self.spec.session.clone(),
                    portal: self.spec.start_url.clone(),
                })
                .await;
        }
    }

    /// Takes the token in `bytes` if it is this portal's and not older than ours. Returns
    /// whether this is a new sign-in after the session had ended or was signed out.
    fn adopt_bytes(&mut self, bytes: Option<Vec<u8>>, live: bool) -> bool {
        let Some(bytes) = bytes else {
            if self.token.take().is_some() {
                tracing::info!(session = %self.spec.session, "the portal's token file is gone (signed out)");
            }
            self.basis = None;
            self.roles.clear();
            self.retry_at = None;
            return false;
        };
        let parsed = serde_json::from_slice::<CachedToken>(&bytes)
            .ok()
            .filter(|t| {
                t.start_url.trim_end_matches('/') == self.spec.start_url.trim_end_matches('/')
            })
            .filter(|t| !t.access_token.is_empty());
        let Some(theirs) = parsed else {
            return false;
        };
        if let Some(ours) = &self.token
            && theirs.access_token != ours.access_token
            && expires(&theirs) < expires(ours)
        {
            tracing::debug!(session = %self.spec.session, "ignoring an older token in the cache file");
            return false;
        }
        let now = self.clock.now();
        let usable = expires(&theirs).is_some_and(|end| end > now);
        let was_out = self.token.is_none() || self.ended.is_some();
        let new_token = self
            .token
            .as_ref()
            .is_none_or(|t| t.access_token != theirs.access_token);
        self.basis = Some(bytes);
        if new_token {
            self.since = now;
            self.retry_at = None;
            self.retry_delay = RETRY_FIRST;
            if live {
                tracing::info!(session = %self.spec.session, expires_at = %theirs.expires_at, "picked up a token another program wrote");
            }
        }
        self.token = Some(theirs);
        if usable && new_token && was_out {
            self.ended = None;
            return live;
        }
        false
    }

    /// A role's credentials: cached ones while they last, else GetRoleCredentials with the
    /// token (refreshed first when it has ended and can be).
    async fn role(
        &mut self,
        account_id: &str,
        role: &str,
        min_valid: chrono::Duration,
    ) -> Result<RoleCredentials, Failure> {
        let key = (account_id.to_owned(), role.to_owned());
        let now = self.clock.now();
        if let Some((creds, fetched)) = self.roles.get(&key) {
            let margin = ROLE_MARGIN
                .min((creds.expires_at - *fetched) / 3)
                .max(min_valid);
            if now < creds.expires_at - margin {
                return Ok(creds.clone());
            }
            // Nothing newer can be fetched until a sign-in: what is left of these is
            // better than a refusal (running tools keep working until they end).
            // Not for a renewal, which needs them to last `min_valid`: it would write
            // what it has already.
            if self.ended.is_some() && now < creds.expires_at - ENDED_MARGIN.max(min_valid) {
                return Ok(creds.clone());
            }
        }
        let session = self.spec.session.clone();
        let url = self.spec.start_url.clone();
        if let Some(why) = &self.ended {
            return Err(Failure::Misconfigured(format!(
                "the sign-in to {url} (sso-session {session}) ended: {why}; run `cmdrctl login {session}`"
            )));
        }
        let Some(token) = self.token.clone() else {
            return Err(Failure::Misconfigured(format!(
                "not signed in to {url} (sso-session {session}): run `cmdrctl login {session}`"
            )));
        };
        let near_end = expires(&token).is_none_or(|end| end <= now + chrono::Duration::seconds(30));
        if near_end {
            if refreshable(&token) {
                self.refresh().await;
            } else {
                self.end("the sign-in ended and has no refresh token to renew it with".into())
                    .await;
            }
        }
        let mut refreshed = near_end;
        loop {
            if let Some(why) = &self.ended {
                return Err(Failure::Misconfigured(format!(
                    "the sign-in to {url} (sso-session {session}) ended: {why}; run `cmdrctl login {session}`"
                )));
            }
            let Some(token) = self.token.clone() else {
                return Err(Failure::Misconfigured(format!(
                    "not signed in to {url} (sso-session {session}): run `cmdrctl login {session}`"
                )));
            };
            let answer = keep::role_credentials(
                &token.region,
                &token.access_token,
                account_id,
                role,
                self.timeout,
            )
            .await;
            match answer {
                Ok(creds) => {
                    tracing::debug!(session = %session, account_id, role, "role credentials from the portal");
                    self.roles.insert(key, (creds.clone(), self.clock.now()));
                    return Ok(creds);
                }
                Err(RoleError::Unauthorized(why)) => {
                    if !refreshed && refreshable(&token) {
                        refreshed = true;
                        self.refresh().await;
                        continue;
                    }
                    if !refreshable(&token) {
                        self.end(format!("the portal no longer accepts the sign-in ({why})"))
                            .await;
                    }
                    return Err(Failure::Misconfigured(format!(
                        "{url} (sso-session {session}) refused the sign-in: run `cmdrctl login {session}`"
                    )));
                }
                Err(RoleError::Forbidden(why)) => return Err(Failure::Misconfigured(why)),
                Err(RoleError::Failed(why)) => return Err(Failure::Unreachable(why)),
            }
        }
    }
}
