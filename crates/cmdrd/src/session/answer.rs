//! The one place that maps protocol `Request`s to typed engine calls and their results to
//! `Response`s, with the compatibility rewrites for older clients.

use std::future::Future;
use std::pin::Pin;

use cmdr_core::{AccountPatch, NewAccount};
use cmdr_proto::path_to_wire;
use cmdr_proto::{AccountEdit, AccountSpec, ErrorCode, ErrorReply, Outcome, Request, Response};

use crate::engine::{EngineHandle, Pending};
use crate::handout::{ChildEnv, HandOut};
use crate::wire::{bad_request, on_change_from, target_from_spec, timestamp};

/// An answer to come.
pub type Answer = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Hands `request` to the engine now (so requests of one client are taken in the order
/// sent) and returns its answer to come.
pub async fn submit(engine: &EngineHandle, request: Request) -> Answer {
    match request {
        Request::Status => reply(engine.status().await, Response::Status),
        Request::Profiles => reply(engine.profiles().await, Response::Profiles),
        Request::ListAccounts => reply(engine.accounts().await, Response::Accounts),
        Request::ProfilesPage(page) => reply(
            engine.profiles_page(page.after, page.limit).await,
            Response::ProfilesPage,
        ),
        Request::AccountsPage(page) => reply(
            engine.accounts_page(page.after, page.limit).await,
            Response::AccountsPage,
        ),
        Request::ShowAccount { name } => reply(engine.show(name).await, Response::Account),
        Request::AccountDetail { name } => {
            reply(engine.detail(name).await, Response::AccountDetail)
        }
        Request::AddAccount(spec) => match new_account(spec) {
            Ok(new) => reply(engine.add(new).await, Response::Account),
            Err(err) => now(Outcome::Err(err)),
        },
        Request::EditAccount { name, edit } => match patch(edit) {
            Ok(patch) => reply(engine.edit(name, patch).await, Response::Account),
            Err(err) => now(Outcome::Err(err)),
        },
        Request::RemoveAccount { name } => reply(engine.remove(name).await, |()| Response::Done),
        Request::Accept { name } => {
            reply(engine.accept(name).await, |a| Response::Account(a.account))
        }
        Request::AcceptToken { name } => reply(engine.accept(name).await, |a| {
            Response::Accepted(cmdr_proto::Accepted {
                account: a.account,
                changed: a.changed,
            })
        }),
        Request::Validate { name } => reply(engine.validate(name).await, |identity| {
            Response::Validated(cmdr_proto::Identity {
                account_id: identity.account_id,
                arn: identity.arn,
                user_id: identity.user_id,
            })
        }),
        Request::Credentials { name, force } => {
            let pending = engine.hand_out(name, force).await;
            Box::pin(async move {
                match pending.answer().await {
                    Ok(handout) => Outcome::Ok(Response::Credentials(wire_handout(&handout))),
                    Err(err) => Outcome::Err(legacy(err)),
                }
            })
        }
        Request::Serve { name, force } => reply(engine.hand_out(name, force).await, |h| {
            Response::Served(cmdr_proto::Served {
                handout: wire_handout(&h),
                expiry_source: h.grant.expiry_source.clone(),
                account_id: h.grant.account_id.clone(),
            })
        }),
        Request::ChildEnv { name } => reply(engine.child_env(name).await, child_env),
        Request::ContainerEnv { name } => reply(engine.container_env(name).await, child_env),
        Request::RenewalsPage(page) => {
            reply(engine.renewals_page(page.after, page.limit).await, |p| {
                Response::RenewalsPage(cmdr_proto::Page {
                    items: p
                        .items
                        .into_iter()
                        .map(cmdr_proto::RenewalPlan::facts)
                        .collect(),
                    next: p.next,
                })
            })
        }
        Request::RenewalPlans(page) => reply(
            engine.renewals_page(page.after, page.limit).await,
            Response::RenewalPlans,
        ),
        Request::RenewNow { name } => reply(engine.renew_now(name).await, |r| {
            Response::Renewed(cmdr_proto::Renewed {
                account: r.account,
                expires_at: r.expires_at.map(timestamp),
            })
        }),
        Request::Subscribe | Request::Unsubscribe | Request::ConsoleUrl { .. } => now(
            Outcome::Err(bad_request("this request is handled by the session")),
        ),
    }
}

fn reply<T: Send + 'static>(
    pending: Pending<T>,
    into: impl FnOnce(T) -> Response + Send + 'static,
) -> Answer {
    Box::pin(async move {
        match pending.answer().await {
            Ok(value) => Outcome::Ok(into(value)),
            Err(err) => Outcome::Err(err),
        }
    })
}

fn now(outcome: Outcome) -> Answer {
    Box::pin(std::future::ready(outcome))
}

/// Clients of the old `Credentials` request know only the old refusal code.
fn legacy(mut error: ErrorReply) -> ErrorReply {
    if matches!(
        error.code,
        ErrorCode::Changed
            | ErrorCode::Expired
            | ErrorCode::Missing
            | ErrorCode::Invalid
            | ErrorCode::Misconfigured
    ) {
        error.code = ErrorCode::NotAccepted;
    }
    error
}

/// The keys as the protocol carries them; `expires_at` is the token's own expiry.
pub fn wire_handout(h: &HandOut) -> cmdr_proto::HandOut {
    cmdr_proto::HandOut {
        account: h.grant.account.clone(),
        profile: h.grant.profile.clone(),
        access_key_id: h.credentials.access_key_id.clone(),
        secret_access_key: h.credentials.secret_access_key.clone(),
        session_token: h.credentials.session_token.clone(),
        region: h.grant.region.clone(),
        endpoint: h.grant.endpoint.clone(),
        expires_at: h.expires_at.map(timestamp),
    }
}

fn new_account(spec: AccountSpec) -> Result<NewAccount, ErrorReply> {
    Ok(NewAccount {
        target: target_from_spec(&spec.target)?,
        on_change: on_change_from(spec.on_change)?,
        name: spec.name,
        profile: spec.profile,
        region: spec.region,
        portal: spec.portal,
    })
}

fn patch(edit: AccountEdit) -> Result<AccountPatch, ErrorReply> {
    Ok(AccountPatch {
        profile: edit.profile,
        region: if edit.clear_region {
            Some(None)
        } else {
            edit.region.map(Some)
        },
        target: edit.target.as_ref().map(target_from_spec).transpose()?,
        on_change: edit.on_change.map(on_change_from).transpose()?,
        portal: if edit.clear_portal {
            Some(None)
        } else {
            edit.portal.map(Some)
        },
        auto_renew: edit.auto_renew,
    })
}

fn child_env(env: ChildEnv) -> Response {
    let (paths, h) = (&env.paths, &env.handout);
    Response::ChildEnv(cmdr_proto::ChildEnv {
        account: h.grant.account.clone(),
        url: paths.url.clone(),
        token_file: path_to_wire(&paths.token_file),
        config_file: path_to_wire(&paths.config_file),
        credentials_file: path_to_wire(&paths.credentials_file),
        boto_config: path_to_wire(&paths.boto_config),
        user_config_file: path_to_wire(&paths.user_config_file),
        user_credentials_file: path_to_wire(&paths.user_credentials_file),
        region: h.grant.region.clone(),
        endpoint: h.grant.endpoint.clone(),
        expires_at: h.expires_at.map(timestamp),
    })
}
