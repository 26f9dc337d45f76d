//! How cmdrctl prints: aligned text for people, the documented JSON shapes for programs.

use chrono::{DateTime, Utc};
use cmdr_proto::{
    AccountDetail, AccountInfo, Event, Identity, ProfileInfo, RenewalPlan, StatusInfo,
};
use serde::Serialize;

/// Prints one line of text output with its control characters escaped
/// ([`cmdr_core::text::escape_controls`]): the values come from files and peers, and a
/// region like `eu-west-1\n\e[2J…` must not clear the screen or forge a line.
pub fn say(line: &str) {
    crate::stdout::write(format_args!("{}\n", cmdr_core::text::escape_controls(line)));
}

/// Every `println!` in this module goes through [`say`], so no printer can forget it
/// (JSON, which escapes control characters itself, is written unescaped).
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::output::say(&format!($($arg)*))
    };
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => crate::stdout::write(format_args!("{}\n", escape_json_controls(&text))),
        Err(err) => eprintln!("cmdrctl: cannot print JSON: {err}"),
    }
}

/// serde_json escapes U+0000–U+001F itself but writes DEL and the C1 controls
/// (U+0080–U+009F, e.g. U+009B, a CSI for many terminals) raw: those become `\u00XX`, the
/// same string to every JSON reader. Outside strings JSON has only ASCII punctuation, so
/// any such character is inside a string.
fn escape_json_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let is_control = |c: char| ('\u{7f}'..='\u{9f}').contains(&c);
    if !text.contains(is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `3h12m left`, `EXPIRED 5m ago`, or the source when there is no time.
pub fn time_left(expires_at: Option<&str>, source: Option<&str>) -> String {
    let Some(left) = remaining(expires_at, Utc::now()) else {
        return match source {
            Some("never") => "never".to_owned(),
            _ => "unknown".to_owned(),
        };
    };
    if left <= chrono::Duration::zero() {
        format!("EXPIRED {} ago", cmdr_core::format_duration(-left))
    } else {
        format!("{} left", cmdr_core::format_duration(left))
    }
}

/// Time from `now` until an RFC 3339 `expires_at` (negative once past).
pub fn remaining(expires_at: Option<&str>, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let at = DateTime::parse_from_rfc3339(expires_at?).ok()?;
    Some(at.with_timezone(&Utc) - now)
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    // Escaped before measuring, so the columns line up as printed.
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| cmdr_core::text::escape_controls(&c).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            // Padded by hand: a format width over 65,535 panics, and a cell from a file
            // may be longer than that.
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                format!("{c}{}", " ".repeat(pad))
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

pub fn status(status: &StatusInfo, json: bool) {
    if json {
        return print_json(status);
    }
    println!(
        "cmdrd {} (protocol {}), pid {}, up {}",
        status.daemon_version,
        status.protocol,
        status.pid,
        cmdr_core::format_duration(chrono::Duration::seconds(
            i64::try_from(status.uptime_secs).unwrap_or(i64::MAX)
        ))
    );
    println!("socket: {}", status.socket);
    if let Some(note) = &status.socket_note {
        println!("  note: {note}");
    }
    let rows = status
        .files
        .iter()
        .map(|f| {
            let health = match (&f.error, f.error_line) {
                (Some(e), Some(line)) => format!("error at line {line}: {e}"),
                (Some(e), None) => format!("error: {e}"),
                (None, _) if !f.exists => "ok (missing)".to_owned(),
                (None, _) => "ok".to_owned(),
            };
            vec![f.kind.to_string(), f.path.clone(), health]
        })
        .collect();
    table(&["FILE", "PATH", "HEALTH"], rows);
    let total: u32 = status.accounts.iter().map(|c| c.count).sum();
    let by_state: Vec<String> = status
        .accounts
        .iter()
        .map(|c| format!("{} {}", c.state, c.count))
        .collect();
    println!("profiles: {}", status.profiles);
    if by_state.is_empty() {
        println!("accounts: 0");
    } else {
        println!("accounts: {total} ({})", by_state.join(", "));
    }
    println!("subscribers: {}", status.subscribers);
    match &status.endpoint {
        Some(e) => println!("endpoint: {}NAME (tokens in {}NAME)", e.url, e.token_file),
        None => println!("endpoint: disabled"),
    }
    // The portals: the second clock, of the sign-in itself.
    for p in &status.portals {
        let until = match &p.signed_in_until {
            Some(at) => format!("signed in until {at} ({})", time_left(Some(at), None)),
            None => "not signed in".to_owned(),
        };
        let refresh = if p.refreshable { ", refreshable" } else { "" };
        let state = match (p.state.as_str(), &p.reason) {
            ("signin_required", Some(why)) => {
                format!("; sign-in required ({why}): `cmdrctl login {}`", p.session)
            }
            _ => String::new(),
        };
        println!(
            "portal: {} {} ({}): {until}{refresh}{state}",
            p.session, p.start_url, p.region
        );
    }
    for warning in &status.warnings {
        println!("warning: {}", cmdr_core::text::escape_controls(warning));
    }
    if !status.changes_while_down.is_empty() {
        println!("while cmdrd was not running:");
        for change in &status.changes_while_down {
            println!("  {change}");
        }
    }
}

/// `status`: each account that renews itself, with when (or that a sign-in comes first).
pub fn renewing(
    accounts: &[AccountInfo],
    renewals: &std::collections::HashMap<String, RenewalPlan>,
) {
    let now = Utc::now();
    for a in accounts {
        let plan = renewals.get(&a.name);
        if let Some(at) = renews_at(plan, now) {
            let signin = signin_first(a, plan, now)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            let session = plan
                .and_then(|p| p.session.as_deref())
                .map(|s| format!(" through sso-session {s}"))
                .unwrap_or_default();
            let login = match plan.and_then(|p| p.session.as_deref()) {
                Some(session) if plan.is_some_and(RenewalPlan::signin_needed) => {
                    format!(": `cmdrctl login {session}`")
                }
                _ => String::new(),
            };
            println!("account: {} {at}{session}{signin}{login}", a.name);
        }
    }
}

pub fn profiles(profiles: &[ProfileInfo], json: bool) {
    if json {
        return print_json(profiles);
    }
    if profiles.is_empty() {
        println!("no profiles in the AWS config or credentials file");
        return;
    }
    let rows = profiles
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.kind.to_string(),
                or_dash(p.region.as_deref()),
                p.sources.join("+"),
                time_left(p.expires_at.as_deref(), p.expiry_source.as_deref()),
                or_dash(p.expiry_source.as_deref()),
                or_dash(p.fingerprint.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "KIND",
            "REGION",
            "SOURCES",
            "EXPIRES",
            "EXPIRY SOURCE",
            "FINGERPRINT",
        ],
        rows,
    );
}

/// `accounts list --json`: each account with how it renews (`signin_expires_at`,
/// `auto_renew`, `renews_at`; null and false from a daemon that does not say).
pub fn accounts_json(
    accounts: &[AccountInfo],
    renewals: Option<&std::collections::HashMap<String, RenewalPlan>>,
) {
    let list: Vec<serde_json::Value> = accounts
        .iter()
        .map(|a| {
            let mut value = serde_json::to_value(a).unwrap_or_default();
            let plan = renewals.and_then(|r| r.get(&a.name));
            if let serde_json::Value::Object(map) = &mut value {
                map.insert(
                    "signin_expires_at".into(),
                    plan.and_then(|f| f.signin_expires_at.clone()).into(),
                );
                map.insert(
                    "auto_renew".into(),
                    plan.is_some_and(|f| f.auto_renew).into(),
                );
                map.insert(
                    "portal_session".into(),
                    plan.and_then(|f| f.session.clone()).into(),
                );
                map.insert(
                    "renews_at".into(),
                    plan.and_then(|f| f.renews_at.clone()).into(),
                );
            }
            value
        })
        .collect();
    print_json(&list);
}

/// What an account that renews itself says of it: when, as local `HH:MM`, as cmdrd
/// scheduled it (never before now); or that its portal needs a sign-in first. Nothing
/// when it does not renew itself, or cmdrd does not say when (a renewal that failed, or a
/// daemon older than `renews_at`).
pub fn renews_at(plan: Option<&RenewalPlan>, now: DateTime<Utc>) -> Option<String> {
    let plan = plan.filter(|p| p.auto_renew)?;
    if plan.signin_needed() {
        return Some("sign-in needed".to_owned());
    }
    let at = DateTime::parse_from_rfc3339(plan.renews_at.as_deref()?)
        .ok()?
        .with_timezone(&Utc)
        .max(now);
    Some(format!(
        "renews itself at {}",
        at.with_timezone(&chrono::Local).format("%H:%M")
    ))
}

/// The sign-in's end, when the portal's session ends before the account's token (then the
/// token is the last one until someone signs in): `sign-in 40m`.
pub fn signin_first(
    account: &AccountInfo,
    plan: Option<&RenewalPlan>,
    now: DateTime<Utc>,
) -> Option<String> {
    let signin = plan?.signin_expires_at.as_deref()?;
    let until = remaining(Some(signin), now)?;
    let token = remaining(account.expires_at.as_deref(), now)?;
    (until < token).then(|| {
        if until <= chrono::Duration::zero() {
            "sign-in ended".to_owned()
        } else {
            format!("sign-in {}", cmdr_core::format_duration(until))
        }
    })
}

pub fn accounts(
    accounts: &[AccountInfo],
    renewals: Option<&std::collections::HashMap<String, RenewalPlan>>,
    json: bool,
) {
    if json {
        return print_json(accounts);
    }
    let now = Utc::now();
    if accounts.is_empty() {
        println!("no accounts; add one with `cmdrctl accounts add NAME --profile PROFILE`");
        return;
    }
    let rows = accounts
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.profile.clone(),
                or_dash(a.region.as_deref()),
                match &a.endpoint {
                    Some(e) => format!("{} {e}", a.target),
                    None => a.target.to_string(),
                },
                a.on_change.to_string(),
                a.state.to_string(),
                {
                    let plan = renewals.and_then(|r| r.get(&a.name));
                    let mut left = time_left(a.expires_at.as_deref(), a.expiry_source.as_deref());
                    let notes: Vec<String> = [renews_at(plan, now), signin_first(a, plan, now)]
                        .into_iter()
                        .flatten()
                        .collect();
                    if !notes.is_empty() {
                        left = format!("{left} ({})", notes.join(", "));
                    }
                    left
                },
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "PROFILE",
            "REGION",
            "TARGET",
            "ON CHANGE",
            "STATE",
            "EXPIRES",
        ],
        rows,
    );
    let without: Vec<&str> = accounts
        .iter()
        .filter(|a| a.region.is_none())
        .map(|a| a.name.as_str())
        .collect();
    if !without.is_empty() {
        println!(
            "note: no region: {}; tools given them fail with NoRegionError (\"Missing Region\"); set one with `cmdrctl accounts edit NAME --region REGION`",
            without.join(", ")
        );
    }
}

/// `accounts show`: the account, why it is in its state, and what a tool would lack.
pub fn account_detail(detail: &AccountDetail, json: bool) {
    if json {
        // The documented object, plus `reason` and how it renews (the portal's clock).
        let mut value = serde_json::to_value(&detail.info).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("reason".into(), detail.reason.clone().into());
            map.insert(
                "signin_expires_at".into(),
                detail.signin_expires_at.clone().into(),
            );
            map.insert("auto_renew".into(), detail.auto_renew.into());
            map.insert("renewal".into(), detail.renewal.clone().into());
        }
        return print_json(&value);
    }
    account_why(&detail.info, "", detail.reason.as_deref());
    if let Some(at) = &detail.signin_expires_at {
        println!("{:<14} {}", "signed in", time_left(Some(at), None));
    }
    if let Some(renewal) = &detail.renewal {
        println!("{:<14} {renewal}", "renews");
    }
}

/// The note for an account without a region (its own, or its profile's at `add`): every
/// SDK call of a tool given it fails with `NoRegionError`/"Missing Region".
pub fn no_region_note(account: &AccountInfo) -> Option<String> {
    account.region.is_none().then(|| {
        format!(
            "account {} has no region: tools given it fail with NoRegionError (\"Missing Region\"); set one with `cmdrctl accounts edit {} --region REGION`",
            account.name, account.name
        )
    })
}

pub fn account(account: &AccountInfo, verb: &str, json: bool) {
    if json {
        return print_json(account);
    }
    account_why(account, verb, None);
}

/// An account as text, with the reason for its state (`why`) when there is one.
pub fn account_why(account: &AccountInfo, verb: &str, why: Option<&str>) {
    if !verb.is_empty() {
        println!("{verb} account {}", account.name);
    }
    let fields = [
        ("name", Some(account.name.clone())),
        ("profile", Some(account.profile.clone())),
        ("region", account.region.clone()),
        ("target", Some(account.target.to_string())),
        ("endpoint", account.endpoint.clone()),
        ("on change", Some(account.on_change.to_string())),
        ("state", Some(account.state.to_string())),
        ("fingerprint", account.fingerprint.clone()),
        ("accepted", account.accepted_fingerprint.clone()),
        ("accepted at", account.accepted_at.clone()),
        (
            "expires",
            Some(time_left(
                account.expires_at.as_deref(),
                account.expiry_source.as_deref(),
            )),
        ),
        ("expires at", account.expires_at.clone()),
        ("expiry source", account.expiry_source.clone()),
        ("account id", account.account_id.clone()),
        ("portal", account.portal.clone()),
    ];
    for (name, value) in fields {
        println!("{name:<14} {}", value.as_deref().unwrap_or("-"));
    }
    if account.state != cmdr_proto::AccountState::Changed
        && let Some(why) = why
    {
        println!("{:<14} {why}", "why");
    }
    if account.state == cmdr_proto::AccountState::Changed {
        println!(
            "the file holds a token this account has not accepted: run `cmdrctl accept {}`",
            account.name
        );
    }
    if let Some(note) = no_region_note(account) {
        println!("note: {note}");
    }
}

pub fn event(event: &Event, json: bool) {
    if json {
        match event.to_json() {
            Ok(value) => crate::stdout::write(format_args!(
                "{}\n",
                escape_json_controls(&value.to_string())
            )),
            Err(err) => eprintln!("cmdrctl: cannot print event: {err}"),
        }
        return;
    }
    event_with_hint(event, None);
}

/// One event as a text line, then the command that acts on it, if any.
/// What `watch` adds to an event's line: the command that acts on it, or a note when
/// nothing needs doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    Run(String),
    Note(String),
}

pub fn event_with_hint(event: &Event, hint: Option<&Hint>) {
    let mut line = format!("{} {}", event.at, event.kind.type_name());
    if let Ok(serde_json::Value::Object(fields)) = event.to_json() {
        for (key, value) in fields {
            if key == "type" || key == "at" || value.is_null() {
                continue;
            }
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            line.push_str(&format!(" {key}={text}"));
        }
    }
    match hint {
        Some(Hint::Run(command)) => line.push_str(&format!("  -> run `{command}`")),
        Some(Hint::Note(note)) => line.push_str(&format!("  ({note})")),
        None => {}
    }
    println!("{line}");
}

pub fn identity(identity: &Identity, json: bool) {
    if json {
        return print_json(identity);
    }
    println!("account id  {}", identity.account_id);
    println!("arn         {}", identity.arn);
    println!("user id     {}", identity.user_id);
}

#[cfg(test)]
mod tests;
