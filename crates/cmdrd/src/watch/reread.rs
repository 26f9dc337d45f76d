//! What the engine and the watcher say to each other: the engine's requests for a read
//! and the token files its parse named ([`Reread`]), and the snapshots on their way to it
//! ([`Delivery`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Snapshot, TokenFiles};

/// What the engine may ask of the watcher, and what it tells it. It never awaits the
/// watcher: a rescan is a `try_send` on a channel of one (full means one is pending
/// already), a fresh read a counter on a `watch` channel, and the token files its parse
/// named a value on another; none of these can block. Only the watcher awaits the engine
/// (sending snapshots), so the two cannot wait on each other.
///
/// The token files (only a cache holding more files than are read needs them): the
/// watcher looks up those last told; a snapshot read before the engine told a name lacks
/// that file, and the engine, seeing its parse name a file the snapshot did not look up
/// (`Snapshot::sso_partial`), asks for a read. It tells the names before it asks, so that
/// read, like every later one, looks them up; its names make its digest differ, so it is
/// forwarded. The engine lays such a snapshot aside at most once in a row (the engine's
/// `on_snapshot`), so a stream of changes cannot stall it. No change is missed, and the
/// files are parsed only by the engine.
#[derive(Debug, Clone)]
pub struct Reread {
    rescan: mpsc::Sender<()>,
    fresh: tokio::sync::watch::Sender<u64>,
    named: tokio::sync::watch::Sender<TokenFiles>,
}

/// The watcher's end of [`Reread`].
pub struct RereadRx {
    pub rescan: mpsc::Receiver<()>,
    pub fresh: tokio::sync::watch::Receiver<u64>,
    pub named: tokio::sync::watch::Receiver<TokenFiles>,
}

impl Reread {
    pub fn new() -> (Reread, RereadRx) {
        let (rescan, rescan_rx) = mpsc::channel(1);
        let (fresh, fresh_rx) = tokio::sync::watch::channel(0);
        let (named, named_rx) = tokio::sync::watch::channel(TokenFiles::default());
        let rx = RereadRx {
            rescan: rescan_rx,
            fresh: fresh_rx,
            named: named_rx,
        };
        (
            Reread {
                rescan,
                fresh,
                named,
            },
            rx,
        )
    }

    /// Tells the watcher the token files the engine's parse found named: every read it
    /// starts from now on looks them up first.
    pub fn name(&self, files: &BTreeSet<String>) {
        self.named.send_if_modified(|now| {
            let changed = **now != *files;
            if changed {
                *now = Arc::new(files.clone());
            }
            changed
        });
    }

    /// The token files last told ([`Reread::name`]).
    pub fn named(&self) -> TokenFiles {
        Arc::clone(&self.named.borrow())
    }

    /// Read the files again (a file that did not parse may have been caught mid-write);
    /// forwarded only if they changed.
    pub fn rescan(&self) {
        let _ = self.rescan.try_send(());
    }

    /// Read the files now and forward them even if unchanged, as a [`Delivery`] that
    /// answers the returned request; `None` when no watcher runs.
    pub fn fresh(&self) -> Option<u64> {
        if self.fresh.is_closed() {
            return None;
        }
        let mut asked = 0;
        self.fresh.send_modify(|n| {
            *n += 1;
            asked = *n;
        });
        Some(asked)
    }
}

/// A snapshot on its way to the engine; `answers`: the latest [`Reread::fresh`] request
/// whose read it is (every earlier one too).
#[derive(Debug)]
pub struct Delivery {
    pub snapshot: Snapshot,
    pub answers: Option<u64>,
}

impl From<Snapshot> for Delivery {
    fn from(snapshot: Snapshot) -> Delivery {
        Delivery {
            snapshot,
            answers: None,
        }
    }
}
