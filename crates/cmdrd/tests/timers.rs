//! Expiry timers of the real engine on tokio's paused clock, with a wall clock the test
//! controls: warnings on time, one timer for the next deadline, and a clock jump (a laptop
//! waking from sleep) caught within a minute.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use cmdr_core::{NewAccount, OnChange, Target};
use cmdr_proto::EventKind;
use cmdrd::engine::Engine;
use cmdrd::timers::Clock;
use cmdrd::watch::{FileRead, Snapshot};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

mod common;
use common::settings;

/// Wall clock = base + tokio's (paused) elapsed time + any jump the test makes.
struct TestClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
    jump: Mutex<chrono::Duration>,
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).expect("elapsed");
        self.base + elapsed + *self.jump.lock().expect("lock")
    }
}

async fn next_kind(events: &mut broadcast::Receiver<cmdrd::engine::EngineEvent>) -> EventKind {
    loop {
        let event = events.recv().await.expect("event").event;
        if !matches!(event.kind, EventKind::AccountAdded { .. }) {
            return event.kind;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn warnings_fire_on_time_and_after_a_clock_jump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap();
    let clock = Arc::new(TestClock {
        base,
        start: tokio::time::Instant::now(),
        jump: Mutex::new(chrono::Duration::zero()),
    });
    let credentials = |expires: DateTime<Utc>| {
        format!(
            "[acme]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = s\n\
             aws_session_token = t-{}\nx_security_token_expires = {}\n",
            expires.timestamp(),
            expires.to_rfc3339()
        )
    };
    let snapshot = |text: String| Snapshot {
        config: FileRead::Missing,
        credentials: FileRead::Bytes(text.into_bytes()),
        sso_cache: Default::default(),
        sso_unreadable: Default::default(),
        sso_partial: None,
    };
    let expires = base + chrono::Duration::hours(1);
    // No watcher: the engine reads nothing, and a request waits for no read.
    let (reread, _) = cmdrd::watch::Reread::new();
    let (engine, handle, commands) = Engine::start(
        Arc::new(settings(dir.path())),
        |_| snapshot(credentials(expires)),
        reread,
        clock.clone(),
        None,
    )
    .expect("engine");
    let (snapshots_tx, snapshots) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(engine.run(commands, snapshots, cancel.clone()));
    let mut events = handle.subscribe();
    let added = handle
        .add(NewAccount {
            name: "acme".into(),
            profile: "acme".into(),
            region: None,
            target: Target::Aws,
            on_change: OnChange::Ask,
            portal: None,
        })
        .await
        .answer()
        .await;
    assert!(added.is_ok(), "{added:?}");

    // expiring_soon at expires - 15 min, within a second.
    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::ExpiringSoon { .. }), "{kind:?}");
    let late = clock.now() - (expires - chrono::Duration::minutes(15));
    assert!(
        late >= chrono::Duration::zero() && late <= chrono::Duration::seconds(1),
        "{late}"
    );

    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::Expired { .. }), "{kind:?}");
    let late = clock.now() - expires;
    assert!(
        late >= chrono::Duration::zero() && late <= chrono::Duration::seconds(1),
        "{late}"
    );

    // A new token, once accepted, re-arms; then the wall clock jumps 3 hours (suspend) while the
    // monotonic clock barely moves: `expired` must still come within a minute.
    let expires = clock.now() + chrono::Duration::hours(2);
    snapshots_tx
        .send(snapshot(credentials(expires)).into())
        .await
        .expect("send");
    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::ProfileChanged { .. }), "{kind:?}");
    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::TokenChanged { .. }), "{kind:?}");
    // Expiry follows the accepted token: accept the new one.
    let accepted = handle.accept("acme".into()).await.answer().await;
    assert!(accepted.is_ok(), "{accepted:?}");
    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::TokenAccepted { .. }), "{kind:?}");
    let before = tokio::time::Instant::now();
    *clock.jump.lock().expect("lock") += chrono::Duration::hours(3);
    let kind = next_kind(&mut events).await;
    assert!(matches!(kind, EventKind::Expired { .. }), "{kind:?}");
    assert!(
        before.elapsed() <= Duration::from_secs(60),
        "{:?}",
        before.elapsed()
    );

    // Nothing is due any more: the engine sleeps without a timer (no event within a day).
    let quiet = tokio::time::timeout(Duration::from_secs(86_400), events.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    cancel.cancel();
    task.await.expect("engine stops");
}
