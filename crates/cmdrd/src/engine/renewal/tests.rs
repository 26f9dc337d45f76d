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
