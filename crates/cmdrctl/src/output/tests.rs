//! Tests of the printers.

use super::*;

fn info(expires_at: &str, accepted_at: &str) -> AccountInfo {
    serde_json::from_value(serde_json::json!({
        "name": "acme", "profile": "acme", "region": null, "target": "aws",
        "endpoint": null, "on_change": "ask", "state": "ok", "fingerprint": null,
        "accepted_fingerprint": null, "accepted_at": accepted_at,
        "expires_at": expires_at, "expiry_source": "x_security_token_expires",
        "account_id": null, "portal": null,
    }))
    .expect("account")
}

fn plan(auto_renew: bool, signin: Option<&str>, renews: Option<&str>) -> RenewalPlan {
    RenewalPlan {
        account: "acme".into(),
        auto_renew,
        session: Some("corp".into()),
        signin_expires_at: signin.map(str::to_owned),
        renews_at: renews.map(str::to_owned),
    }
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .expect("time")
        .with_timezone(&Utc)
}

fn local(t: &str) -> String {
    at(t)
        .with_timezone(&chrono::Local)
        .format("%H:%M")
        .to_string()
}

#[test]
fn when_an_account_renews_itself() {
    let now = at("2026-11-20T10:00:00Z");
    let signed_in = Some("2026-11-20T18:00:00Z");
    // When cmdrd says, never before now (a renewal under way is now).
    let p = plan(true, signed_in, Some("2026-11-20T10:50:00Z"));
    assert_eq!(
        renews_at(Some(&p), now),
        Some(format!(
            "renews itself at {}",
            local("2026-11-20T10:50:00Z")
        ))
    );
    let p = plan(true, signed_in, Some("2026-11-20T09:59:00Z"));
    assert_eq!(
        renews_at(Some(&p), now),
        Some(format!(
            "renews itself at {}",
            local("2026-11-20T10:00:00Z")
        ))
    );
    // The portal needs a sign-in first: that, not a time.
    let p = plan(true, None, Some("2026-11-20T10:50:00Z"));
    assert_eq!(renews_at(Some(&p), now).as_deref(), Some("sign-in needed"));
    // Not said: a renewal that failed, a daemon older than `renews_at`, auto-renew off.
    assert_eq!(renews_at(Some(&plan(true, signed_in, None)), now), None);
    let off = plan(false, signed_in, Some("2026-11-20T10:50:00Z"));
    assert_eq!(renews_at(Some(&off), now), None);
    assert_eq!(renews_at(None, now), None);
}

#[test]
fn the_portal_clock_only_when_the_sign_in_ends_first() {
    let now = at("2026-11-20T10:00:00Z");
    let hour = info("2026-11-20T11:00:00Z", "2026-11-20T09:00:00Z");
    let early = plan(true, Some("2026-11-20T10:40:00Z"), None);
    assert_eq!(
        signin_first(&hour, Some(&early), now).as_deref(),
        Some("sign-in 40m")
    );
    let late = plan(true, Some("2026-11-20T18:00:00Z"), None);
    assert_eq!(signin_first(&hour, Some(&late), now), None);
    assert_eq!(
        signin_first(&hour, Some(&plan(true, None, None)), now),
        None
    );
}

#[test]
fn json_output_escapes_del_and_c1_controls() {
    let text =
        serde_json::to_string(&serde_json::json!({ "p": "a\u{9b}2J\u{7f}b" })).expect("json");
    let escaped = escape_json_controls(&text);
    assert_eq!(escaped, r#"{"p":"a\u009b2J\u007fb"}"#);
    let back: serde_json::Value = serde_json::from_str(&escaped).expect("still JSON");
    assert_eq!(back["p"], "a\u{9b}2J\u{7f}b");
}
