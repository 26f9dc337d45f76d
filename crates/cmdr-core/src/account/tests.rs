//! Tests of the accounts, their state machine and the collection.

use super::*;
use crate::diff::diff;
use crate::expiry::ExpirySource;
use crate::profile::parse_files;

fn parse(credentials: &str) -> ProfileView {
    parse_files("[profile p]\nregion = eu-west-1\n", credentials)
}

fn view(token: &str) -> ProfileView {
    parse(&format!(
        "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
         aws_session_token = {token}\n"
    ))
}

/// Accounts holding one account, `a`, on profile `p` of `view`.
fn with_a(on_change: OnChange, view: &ProfileView, now: DateTime<Utc>) -> Accounts {
    let mut accounts = Accounts::default();
    accounts
        .add(spec("a", on_change), view, &files_only, now)
        .expect("add");
    accounts
}

/// No expiry known beyond the files (the engine adds estimates and process expiries).
fn files_only(p: &Profile) -> Option<Expiry> {
    p.expiry.clone()
}

fn spec(name: &str, on_change: OnChange) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        profile: "p".to_owned(),
        region: None,
        target: Target::Aws,
        on_change,
        portal: None,
    }
}

fn state(accounts: &Accounts, name: &str, view: &ProfileView) -> AccountState {
    let a = accounts.get(name).expect("account");
    a.state(view.get(&a.profile), Utc::now(), Duration::minutes(15))
}

fn kinds(changes: &[AccountChange]) -> Vec<(&str, &str)> {
    changes
        .iter()
        .map(|c| match c {
            AccountChange::TokenChanged { account, .. } => (account.as_str(), "changed"),
            AccountChange::TokenAccepted { account, .. } => (account.as_str(), "accepted"),
            _ => ("?", "?"),
        })
        .collect()
}

#[test]
fn ask_changes_until_accepted_and_auto_accepts() {
    let now = Utc::now();
    let (v1, v2) = (view("one"), view("two"));
    let mut accounts = Accounts::default();
    for (name, policy) in [("ask", OnChange::Ask), ("auto", OnChange::Auto)] {
        accounts
            .add(spec(name, policy), &v1, &files_only, now)
            .expect("add");
    }
    assert_eq!(
        accounts.get("ask").expect("a").region.as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(state(&accounts, "ask", &v1), AccountState::Ok);

    let changes = accounts.apply(&diff(&v1, &v2), &v2, &files_only, now);
    assert_eq!(
        kinds(&changes),
        [
            ("ask", "changed"),
            ("auto", "changed"),
            ("auto", "accepted")
        ]
    );
    assert_eq!(state(&accounts, "ask", &v2), AccountState::Changed);
    assert_eq!(state(&accounts, "auto", &v2), AccountState::Ok);
    // Still the first token's keys while `changed`.
    let token = |a: &Accounts| {
        a.get("ask")
            .expect("a")
            .accepted
            .credentials
            .clone()
            .and_then(|c| c.session_token.clone())
    };
    assert_eq!(token(&accounts).as_deref(), Some("one"));

    accounts
        .accept("ask", &v2, &files_only, now)
        .expect("accept");
    assert_eq!(state(&accounts, "ask", &v2), AccountState::Ok);
    assert_eq!(token(&accounts).as_deref(), Some("two"));
}

#[test]
fn the_accepted_token_keeps_its_own_expiry() {
    let now = Utc::now();
    let short = parse(&format!(
        "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
         aws_session_token = one\nx_security_token_expires = {}\n",
        (now + Duration::minutes(20)).to_rfc3339()
    ));
    let long = parse(&format!(
        "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
         aws_session_token = two\nx_security_token_expires = {}\n",
        (now + Duration::hours(8)).to_rfc3339()
    ));
    let mut accounts = with_a(OnChange::Ask, &short, now);
    accounts.apply(&diff(&short, &long), &long, &files_only, now);
    let a = accounts.get("a").expect("a");
    let expiry = a.accepted.expiry.clone().expect("expiry");
    assert_eq!(
        *expiry.source(),
        ExpirySource::Key("x_security_token_expires")
    );
    assert!(expiry.when().expect("at") < now + Duration::minutes(21));
    // Changed outranks expiring; once accepted, the long one counts.
    let later = now + Duration::minutes(10);
    let m = Duration::minutes(15);
    assert_eq!(a.state(long.get("p"), later, m), AccountState::Changed);
    assert_eq!(a.state(short.get("p"), later, m), AccountState::Expiring);
    accounts
        .accept("a", &long, &files_only, now)
        .expect("accept");
    let a = accounts.get("a").expect("a");
    assert_eq!(a.state(long.get("p"), later, m), AccountState::Ok);
}

#[test]
fn states() {
    let now = Utc::now();
    let v = view("one");
    let accounts = with_a(OnChange::Ask, &v, now);
    let m = Duration::minutes(15);
    let p = v.get("p");
    let check = |exp: Option<DateTime<Utc>>, want: AccountState| {
        let mut a = accounts.get("a").expect("a").clone();
        a.accepted.expiry = exp.map(|at| Expiry::at(at, ExpirySource::Estimated));
        assert_eq!(a.state(p, now, m), want, "{exp:?}");
    };
    check(None, AccountState::Ok);
    check(Some(now + Duration::hours(1)), AccountState::Ok);
    check(Some(now + Duration::minutes(10)), AccountState::Expiring);
    check(Some(now - Duration::seconds(1)), AccountState::Expired);
    // Renewed by the daemon before it ends: nearing the end is no alarm; a renewal only
    // after the end (or none) is; past the end it is expired all the same.
    let renewing = |exp: DateTime<Utc>, renews: Option<DateTime<Utc>>, want: AccountState| {
        let mut a = accounts.get("a").expect("a").clone();
        a.accepted.expiry = Some(Expiry::at(exp, ExpirySource::Estimated));
        assert_eq!(
            a.state_renewing(p, now, m, renews),
            want,
            "{exp} {renews:?}"
        );
    };
    let end = now + Duration::minutes(10);
    renewing(end, Some(end - Duration::minutes(5)), AccountState::Ok);
    renewing(end, Some(now), AccountState::Ok);
    renewing(end, Some(end), AccountState::Expiring);
    renewing(end, None, AccountState::Expiring);
    renewing(now - Duration::seconds(1), Some(now), AccountState::Expired);
    let a = accounts.get("a").expect("a");
    assert_eq!(a.state(None, now, m), AccountState::Missing);
    assert_eq!(a.state(view("two").get("p"), now, m), AccountState::Changed);
    // The token vanished from the profile (credentials file deleted).
    let bare = parse("");
    assert_eq!(a.state(bare.get("p"), now, m), AccountState::Missing);
}

#[test]
fn a_vanished_token_is_missing_and_coming_back_is_no_change() {
    let now = Utc::now();
    let (v, gone) = (view("one"), parse(""));
    let mut accounts = Accounts::default();
    accounts
        .add(spec("auto", OnChange::Auto), &v, &files_only, now)
        .expect("add");
    assert!(
        accounts
            .apply(&diff(&v, &gone), &gone, &files_only, now)
            .is_empty()
    );
    assert_eq!(state(&accounts, "auto", &gone), AccountState::Missing);
    assert!(
        accounts
            .apply(&diff(&gone, &v), &v, &files_only, now)
            .is_empty()
    );
    assert_eq!(state(&accounts, "auto", &v), AccountState::Ok);
    assert!(accounts.reconcile(&gone, &files_only, now).is_empty());
    // Coming back with another token is a change (from the accepted one).
    let two = view("two");
    let changes = accounts.apply(&diff(&gone, &two), &two, &files_only, now);
    assert_eq!(kinds(&changes), [("auto", "changed"), ("auto", "accepted")]);
    assert!(matches!(
        &changes[0],
        AccountChange::TokenChanged {
            old_fingerprint: Some(_),
            new_fingerprint: Some(_),
            ..
        }
    ));
}

/// Records `verdict` for account `a`'s accepted token, as a validation of it would.
fn record(accounts: &mut Accounts, verdict: Verdict) -> Option<IdentityCheck> {
    let fp = accounts.get("a").expect("a").accepted.fingerprint.clone();
    accounts
        .record_validation("a", fp.as_deref(), &verdict)
        .expect("a")
}

#[test]
fn validations_set_and_clear_one_reason() {
    let now = Utc::now();
    let v = view("one");
    let mut accounts = with_a(OnChange::Ask, &v, now);
    assert_eq!(record(&mut accounts, Verdict::Unreachable), None);
    let status = |accounts: &Accounts| {
        accounts
            .get("a")
            .expect("a")
            .status(v.get("p"), now, Duration::minutes(15))
    };
    assert_eq!(status(&accounts).state, AccountState::Unvalidated);
    assert_eq!(
        record(
            &mut accounts,
            Verdict::Misconfigured("Missing Region".into())
        ),
        None
    );
    assert_eq!(status(&accounts).state, AccountState::Misconfigured);
    // An unreachable target clears a stale failure.
    record(&mut accounts, Verdict::Unreachable);
    assert_eq!(status(&accounts).state, AccountState::Unvalidated);
    record(&mut accounts, Verdict::Rejected("rejected".into()));
    assert_eq!(status(&accounts).state, AccountState::Invalid);
    assert!(
        status(&accounts)
            .refusal("a", OnChange::Ask)
            .is_some_and(|r| r.contains("cmdrctl accept a"))
    );
    let confirmed = |id: &str| Verdict::Confirmed {
        account_id: id.into(),
    };
    assert_eq!(
        record(&mut accounts, confirmed("111")),
        Some(IdentityCheck::First)
    );
    assert_eq!(
        record(&mut accounts, confirmed("111")),
        Some(IdentityCheck::Same)
    );
    assert_eq!(status(&accounts).state, AccountState::Ok);
    // Once confirmed, an unreachable target is no reason to doubt the token.
    record(&mut accounts, Verdict::Unreachable);
    assert_eq!(status(&accounts).state, AccountState::Ok);
    assert_eq!(
        record(&mut accounts, confirmed("222")),
        Some(IdentityCheck::Changed { old: "111".into() })
    );
    let s = status(&accounts);
    assert_eq!(s.state, AccountState::Changed);
    let reason = s.refusal("a", OnChange::Ask).expect("refused");
    assert_eq!(reason.matches("cmdrctl accept a").count(), 1, "{reason}");
    accounts.accept("a", &v, &files_only, now).expect("accept");
    assert_eq!(status(&accounts).state, AccountState::Ok);
    assert_eq!(
        accounts.get("a").expect("a").account_id.as_deref(),
        Some("222")
    );
}

#[test]
fn profiles_that_cannot_give_credentials_are_misconfigured() {
    let now = Utc::now();
    let bare = parse("");
    let accounts = with_a(OnChange::Ask, &bare, now);
    let s = accounts
        .get("a")
        .expect("a")
        .status(bare.get("p"), now, Duration::minutes(15));
    assert_eq!(s.state, AccountState::Misconfigured);
    assert!(s.reason.is_some_and(|r| r.contains("no access keys")));
}

#[test]
fn portals() {
    let check = |url: &str, ok: bool| {
        assert_eq!(check_portal(url).is_ok(), ok, "{url:?}");
    };
    check("https://acme.awsapps.com/start", true);
    check("HTTP://localhost:8080/x?a=1&b=2#f", true);
    check("https://", false);
    check("ftp://acme", false);
    check("file:///etc/passwd", false);
    check("-https://x", false);
    check("https://a b", false);
    check("https://a\u{1b}[31m", false);
    check("https://a\u{202e}b", false);
    check("https://\u{e9}.example", false);
    check(&format!("https://{}", "a".repeat(2048)), false);
    let err = check_portal("https://a\u{1b}[31m").expect_err("bad");
    assert!(!err.to_string().contains('\u{1b}'), "{err}");
    assert!(err.to_string().contains(PORTAL_RULE), "{err}");

    let now = Utc::now();
    let v = view("one");
    let mut accounts = Accounts::default();
    let mut bad = spec("a", OnChange::Ask);
    bad.portal = Some("javascript:alert(1)".into());
    assert!(matches!(
        accounts.add(bad, &v, &files_only, now),
        Err(AccountError::BadPortal(_))
    ));
    let mut with = spec("a", OnChange::Ask);
    with.portal = Some("https://acme.awsapps.com/start".into());
    accounts.add(with, &v, &files_only, now).expect("add");
    let a = accounts.get("a").expect("a");
    assert_eq!(a.portal(v.get("p")), Some("https://acme.awsapps.com/start"));
    let patch = |portal| AccountPatch {
        portal: Some(portal),
        ..AccountPatch::default()
    };
    assert!(matches!(
        accounts.edit("a", patch(Some("ssh://x".into())), &v, &files_only, now),
        Err(AccountError::BadPortal(_))
    ));
    accounts
        .edit("a", patch(None), &v, &files_only, now)
        .expect("edit");
    // The profile in `view` has no sso_start_url: no portal at all.
    assert_eq!(accounts.get("a").expect("a").portal(v.get("p")), None);
}

#[test]
fn errors_and_reconcile() {
    let now = Utc::now();
    let v = view("one");
    let mut accounts = Accounts::default();
    let bad = |name: &str| NewAccount {
        name: name.to_owned(),
        ..spec("x", OnChange::Ask)
    };
    for name in ["a b", "", "-dash"] {
        assert!(matches!(
            accounts.add(bad(name), &v, &files_only, now),
            Err(AccountError::Invalid(_))
        ));
    }
    let mut nope = spec("n", OnChange::Ask);
    nope.profile = "nope".into();
    assert!(matches!(
        accounts.add(nope, &v, &files_only, now),
        Err(AccountError::NoProfile(_))
    ));
    let mut ep = spec("e", OnChange::Ask);
    ep.target = Target::Endpoint {
        endpoint: "ftp://x".into(),
    };
    assert!(matches!(
        accounts.add(ep, &v, &files_only, now),
        Err(AccountError::Invalid(_))
    ));
    accounts
        .add(spec("a", OnChange::Ask), &v, &files_only, now)
        .expect("add");
    assert!(matches!(
        accounts.add(spec("a", OnChange::Ask), &v, &files_only, now),
        Err(AccountError::Exists(_))
    ));
    assert!(accounts.reconcile(&v, &files_only, now).is_empty());
    let changes = accounts.reconcile(&view("two"), &files_only, now);
    assert!(matches!(
        changes.as_slice(),
        [AccountChange::TokenChanged { .. }]
    ));
    assert!(matches!(
        accounts.remove("zz"),
        Err(AccountError::NotFound(_))
    ));
    accounts.remove("a").expect("remove");
    assert!(accounts.is_empty());
}

/// Regression (hostile round): `accounts add` without `--region` copied a 70,000-byte
/// region from the profile, which `--region` would have refused.
#[test]
fn the_profile_region_is_copied_only_if_it_is_one() {
    let long = format!("[profile p]\nregion = {}\n", "r".repeat(70_000));
    let view = |config: &str| {
        parse_files(
            config,
            "[p]\naws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n",
        )
    };
    let mut accounts = Accounts::default();
    let now = Utc::now();
    accounts
        .add(spec("bad", OnChange::Ask), &view(&long), &files_only, now)
        .expect("add");
    assert_eq!(accounts.get("bad").expect("bad").region, None);
    let good = view("[profile p]\nregion = eu-west-1\n");
    accounts
        .add(spec("good", OnChange::Ask), &good, &files_only, now)
        .expect("add");
    let region = accounts.get("good").expect("good").region.clone();
    assert_eq!(region.as_deref(), Some("eu-west-1"));
}

/// An expired token's refusal suggests `renew` only where it has a way to get a new token
/// (a portal, an SSO profile); elsewhere it says to paste, never a command that fails.
#[test]
fn the_expired_refusal_suggests_renew_only_where_it_works() {
    let now = Utc::now();
    let v = view("one");
    let accounts = with_a(OnChange::Ask, &v, now);
    let mut a = accounts.get("a").expect("a").clone();
    a.accepted.expiry = Some(Expiry::at(
        now - Duration::minutes(1),
        ExpirySource::Estimated,
    ));
    let refusal = |a: &Account| {
        let status = a.status(v.get("p"), now, Duration::minutes(15));
        assert_eq!(status.state, AccountState::Expired);
        status.refusal("a", OnChange::Ask).expect("refused")
    };
    let without = refusal(&a);
    assert!(!without.contains("cmdrctl renew"), "{without}");
    assert!(without.contains("cmdrctl paste"), "{without}");
    assert!(without.contains("cmdrctl accept a"), "{without}");
    a.portal = Some("https://acme.awsapps.com/start".into());
    let with = refusal(&a);
    assert!(with.contains("cmdrctl renew a"), "{with}");
}

/// A renamed section holds the accepted token under another name: the account knows
/// where it went; two holders are ambiguous, a present profile is not renamed.
#[test]
fn a_renamed_profile_is_found_by_its_accepted_token() {
    let now = Utc::now();
    let v = view("one");
    let accounts = with_a(OnChange::Ask, &v, now);
    let a = accounts.get("a").expect("a");
    assert_eq!(a.renamed_to(&v), None);
    let keys = "aws_access_key_id = AKIAEXAMPLEEXAMPLE\naws_secret_access_key = s\n\
                aws_session_token = one\n";
    let renamed = parse(&format!("[p-new]\n{keys}"));
    assert_eq!(a.renamed_to(&renamed), Some("p-new"));
    let twice = parse(&format!("[p-new]\n{keys}\n[p-other]\n{keys}"));
    assert_eq!(a.renamed_to(&twice), None);
    let other = parse(&format!("[p-new]\n{}", keys.replace("one", "two")));
    assert_eq!(a.renamed_to(&other), None);
}

/// Another target forgets what the old one said: rejected, unreachable or confirmed.
#[test]
fn editing_the_target_forgets_the_old_targets_verdicts() {
    let now = Utc::now();
    let v = view("one");
    let mut accounts = with_a(OnChange::Ask, &v, now);
    record(&mut accounts, Verdict::Rejected("rejected".into()));
    assert_eq!(state(&accounts, "a", &v), AccountState::Invalid);
    let patch = AccountPatch {
        target: Some(Target::Localstack {
            endpoint: DEFAULT_LOCALSTACK.into(),
        }),
        ..AccountPatch::default()
    };
    accounts
        .edit("a", patch, &v, &files_only, now)
        .expect("edit");
    assert_eq!(state(&accounts, "a", &v), AccountState::Ok);
    let a = accounts.get("a").expect("a");
    assert!(a.invalid.is_none() && !a.confirmed && !a.unreachable);
}

/// An SSO account bound before its portal was signed in to takes the first sign-in by
/// itself (the identity is the profile's account and role); a pasted profile's first token
/// is still asked about, and so is a later change of a signed-in SSO profile.
#[test]
fn the_first_sign_in_of_an_sso_profile_needs_no_accept() {
    use std::collections::BTreeMap;
    let config = b"[profile p]\nsso_session = corp\nsso_account_id = 111111111111\nsso_role_name = R\n\
                   [sso-session corp]\nsso_start_url = https://x.awsapps.com/start\nsso_region = us-east-1\n";
    let name = format!(
        "{}.json",
        hex::encode(<sha1::Sha1 as sha1::Digest>::digest(b"corp"))
    );
    let sso = |cache: &BTreeMap<String, Vec<u8>>| {
        crate::profile::parse_view(crate::profile::Inputs {
            config,
            credentials: b"",
            sso_cache: cache,
        })
        .expect("parses")
    };
    let now = Utc::now();
    let signed_out = sso(&BTreeMap::new());
    let mut accounts = with_a(OnChange::Ask, &signed_out, now);
    let token = r#"{"accessToken":"A","expiresAt":"2030-01-01T00:00:00Z","clientId":"c","clientSecret":"s","refreshToken":"r"}"#;
    let signed_in = sso(&BTreeMap::from([(name, token.as_bytes().to_vec())]));
    let changes = accounts.apply(&diff(&signed_out, &signed_in), &signed_in, &files_only, now);
    assert_eq!(kinds(&changes), [("a", "changed"), ("a", "accepted")]);
    assert_ne!(state(&accounts, "a", &signed_in), AccountState::Changed);

    // A pasted profile bound while missing: its first token is asked about.
    let empty = parse("");
    let mut pasted = with_a(OnChange::Ask, &empty, now);
    let pasted_view = view("FIRST");
    let changes = pasted.apply(&diff(&empty, &pasted_view), &pasted_view, &files_only, now);
    assert_eq!(kinds(&changes), [("a", "changed")]);
}
