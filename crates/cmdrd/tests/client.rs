//! The daemon in-process and cmdr-client over the real local socket of the platform (a Unix
//! socket, or on Windows the named pipe with its DACL and SID checks): handshake, status,
//! an account, a subscription that sees a changed credentials file, a second daemon for
//! the same data directory refused, and `daemon_stopping` at shutdown. Runs on Windows too
//! (under Wine in scripts/cross-check), where tests/ does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdr_client::Client;
use cmdr_proto::{AccountSpec, EventKind, Request, Response, TargetSpec};
use tokio_util::sync::CancellationToken;

mod common;
use common::settings;

fn credentials(token: &str) -> String {
    format!(
        "[acme]\naws_access_key_id = ASIACLIENTTEST\naws_secret_access_key = s-{token}\n\
         aws_session_token = t-{token}\n"
    )
}

/// Replaces the file by rename, as most editors do. On Windows (and Wine) a rename over a
/// file that the daemon is reading at that instant can be refused with "Access denied";
/// editors there retry, and so does this, for up to 5 s.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    let mut tries = 0;
    loop {
        match std::fs::rename(&tmp, path) {
            Ok(()) => return,
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("rename: {err:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_talks_to_the_daemon_over_the_platform_socket() {
    // A bound so that a lost event fails the test instead of hanging it; not a timing check.
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the scenario hung");
}

async fn scenario() {
    let dir = tempfile::tempdir().expect("tempdir");
    save(&dir.path().join("credentials"), &credentials("one"));
    let settings = settings(dir.path());
    let socket = settings.socket.path.clone();
    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn({
        let stop = stop.clone();
        cmdrd::run(settings, stop.cancelled_owned(), move || {
            let _ = ready_tx.send(());
        })
    });
    ready_rx.await.expect("daemon ready");

    let mut client = Client::connect(&socket, "client-test")
        .await
        .expect("connect");
    match client.request(Request::Status).await.expect("status") {
        Response::Status(status) => {
            assert_eq!(status.socket, socket.display().to_string());
            assert_eq!(status.profiles, 1);
        }
        other => panic!("expected status, got {other:?}"),
    }
    client
        .request(Request::AddAccount(AccountSpec {
            name: "acme".into(),
            profile: "acme".into(),
            region: None,
            target: TargetSpec {
                target: cmdr_proto::TargetKind::Aws,
                endpoint: None,
            },
            on_change: cmdr_proto::OnChange::Ask,
            portal: None,
        }))
        .await
        .expect("add account");

    // One daemon per data directory, whatever its socket.
    let mut second = common::settings(dir.path());
    second.socket.path = PathBuf::from(format!("{}-second", socket.display()));
    let refused = cmdrd::run(second, std::future::pending(), || {})
        .await
        .expect_err("a second daemon for the same data directory");
    assert!(
        refused
            .to_string()
            .contains(&format!("already running (socket {})", socket.display())),
        "{refused:#}"
    );

    let mut events = Client::connect(&socket, "client-test")
        .await
        .expect("connect");
    events.subscribe().await.expect("subscribe");
    save(&dir.path().join("credentials"), &credentials("two"));
    loop {
        let event = events.next_event().await.expect("event").expect("open");
        if let EventKind::TokenChanged { account, .. } = &event.kind {
            assert_eq!(account, "acme");
            break;
        }
    }

    stop.cancel();
    loop {
        let event = events.next_event().await.expect("event").expect("open");
        if matches!(event.kind, EventKind::DaemonStopping) {
            break;
        }
    }
    daemon.await.expect("join").expect("daemon run");
    assert!(
        Client::connect(&socket, "client-test").await.is_err(),
        "the socket is gone after shutdown"
    );
}
