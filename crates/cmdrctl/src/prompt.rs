//! `cmdrctl prompt`: one request, one short line. Silent (exit 3) when the daemon is down,
//! silent (exit 0) when nothing is bound; never parses a file.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use cmdr_client::Client;
use cmdr_proto::{AccountInfo, Request, Response};

pub async fn run(socket: &Path, account: Option<&str>, format: &str) -> ExitCode {
    let Ok(mut client) = Client::connect(socket, "cmdrctl-prompt").await else {
        return ExitCode::from(3);
    };
    let Ok(Response::Accounts(accounts)) = client.request(Request::ListAccounts).await else {
        return ExitCode::from(1);
    };
    let now = Utc::now();
    let parts: Vec<String> = accounts
        .iter()
        .filter(|a| account.is_none_or(|name| a.name == name))
        .map(|a| render(a, format, now))
        .collect();
    if !parts.is_empty() {
        println!("{}", parts.join(" "));
    }
    ExitCode::SUCCESS
}

/// `3h12m`, `EXPIRED`, or the state when it needs attention; empty when unknown.
pub fn left(account: &AccountInfo, now: DateTime<Utc>) -> String {
    match account.state.as_str() {
        "changed" => return "CHANGED".to_owned(),
        "missing" => return "MISSING".to_owned(),
        "invalid" => return "INVALID".to_owned(),
        "expired" => return "EXPIRED".to_owned(),
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

fn render(account: &AccountInfo, format: &str, now: DateTime<Utc>) -> String {
    format
        .replace("{account}", &account.name)
        .replace("{left}", &left(account, now))
        .replace("{state}", &account.state)
        .replace("{profile}", &account.profile)
        .replace("{region}", account.region.as_deref().unwrap_or(""))
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
            target: "aws".into(),
            endpoint: None,
            on_change: "ask".into(),
            state: state.into(),
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
        ];
        for (account, format, expected) in cases {
            assert_eq!(render(&account, format, now), expected);
        }
    }
}
