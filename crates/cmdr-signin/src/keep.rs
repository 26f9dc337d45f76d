//! What keeping a portal signed in asks of IAM Identity Center, without a person: a fresh
//! access token from the refresh token (CreateToken, grant `refresh_token`) and a role's
//! credentials (GetRoleCredentials). Used by cmdrd's portal keeper; never prints a secret.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{CachedToken, cache, endpoint_override, oidc_client, oidc_endpoint, sso_client};

/// Why a refresh gave no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// The portal session ended: the service refused the refresh token or the client
    /// registration. Only a person can sign in again.
    Refused(String),
    /// The token has no refresh token (or no client registration to use it with).
    NotRefreshable,
    /// The service could not be reached or failed: try again later.
    Failed(String),
}

/// The access token after a refresh: `old` with the new access token, its end and (when
/// the service rotated it) the new refresh token; the client registration is kept.
pub async fn refresh(old: &CachedToken, timeout: Duration) -> Result<CachedToken, RefreshError> {
    let (Some(client_id), Some(client_secret), Some(refresh_token)) = (
        old.client_id.as_deref(),
        old.client_secret.as_deref(),
        old.refresh_token.as_deref().filter(|t| !t.is_empty()),
    ) else {
        return Err(RefreshError::NotRefreshable);
    };
    let endpoint = oidc_endpoint(&old.region);
    let call = oidc_client(&old.region)
        .create_token()
        .client_id(client_id)
        .client_secret(client_secret)
        .grant_type("refresh_token")
        .refresh_token(refresh_token)
        .send();
    let out = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(RefreshError::Failed(format!("{endpoint}: timed out"))),
        Ok(Err(e)) => {
            let refused = e.as_service_error().is_some_and(|s| {
                s.is_invalid_grant_exception()
                    || s.is_invalid_client_exception()
                    || s.is_unauthorized_client_exception()
                    || s.is_expired_token_exception()
                    || s.is_access_denied_exception()
            });
            let why = crate::service(&endpoint, "create token", &e).to_string();
            return Err(if refused {
                RefreshError::Refused(why)
            } else {
                RefreshError::Failed(why)
            });
        }
        Ok(Ok(out)) => out,
    };
    let Some(access) = out.access_token().filter(|t| !t.is_empty()) else {
        return Err(RefreshError::Failed(format!(
            "{endpoint}: create token: no access token in the answer"
        )));
    };
    let expires = Utc::now() + chrono::Duration::seconds(i64::from(out.expires_in()));
    Ok(CachedToken {
        access_token: access.to_owned(),
        expires_at: cache::timestamp(expires),
        refresh_token: out
            .refresh_token()
            .map(str::to_owned)
            .or_else(|| old.refresh_token.clone()),
        ..old.clone()
    })
}

/// A role's credentials from the portal. `Debug` redacts the secrets.
#[derive(Clone)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why the portal gave no role credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleError {
    /// The access token is not (or no longer) good.
    Unauthorized(String),
    /// The sign-in has no access to this account and role.
    Forbidden(String),
    Failed(String),
}

/// GetRoleCredentials of `account_id`/`role` with the access token of a portal in `region`.
pub async fn role_credentials(
    region: &str,
    access_token: &str,
    account_id: &str,
    role: &str,
    timeout: Duration,
) -> Result<RoleCredentials, RoleError> {
    let endpoint = endpoint_override("SSO")
        .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com"));
    let call = sso_client(region)
        .get_role_credentials()
        .access_token(access_token)
        .account_id(account_id)
        .role_name(role)
        .send();
    let out = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(RoleError::Failed(format!("{endpoint}: timed out"))),
        Ok(Err(e)) => {
            let why = crate::service(&endpoint, "get role credentials", &e).to_string();
            return Err(match e.as_service_error() {
                Some(s) if s.is_unauthorized_exception() => RoleError::Unauthorized(why),
                Some(s) if s.is_resource_not_found_exception() => RoleError::Forbidden(why),
                _ if why.contains("forbidden") => RoleError::Forbidden(why),
                _ => RoleError::Failed(why),
            });
        }
        Ok(Ok(out)) => out,
    };
    let Some(c) = out.role_credentials() else {
        return Err(RoleError::Failed(format!(
            "{endpoint}: get role credentials: no credentials in the answer"
        )));
    };
    let (Some(id), Some(secret), Some(token)) =
        (c.access_key_id(), c.secret_access_key(), c.session_token())
    else {
        return Err(RoleError::Failed(format!(
            "{endpoint}: get role credentials: incomplete credentials in the answer"
        )));
    };
    let expires_at = DateTime::from_timestamp_millis(c.expiration()).unwrap_or_else(Utc::now);
    Ok(RoleCredentials {
        access_key_id: id.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: token.to_owned(),
        expires_at,
    })
}
