//! What a signed-in portal grants: the cached token of an sso-session (refused with the
//! reason when missing or ended) and every account and role it lists (ListAccounts and
//! ListAccountRoles, each paged, the roles of several accounts asked at once).

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::{CachedToken, Portal, SigninError, cache, endpoint_override, sso_client};

/// Page size asked of ListAccounts / ListAccountRoles (the service's largest).
const PAGE: i32 = 100;
/// ListAccountRoles calls in flight at once: hundreds of accounts in seconds without
/// hammering the portal (the AWS CLI asks one at a time).
const IN_FLIGHT: usize = 8;

/// One role in one account, as the portal lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assignment {
    pub account_name: String,
    pub account_id: String,
    pub role: String,
}

/// Why the portal cannot be asked: no token, an ended one, or the portal's own answer.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("not signed in to {url} (sso-session {session}): run `cmdrctl login {session}` first")]
    NotSignedIn { session: String, url: String },
    #[error(
        "the sign-in to {url} (sso-session {session}) ended at {at}: run `cmdrctl login {session}`"
    )]
    Expired {
        session: String,
        url: String,
        at: String,
    },
    #[error(
        "{url} no longer accepts the sign-in of sso-session {session} (the portal session ended): run `cmdrctl login {session}`"
    )]
    Refused { session: String, url: String },
    #[error(transparent)]
    Signin(#[from] SigninError),
}

/// The cached access token of `portal`, if it is there and has not ended at `now`.
pub fn token(
    sso_cache: &Path,
    portal: &Portal,
    now: DateTime<Utc>,
) -> Result<CachedToken, PortalError> {
    let file = cache::path(sso_cache, &portal.session);
    let not_signed_in = || PortalError::NotSignedIn {
        session: portal.session.clone(),
        url: portal.start_url.clone(),
    };
    let token = cache::read(&file)
        .filter(|t| t.start_url == portal.start_url && !t.access_token.is_empty())
        .ok_or_else(not_signed_in)?;
    match cache::parse_timestamp(&token.expires_at) {
        Some(at) if at > now => Ok(token),
        _ => Err(PortalError::Expired {
            session: portal.session.clone(),
            url: portal.start_url.clone(),
            at: token.expires_at.clone(),
        }),
    }
}

/// Every account and role the token's portal grants, sorted by account name, id and role.
pub async fn assignments(
    portal: &Portal,
    token: &CachedToken,
) -> Result<Vec<Assignment>, PortalError> {
    let client = sso_client(&token.region);
    let endpoint = endpoint_override("SSO")
        .unwrap_or_else(|| format!("https://portal.sso.{}.amazonaws.com", token.region));
    let refused = || PortalError::Refused {
        session: portal.session.clone(),
        url: portal.start_url.clone(),
    };
    let accounts = client
        .list_accounts()
        .access_token(&token.access_token)
        .max_results(PAGE)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_unauthorized_exception())
            {
                refused()
            } else {
                crate::service(&endpoint, "list accounts", &e).into()
            }
        })?;
    let mut out = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = accounts.into_iter();
    loop {
        while tasks.len() < IN_FLIGHT
            && let Some(account) = pending.next()
        {
            let client = client.clone();
            let access = token.access_token.clone();
            tasks.spawn(async move {
                let id = account.account_id().unwrap_or_default().to_owned();
                let roles = client
                    .list_account_roles()
                    .access_token(access)
                    .account_id(&id)
                    .max_results(PAGE)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await;
                (account, roles)
            });
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (account, roles) =
            done.map_err(|e| SigninError::Flow(format!("listing roles failed: {e}")))?;
        let roles = roles.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_unauthorized_exception())
            {
                refused()
            } else {
                crate::service(&endpoint, "list account roles", &e).into()
            }
        })?;
        let id = account.account_id().unwrap_or_default();
        for role in roles {
            out.push(Assignment {
                account_id: id.to_owned(),
                account_name: account.account_name().unwrap_or(id).to_owned(),
                role: role.role_name().unwrap_or_default().to_owned(),
            });
        }
    }
    out.retain(|a| !a.account_id.is_empty() && !a.role.is_empty());
    out.sort();
    out.dedup();
    Ok(out)
}
