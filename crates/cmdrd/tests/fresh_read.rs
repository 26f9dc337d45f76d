//! The engine reads the AWS files only through the watcher: an `add` of a profile whose
//! secrets the lean view does not keep asks the watcher for a fresh read and is answered
//! once that read is taken in, so a hand-out right after has the profile's keys; commands
//! sent meanwhile wait, in order. The watcher here is the test, answering by hand.

use std::sync::Arc;
use std::time::Duration;

use cmdr_core::{NewAccount, OnChange, Target};
use cmdrd::engine::Engine;
use cmdrd::timers::SystemClock;
use cmdrd::watch::{Delivery, FileRead, Reread, Snapshot};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod common;
use common::settings;

fn snapshot() -> Snapshot {
    Snapshot {
        config: FileRead::Missing,
        credentials: FileRead::Bytes(
            b"[acme]\naws_access_key_id = AKIAFRESHREADEXAMPLE\naws_secret_access_key = fresh-secret\n"
                .to_vec(),
        ),
        sso_cache: Default::default(),
        sso_unreadable: Default::default(),
    }
}

#[tokio::test]
async fn an_add_waits_for_a_fresh_read_then_hands_out_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reread, mut asked) = Reread::new();
    let (engine, handle, commands) = Engine::start(
        Arc::new(settings(dir.path())),
        snapshot(),
        reread,
        Arc::new(SystemClock),
        None,
    )
    .expect("engine");
    let (deliveries, snapshots) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(engine.run(commands, snapshots, cancel.clone()));

    let added = handle
        .add(NewAccount {
            name: "acme".into(),
            profile: "acme".into(),
            region: None,
            target: Target::Aws,
            on_change: OnChange::Ask,
            portal: None,
        })
        .await;
    // Queued after the add: answered only after it.
    let status = handle.status().await;
    tokio::time::timeout(Duration::from_secs(5), asked.fresh.changed())
        .await
        .expect("the engine asks for a fresh read")
        .expect("asked");
    let request = *asked.fresh.borrow_and_update();
    // An older read, not the one asked for, does not answer it.
    deliveries.send(snapshot().into()).await.expect("send");
    deliveries
        .send(Delivery {
            snapshot: snapshot(),
            answers: Some(request),
        })
        .await
        .expect("send");
    let account = added.answer().await.expect("added");
    assert_eq!(account.name, "acme");
    let status = status.answer().await.expect("status");
    assert_eq!(status.accounts.iter().map(|c| c.count).sum::<u32>(), 1);
    let handout = handle
        .hand_out("acme".into(), false)
        .await
        .answer()
        .await
        .expect("hand-out");
    assert_eq!(handout.credentials.access_key_id, "AKIAFRESHREADEXAMPLE");

    cancel.cancel();
    task.await.expect("engine");
}
