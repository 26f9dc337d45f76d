//! Tests of renewal: the race with the watcher, failures, backoff, names.

use super::*;
use crate::watch::FileRead;

const OLD: &str = "[111111111111_ReadOnly]\naws_access_key_id = ASIAOLDOLDOLDOLDOLD1\naws_secret_access_key = old-secret\naws_session_token = old-session\n";

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        aws_config: dir.join("config"),
        aws_credentials: dir.join("credentials"),
        sso_cache: dir.join("sso"),
        data_dir: dir.join("data"),
        socket: cmdr_client::SocketLocation {
            path: dir.join("cmdrd.sock"),
            note: None,
            source: cmdr_client::SocketSource::Flag,
        },
        debounce: std::time::Duration::from_millis(50),
        warn_before: chrono::Duration::minutes(15),
        renew_before: chrono::Duration::minutes(10),
        default_session_duration: chrono::Duration::hours(12),
        validate_on_change: false,
        validate_timeout: std::time::Duration::from_secs(5),
        max_connections: 8,
        event_buffer: 64,
        config_file: None,
        desktop: crate::desktop::DesktopSettings {
            enabled: false,
            ..crate::desktop::DesktopSettings::default()
        },
        endpoint: crate::endpoint::EndpointSettings {
            enabled: false,
            listen: None,
        },
        console_signin_url: None,
    }
}

fn snapshot_of(dir: &std::path::Path) -> Snapshot {
    Snapshot {
        config: FileRead::Missing,
        credentials: FileRead::Bytes(std::fs::read(dir.join("credentials")).expect("read")),
        sso_cache: Default::default(),
        sso_unreadable: Default::default(),
        sso_partial: None,
    }
}

fn creds(n: u32) -> RoleCredentials {
    RoleCredentials {
        access_key_id: format!("ASIARENEWED{n:09}"),
        secret_access_key: format!("renewed-secret-{n}"),
        session_token: format!("renewed-session-{n}"),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    }
}

/// An engine over `dir` (the credentials file holding `OLD`) with account `acme` bound to
/// the portal-named profile.
fn engine_with_acme(dir: &std::path::Path) -> (Engine, EngineHandle) {
    std::fs::write(dir.join("credentials"), OLD).expect("write");
    let (reread, _asked) = crate::watch::Reread::new();
    let (mut engine, handle, _commands) = Engine::start(
        Arc::new(settings(dir)),
        |_| snapshot_of(dir),
        reread,
        Arc::new(crate::timers::SystemClock),
        None,
    )
    .expect("engine");
    engine
        .add(cmdr_core::NewAccount {
            name: "acme".into(),
            profile: "111111111111_ReadOnly".into(),
            region: None,
            target: cmdr_core::Target::Aws,
            on_change: cmdr_core::OnChange::Ask,
            portal: None,
        })
        .expect("add");
    (engine, handle)
}

/// The race of `a_pasted_option_2_account_renews_itself` (round 1 saw `token_changed`),
/// forced both ways instead of left to luck: the watcher's delivery of the renewed file
/// is taken in *before* the write reports (the old order registered the fingerprint
/// only then), and after it. Either way: `token_accepted` + `token_renewed`, never
/// `token_changed`, and the written token is the accepted one.
#[tokio::test]
async fn a_renewal_is_known_before_its_file_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, handle) = engine_with_acme(dir.path());
    let mut events = handle.subscribe();
    for (round, file_first) in [(1, true), (2, false), (3, true), (4, false)] {
        engine.renewing.insert("acme".into(), Pending::InFlight);
        let write = engine.begin_write("acme", creds(round)).expect("write");
        let Done::Renewed { account, result } = write.await else {
            panic!("round {round}: not the write's report");
        };
        result.expect("written");
        if file_first {
            let effects = engine.on_snapshot(snapshot_of(dir.path()));
            engine.apply(effects.expect("taken in"));
            engine.finish_renewal(&account, Ok(()));
        } else {
            engine.finish_renewal(&account, Ok(()));
            let effects = engine.on_snapshot(snapshot_of(dir.path()));
            engine.apply(effects.expect("taken in"));
        }
        let mut types = Vec::new();
        while let Ok(e) = events.try_recv() {
            types.push(e.event.kind.type_name().to_owned());
        }
        assert!(
            !types.iter().any(|t| t == "token_changed"),
            "round {round}: {types:?}"
        );
        assert!(
            types.iter().any(|t| t == "token_accepted"),
            "round {round}: {types:?}"
        );
        assert_eq!(
            types.iter().filter(|t| *t == "token_renewed").count(),
            1,
            "round {round}: {types:?}"
        );
        let c = creds(round);
        let written = cmdr_core::profile::keys_fingerprint(
            &c.access_key_id,
            &c.secret_access_key,
            Some(&c.session_token),
        );
        let account = engine.accounts.get("acme").expect("acme");
        assert_eq!(
            account.accepted.fingerprint.as_deref(),
            Some(written.as_str()),
            "round {round}"
        );
        assert!(!engine.renewing.contains_key("acme"), "round {round}");
    }
}

/// A write that fails leaves no fingerprint registered: the next token in the file is
/// offered as usual, and the renewal is retried.
#[tokio::test]
async fn a_failed_write_clears_what_it_registered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _handle) = engine_with_acme(dir.path());
    engine.renewing.insert("acme".into(), Pending::InFlight);
    let c = creds(7);
    let fingerprint = cmdr_core::profile::keys_fingerprint(
        &c.access_key_id,
        &c.secret_access_key,
        Some(&c.session_token),
    );
    let _write = engine.begin_write("acme", c).expect("write");
    assert!(engine.is_renewal("acme", Some(&fingerprint)));
    engine.finish_renewal("acme", Err("the disk is full".into()));
    assert!(!engine.is_renewal("acme", Some(&fingerprint)));
    assert!(matches!(
        engine.renewing.get("acme"),
        Some(Pending::Failed { failures: 1, .. })
    ));
}

/// A fetch that brings the credentials in use (the portal's session ended and only they
/// were cached) is no renewal: nothing written, no `token_renewed`, retried with back-off.
/// Walkthrough of 2026-12-06: each retry wrote them again, said `token_renewed` and was
/// due again at once, 12,414 times in 15 s.
#[tokio::test]
async fn a_fetch_of_the_credentials_in_use_is_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, handle) = engine_with_acme(dir.path());
    let mut events = handle.subscribe();
    // Renewed once: its token is the one in use.
    engine.renewing.insert("acme".into(), Pending::InFlight);
    let write = engine.begin_write("acme", creds(1)).expect("write");
    let Done::Renewed { account, result } = write.await else {
        panic!("not the write's report");
    };
    result.expect("written");
    engine.finish_renewal(&account, Ok(()));
    let effects = engine.on_snapshot(snapshot_of(dir.path()));
    engine.apply(effects.expect("taken in"));
    while events.try_recv().is_ok() {}
    let before = std::fs::read(dir.path().join("credentials")).expect("read");
    for failures in 1..=2 {
        engine.renewing.insert("acme".into(), Pending::InFlight);
        engine.finish_fetch("acme", Ok(creds(1)));
        let Some(Pending::Failed {
            retry_at,
            failures: f,
        }) = engine.renewing.get("acme")
        else {
            panic!("failure {failures}: not a failure");
        };
        assert_eq!(*f, failures);
        assert!(*retry_at >= Utc::now() + retry_delay(failures) - chrono::Duration::seconds(5));
        engine.renew_failures.insert("acme".into(), failures);
    }
    let mut types = Vec::new();
    while let Ok(e) = events.try_recv() {
        types.push(e.event.kind.type_name().to_owned());
    }
    assert!(!types.iter().any(|t| t == "token_renewed"), "{types:?}");
    assert_eq!(
        std::fs::read(dir.path().join("credentials")).expect("read"),
        before
    );
}

#[test]
fn failed_renewals_back_off_to_a_cap() {
    let minutes: Vec<i64> = (1..=8).map(|n| retry_delay(n).num_minutes()).collect();
    assert_eq!(minutes, [1, 2, 4, 8, 16, 16, 16, 16]);
    assert_eq!(retry_delay(u32::MAX).num_minutes(), 16);
}

#[test]
fn portal_names_and_reserved_roles() {
    assert_eq!(
        portal_name("111111111111_ReadOnly"),
        Some(("111111111111".into(), "ReadOnly".into()))
    );
    assert_eq!(portal_name("acme"), None);
    assert_eq!(portal_name("11111_ReadOnly"), None);
    assert_eq!(
        reserved_sso_role(
            "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_ReadOnly_0123abcd/jane"
        )
        .as_deref(),
        Some("ReadOnly")
    );
    assert_eq!(
        reserved_sso_role("arn:aws:sts::111111111111:assumed-role/dev/s1"),
        None
    );
}

const URL: &str = "https://acme.awsapps.com/start";

/// An engine whose config names `[sso-session acme]` (and SSO profile `p0` on it) and whose
/// SSO cache holds its token, ending at `until` (`refreshable`: with a refresh token),
/// keepers running; `acme` is the pasted block with `--portal`, accepted, its token ending
/// at `end`; `a0` is bound to `p0`.
async fn engine_on_portal(
    dir: &std::path::Path,
    end: DateTime<Utc>,
    until: DateTime<Utc>,
    refreshable: bool,
) -> Engine {
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        dir.join("credentials"),
        format!("{OLD}x_security_token_expires = {}\n", stamp(end)),
    )
    .expect("write");
    let config = format!(
        "[sso-session acme]\nsso_start_url = {URL}\nsso_region = eu-west-1\n\n[profile p0]\nsso_session = acme\nsso_account_id = 111111111111\nsso_role_name = ReadOnly\n"
    );
    let token = cmdr_signin::CachedToken {
        start_url: URL.into(),
        region: "eu-west-1".into(),
        access_token: "aoa-test-access".into(),
        expires_at: cmdr_signin::cache::timestamp(until),
        client_id: refreshable.then(|| "client".into()),
        client_secret: refreshable.then(|| "client-secret".into()),
        registration_expires_at: None,
        refresh_token: refreshable.then(|| "refresh".into()),
    };
    let mut sso_cache = BTreeMap::new();
    sso_cache.insert(
        crate::portal::Portals::file_name("acme"),
        serde_json::to_vec(&token).expect("json"),
    );
    let snapshot = Snapshot {
        config: FileRead::Bytes(config.into_bytes()),
        credentials: FileRead::Bytes(std::fs::read(dir.join("credentials")).expect("read")),
        sso_cache,
        sso_unreadable: Default::default(),
        sso_partial: Default::default(),
    };
    let (reread, _asked) = crate::watch::Reread::new();
    let (mut engine, _handle, _commands) = Engine::start(
        Arc::new(settings(dir)),
        move |_| snapshot.clone(),
        reread,
        Arc::new(crate::timers::SystemClock),
        None,
    )
    .expect("engine");
    let (news_tx, news_rx) = mpsc::channel(8);
    engine.keep_portals(
        crate::portal::Portals::new(
            dir.join("sso"),
            tokio_util::task::TaskTracker::new(),
            CancellationToken::new(),
            news_tx,
            Arc::new(crate::timers::SystemClock),
            Duration::from_secs(5),
        ),
        news_rx,
    );
    for (name, profile, portal) in [
        ("acme", "111111111111_ReadOnly", Some(URL.to_owned())),
        ("a0", "p0", None),
    ] {
        engine
            .add(cmdr_core::NewAccount {
                name: name.into(),
                profile: profile.into(),
                region: None,
                target: cmdr_core::Target::Aws,
                on_change: cmdr_core::OnChange::Ask,
                portal,
            })
            .expect("add");
    }
    // The keeper publishes what it holds as soon as it runs.
    let keeper = engine
        .portals
        .as_ref()
        .and_then(|p| p.get("acme"))
        .expect("keeper");
    let started = std::time::Instant::now();
    while keeper.info().state != "signed_in" {
        assert!(started.elapsed() < Duration::from_secs(10), "keeper");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.schedule_renewals();
    engine
}

fn state(engine: &Engine, name: &str) -> cmdr_proto::AccountState {
    engine
        .account_info(engine.accounts.get(name).expect("account"))
        .state
}

/// Issue 25 item 5: an account cmdrd renews before its token ends is not `expiring` (no
/// alarm) inside `warn_before`; one whose renewal failed, or whose portal's sign-in ends
/// before the renewal, is. A pasted block renews on its schedule; an SSO profile's token
/// is the portal's, which the keeper refreshes first when it can.
#[tokio::test]
async fn an_account_that_renews_itself_before_its_end_is_no_alarm() {
    let now = Utc::now();
    let end = now + chrono::Duration::minutes(12);
    let dir = tempfile::tempdir().expect("tempdir");
    // A refreshable portal whose token ends with the pasted block's: both renew
    // themselves (the block 6 minutes before its end, half its life; the SSO profile's
    // token, the portal's, refreshed by the keeper a third of its life before its end).
    let mut engine = engine_on_portal(dir.path(), end, end, true).await;
    let acme = engine.accounts.get("acme").expect("acme");
    let at = engine.renews_at(acme).expect("renews");
    assert!(at > now && at < end, "{at}");
    assert_eq!(state(&engine, "acme"), cmdr_proto::AccountState::Ok);
    let a0 = engine.accounts.get("a0").expect("a0");
    assert!(engine.renews_at(a0).is_some());
    assert_eq!(state(&engine, "a0"), cmdr_proto::AccountState::Ok);
    // A renewal that fails may fail again: the alarm is back until one succeeds, and its
    // `expiring_soon` (given while it was no alarm) is given again, once.
    let mut events = engine.events.subscribe();
    engine.tick();
    let soon = |events: &mut tokio::sync::broadcast::Receiver<EngineEvent>| {
        let mut n = 0;
        while let Ok(e) = events.try_recv() {
            if e.event.kind.account() == Some("acme") && e.event.kind.type_name() == "expiring_soon"
            {
                assert_eq!(
                    e.auto_renew,
                    n == 0,
                    "renewing at the first, an alarm after"
                );
                n += 1;
            }
        }
        n
    };
    assert_eq!(soon(&mut events), 1);
    for why in ["the portal is down", "still down"] {
        // As `start_renewal` does: a retry keeps its count of failures.
        if let Some(Pending::Failed { failures, .. }) = engine.renewing.get("acme") {
            engine.renew_failures.insert("acme".into(), *failures);
        }
        engine.renewing.insert("acme".into(), Pending::InFlight);
        engine.finish_fetch("acme", Err(why.into()));
        engine.tick();
    }
    assert_eq!(state(&engine, "acme"), cmdr_proto::AccountState::Expiring);
    let mut again = 0;
    while let Ok(e) = events.try_recv() {
        if e.event.kind.account() == Some("acme") && e.event.kind.type_name() == "expiring_soon" {
            assert!(!e.auto_renew, "an alarm now");
            again += 1;
        }
    }
    assert_eq!(again, 1, "given again once, not at every failure");
    // Under way: renewed now.
    engine.renewing.insert("acme".into(), Pending::InFlight);
    assert_eq!(state(&engine, "acme"), cmdr_proto::AccountState::Ok);

    // A portal without a refresh token: its session really ends in 12 minutes, and with
    // it the SSO profile's token (an alarm); the pasted block is still renewed 6 minutes
    // before its end, while signed in.
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_on_portal(dir.path(), end, end, false).await;
    assert!(
        engine
            .renews_at(engine.accounts.get("a0").expect("a0"))
            .is_none()
    );
    assert_eq!(state(&engine, "a0"), cmdr_proto::AccountState::Expiring);
    assert_eq!(state(&engine, "acme"), cmdr_proto::AccountState::Ok);
    // Signed in for less long than that: the renewal cannot happen, the end is an alarm.
    let dir = tempfile::tempdir().expect("tempdir");
    let short = now + chrono::Duration::minutes(3);
    let engine = engine_on_portal(dir.path(), end, short, false).await;
    assert!(
        engine
            .renews_at(engine.accounts.get("acme").expect("acme"))
            .is_none()
    );
    assert_eq!(state(&engine, "acme"), cmdr_proto::AccountState::Expiring);
}

/// `cmdrctl renew` right after a renewal (the one its own sign-in started) is answered with
/// that renewal, not a second fetch, write and `token_renewed` (walkthrough of 2026-12-06:
/// every renewal after a sign-in happened twice).
#[tokio::test]
async fn a_renew_request_right_after_a_renewal_is_answered_by_it() {
    let now = Utc::now();
    let end = now + chrono::Duration::minutes(12);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_on_portal(dir.path(), end, end, true).await;
    let renewed_until = now + chrono::Duration::hours(1);
    engine.renewed.insert(
        "acme".into(),
        (now - chrono::Duration::seconds(3), renewed_until),
    );
    let (reply, answer) = tokio::sync::oneshot::channel();
    engine.renew_now("acme", reply);
    let answered = answer.await.expect("answered").expect("renewed");
    assert_eq!(answered.expires_at, Some(renewed_until));
    assert!(
        !engine.renewing.contains_key("acme"),
        "a second renewal started"
    );
    // Long after it, a request renews again.
    engine.renewed.insert(
        "acme".into(),
        (now - chrono::Duration::minutes(5), renewed_until),
    );
    let (reply, _answer) = tokio::sync::oneshot::channel();
    engine.renew_now("acme", reply);
    assert!(matches!(
        engine.renewing.get("acme"),
        Some(Pending::InFlight)
    ));
}

/// A `renew` request that fails while a renewal was already failing counts on (the next
/// retry waits longer) and is not the first failure again, which would give the account's
/// `expiring_soon` alarm a second time (walkthrough of 2026-12-06).
#[tokio::test]
async fn a_renew_request_keeps_the_count_of_failures() {
    let now = Utc::now();
    let end = now + chrono::Duration::minutes(12);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = engine_on_portal(dir.path(), end, end, true).await;
    engine.renewing.insert(
        "acme".into(),
        Pending::Failed {
            retry_at: now + chrono::Duration::minutes(1),
            failures: 1,
        },
    );
    let (reply, _answer) = tokio::sync::oneshot::channel();
    engine.renew_now("acme", reply);
    engine.finish_fetch("acme", Err("the portal refused".into()));
    assert!(matches!(
        engine.renewing.get("acme"),
        Some(Pending::Failed { failures: 2, .. })
    ));
}
