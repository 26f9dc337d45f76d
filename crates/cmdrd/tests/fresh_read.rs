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
        sso_partial: None,
    }
}

#[tokio::test]
async fn an_add_waits_for_a_fresh_read_then_hands_out_the_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reread, mut asked) = Reread::new();
    let (engine, handle, commands) = Engine::start(
        Arc::new(settings(dir.path())),
        |_| snapshot(),
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

/// A config whose `proc` profile's `credential_process` prints keys `key`.
// The profile's `credential_process` is a `printf` for a Unix shell (Windows runs it with
// cmd, which has none): this test and its snapshot are Unix-only.
#[cfg(unix)]
fn process_snapshot(key: &str) -> Snapshot {
    let config = format!(
        "[profile proc]\ncredential_process = printf '{{\"Version\": 1, \"AccessKeyId\": \"{key}\", \"SecretAccessKey\": \"process-secret\"}}'\n"
    );
    Snapshot {
        config: FileRead::Bytes(config.into_bytes()),
        credentials: FileRead::Missing,
        sso_cache: Default::default(),
        sso_unreadable: Default::default(),
        sso_partial: None,
    }
}

/// A profile the SDK's providers resolve gets the files as the watcher read them, never
/// the disk (which here says otherwise): the engine keeps their text only while an account
/// needs it, so an `add` of such a profile asks for a fresh read first, and a hand-out
/// right after resolves from it; a later snapshot is what the next resolution uses.
#[cfg(unix)]
#[tokio::test]
async fn the_sdk_resolves_from_the_files_the_watcher_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config"),
        "[profile proc]\ncredential_process = printf '{\"Version\": 1, \"AccessKeyId\": \"AKIAONDISKNOTREAD\", \"SecretAccessKey\": \"disk\"}'\n",
    )
    .expect("config on disk");
    let (reread, mut asked) = Reread::new();
    let (engine, handle, commands) = Engine::start(
        Arc::new(settings(dir.path())),
        |_| process_snapshot("AKIAFIRSTREADEXAMPLE"),
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
            name: "proc".into(),
            profile: "proc".into(),
            region: None,
            target: Target::Aws,
            on_change: OnChange::Ask,
            portal: None,
        })
        .await;
    tokio::time::timeout(Duration::from_secs(5), asked.fresh.changed())
        .await
        .expect("the engine asks for a fresh read")
        .expect("asked");
    let request = *asked.fresh.borrow_and_update();
    deliveries
        .send(Delivery {
            snapshot: process_snapshot("AKIAFRESHREADEXAMPLE"),
            answers: Some(request),
        })
        .await
        .expect("send");
    added.answer().await.expect("added");
    let key = |handle: &cmdrd::engine::EngineHandle| {
        let handle = handle.clone();
        async move {
            handle
                .hand_out("proc".into(), true)
                .await
                .answer()
                .await
                .expect("hand-out")
                .credentials
                .access_key_id
                .clone()
        }
    };
    assert_eq!(key(&handle).await, "AKIAFRESHREADEXAMPLE");

    // The next change reaches the SDK through the watcher too.
    deliveries
        .send(process_snapshot("AKIASECONDREADEXAMPLE").into())
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = key(&handle).await;
        if now == "AKIASECONDREADEXAMPLE" {
            break;
        }
        assert_eq!(now, "AKIAFRESHREADEXAMPLE");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second read never reached the SDK"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cancel.cancel();
    task.await.expect("engine");
}
