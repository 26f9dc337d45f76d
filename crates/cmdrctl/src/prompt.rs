//! `cmdrctl prompt`: one request, one short line. Silent (exit 3) when the daemon is down
//! or does not answer within 200 ms, silent (exit 0) when nothing is bound; never parses a
//! file. It shows the account of this shell (`CMDR_ACCOUNT`, set by `env`/`exec`), else the
//! one expiring first; `--all` every one.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use cmdr_client::{Client, ClientError};
use cmdr_proto::{AccountInfo, AccountState, Request, Response};
use serde::Serialize;

/// Which accounts the prompt shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<'a> {
    Named(&'a str),
    ExpiringFirst,
    All,
}

/// One account as `prompt --json` prints it.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    account: &'a str,
    state: &'a str,
    expires_at: Option<&'a str>,
    left: String,
    /// When the sign-in to the account's portal ends, while cmdrd keeps it (absent
    /// otherwise, so the documented shape is unchanged for other accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    signin_expires_at: Option<&'a str>,
    /// The account renews itself through a portal that needs a sign-in first (absent when
    /// false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    signin_needed: bool,
}

/// How the shown accounts renew: one page of one for a single account, else every page
/// (nothing from a daemon older than `renewals_page`).
async fn signin_facts(
    client: &mut Client,
    shown: &[&AccountInfo],
) -> Result<Vec<cmdr_proto::RenewalFacts>, ClientError> {
    let knows = client
        .welcome()
        .features
        .iter()
        .any(|f| f == cmdr_proto::FEATURE_RENEWALS);
    if !knows {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    let (mut after, limit) = match shown {
        [one] => (Some(crate::renew::before(&one.name)), 1),
        _ => (None, cmdr_proto::MAX_PAGE_ITEMS),
    };
    loop {
        let ask = cmdr_proto::PageRequest {
            after: after.clone(),
            limit,
        };
        let Response::RenewalsPage(page) = client.request(Request::RenewalsPage(ask)).await? else {
            return Ok(all);
        };
        all.extend(page.items);
        match page.next {
            Some(next) if limit > 1 && after.as_ref().is_none_or(|a| next > *a) => {
                after = Some(next);
            }
            _ => return Ok(all),
        }
    }
}

pub async fn run(socket: &Path, pick: Pick<'_>, format: &str, json: bool) -> ExitCode {
    // It runs at every shell prompt: a stopped or stuck daemon costs 200 ms in all (connect,
    // hello and requests), silently. The account of this shell is one small answer;
    // otherwise every account, in pages.
    let budget = cmdr_client::PROMPT_DEADLINE;
    let started = std::time::Instant::now();
    let fetched = cmdr_client::within(budget, async {
        let mut client = Client::connect_within(socket, "cmdrctl-prompt", budget).await?;
        Ok(match pick {
            Pick::Named(name) => {
                let request = Request::ShowAccount {
                    name: name.to_owned(),
                };
                // An account the daemon cannot show (gone, renamed) shows nothing.
                match client.request(request).await {
                    Ok(Response::Account(account)) => Ok(vec![account]),
                    Ok(_) | Err(ClientError::Daemon(_)) => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            }
            Pick::ExpiringFirst | Pick::All => client.accounts().await,
        }
        .map(|accounts| (accounts, client)))
    })
    .await;
    let (accounts, mut client) = match fetched {
        Ok(Ok(fetched)) => fetched,
        // Not reachable, or out of time.
        Err(_) | Ok(Err(ClientError::Timeout(_))) => return ExitCode::from(3),
        Ok(Err(_)) => return ExitCode::from(1),
    };
    let now = Utc::now();
    let shown = select(&accounts, pick);
    // The portal's clock, for the shown accounts whose sign-in ends before their token:
    // one more small answer on the same connection, within what is left of the budget.
    let facts = match shown.as_slice() {
        [] => Vec::new(),
        _ => cmdr_client::within(
            budget.saturating_sub(started.elapsed()),
            signin_facts(&mut client, &shown),
        )
        .await
        .unwrap_or_default(),
    };
    let plans: Vec<cmdr_proto::RenewalPlan> = facts
        .into_iter()
        .map(cmdr_proto::RenewalPlan::from_facts)
        .collect();
    let fact = |a: &AccountInfo| plans.iter().find(|f| f.account == a.name);
    let needs_signin = |a: &AccountInfo| fact(a).is_some_and(|p| p.auto_renew && p.signin_needed());
    if json {
        let entries: Vec<Entry<'_>> = shown
            .iter()
            .map(|a| Entry {
                account: &a.name,
                state: a.state.label(),
                expires_at: a.expires_at.as_deref(),
                left: left(a, now),
                signin_expires_at: fact(a).and_then(|f| f.signin_expires_at.as_deref()),
                signin_needed: needs_signin(a),
            })
            .collect();
        crate::output::print_json(&entries);
        return ExitCode::SUCCESS;
    }
    let parts: Vec<String> = shown
        .iter()
        .map(|a| {
            let shown = render(a, format, now);
            let note = if needs_signin(a) {
                Some("sign-in needed".to_owned())
            } else {
                crate::output::signin_first(a, fact(a), now)
            };
            match note {
                Some(signin) if !shown.is_empty() => format!("{shown} ({signin})"),
                _ => shown,
            }
        })
        .collect();
    if !parts.is_empty() {
        println!("{}", parts.join(" "));
    }
    ExitCode::SUCCESS
}

/// The named account; or the one whose accepted token ends first (accounts without an
/// expiry after those with one, then by name); or all, in name order.
fn select<'a>(accounts: &'a [AccountInfo], pick: Pick<'_>) -> Vec<&'a AccountInfo> {
    match pick {
        Pick::All => accounts.iter().collect(),
        Pick::Named(name) => accounts.iter().filter(|a| a.name == name).collect(),
        Pick::ExpiringFirst => accounts
            .iter()
            .min_by_key(|a| {
                let at = a
                    .expires_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                (at.is_none(), at, a.name.clone())
            })
            .into_iter()
            .collect(),
    }
}

/// `3h12m`, `EXPIRED`, or the state when it needs attention; empty when unknown.
pub fn left(account: &AccountInfo, now: DateTime<Utc>) -> String {
    match account.state {
        AccountState::Changed => return "CHANGED".to_owned(),
        AccountState::Missing => return "MISSING".to_owned(),
        AccountState::Invalid => return "INVALID".to_owned(),
        AccountState::Expired => return "EXPIRED".to_owned(),
        AccountState::Misconfigured => return "MISCONFIGURED".to_owned(),
        _ => {}
    }
    let Some(remaining) = crate::output::remaining(account.expires_at.as_deref(), now) else {
        return String::new();
    };
    if remaining <= chrono::Duration::zero() {
        "EXPIRED".to_owned()
    } else {
        cmdr_core::format_duration(remaining)
    }
}

/// The fields a `--format` template may hold, as `{field}`.
pub const FIELDS: [&str; 5] = ["account", "left", "state", "profile", "region"];

/// The user's format is theirs (it may hold colour codes); the values come from the daemon
/// and the files, so their control characters are escaped.
fn render(account: &AccountInfo, format: &str, now: DateTime<Utc>) -> String {
    let value = |s: &str| cmdr_core::text::escape_controls(s).into_owned();
    format
        .replace("{account}", &value(&account.name))
        .replace("{left}", &left(account, now))
        .replace("{state}", &value(account.state.label()))
        .replace("{profile}", &value(&account.profile))
        .replace("{region}", &value(account.region.as_deref().unwrap_or("")))
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: &str, expires_at: Option<&str>) -> AccountInfo {
        AccountInfo {
            name: "acme".into(),
            profile: "acme".into(),
            region: Some("eu-west-1".into()),
            target: cmdr_proto::TargetKind::Aws,
            endpoint: None,
            on_change: cmdr_proto::OnChange::Ask,
            state: serde_json::from_value(state.into()).expect("state"),
            fingerprint: None,
            accepted_fingerprint: None,
            accepted_at: None,
            expires_at: expires_at.map(str::to_owned),
            expiry_source: None,
            account_id: None,
            portal: None,
            profile_kind: None,
        }
    }

    #[test]
    fn renders() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T09:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let cases = [
            (
                info("ok", Some("2026-11-29T12:12:30Z")),
                "{account} {left}",
                "acme 3h12m",
            ),
            (
                info("expired", Some("2026-11-29T08:00:00Z")),
                "{account} {left}",
                "acme EXPIRED",
            ),
            (
                info("ok", Some("2026-11-29T08:00:00Z")),
                "{account} {left}",
                "acme EXPIRED",
            ),
            (info("changed", None), "{account} {left}", "acme CHANGED"),
            (info("ok", None), "{account} {left}", "acme"),
            (info("ok", None), "[{profile}@{region}]", "[acme@eu-west-1]"),
            (
                AccountInfo {
                    region: Some("eu-west-1\n\u{1b}[2J".into()),
                    ..info("ok", None)
                },
                "\u{1b}[1m{region}",
                "\u{1b}[1meu-west-1\\n\\e[2J",
            ),
        ];
        for (account, format, expected) in cases {
            assert_eq!(render(&account, format, now), expected);
        }
    }

    #[test]
    fn picks_the_account_expiring_first() {
        let named = |name: &str, at: Option<&str>| AccountInfo {
            name: name.into(),
            ..info("ok", at)
        };
        let accounts = [
            named("acme", Some("2026-11-29T12:00:00Z")),
            named("local", None),
            named("moto", Some("2026-11-29T10:00:00Z")),
        ];
        let names = |pick| -> Vec<String> {
            select(&accounts, pick)
                .iter()
                .map(|a| a.name.clone())
                .collect()
        };
        assert_eq!(names(Pick::ExpiringFirst), ["moto"]);
        assert_eq!(names(Pick::Named("local")), ["local"]);
        assert_eq!(names(Pick::Named("nope")), Vec::<String>::new());
        assert_eq!(names(Pick::All), ["acme", "local", "moto"]);
        assert_eq!(select(&accounts[1..2], Pick::ExpiringFirst).len(), 1);
        assert!(select(&[], Pick::ExpiringFirst).is_empty());
    }
}
