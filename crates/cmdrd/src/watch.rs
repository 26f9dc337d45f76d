//! Watching the AWS files: directory watches (never file watches, which die on a rename
//! save), symlink targets, the nearest existing ancestor of anything missing, a debounce,
//! a content hash so that only real changes reach the engine, and a second look at a file
//! found shorter after an in-place write (maybe half-written) before it is believed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

mod read;
mod reread;

pub use read::{FileProblem, FileRead, Last, MAX_FILE_LEN, Snapshot, TokenFiles};
use read::{Stamp, now_ns};
pub use reread::{Delivery, Reread, RereadRx};

/// A storm of events still produces a read this often.
const MAX_DEBOUNCE_WAIT: Duration = Duration::from_millis(500);
/// A rename onto a watched file (vim, VS Code, JetBrains, `paste`) puts a complete file in
/// place at once: after this short pause, which still gathers the rest of a burst, it is
/// read without waiting out the whole debounce meant for writers that truncate first.
const RENAME_SETTLE: Duration = Duration::from_millis(3);
/// A read after an in-place write that finds a file shorter than the engine's copy (empty,
/// or cut short: Python's `truncate(0)` then `write`, a writer flushing in pieces) is held
/// back and read again once events stop for this long: a writer still busy sends more.
const HALF_WRITTEN_SETTLE: Duration = Duration::from_secs(1);
/// However busy the writer, a shorter file is believed this long after it was first read.
const HALF_WRITTEN_MAX: Duration = Duration::from_secs(2);
/// Reads that fail for want of descriptors are retried this often, this many times.
const DESCRIPTOR_RETRY: Duration = Duration::from_millis(100);
const DESCRIPTOR_RETRIES: usize = 20;
/// A cheap safety check for what events miss (network file systems, WSL).
pub const SAFETY_RESCAN: Duration = Duration::from_secs(60);
/// Rescan interval while some directory could not be watched (e.g. inotify limits).
const DEGRADED_RESCAN: Duration = Duration::from_secs(2);

/// The paths to watch.
#[derive(Debug, Clone)]
pub struct Targets {
    pub config: PathBuf,
    pub credentials: PathBuf,
    pub sso_cache: PathBuf,
}

/// A read held back as maybe half-written (see [`HALF_WRITTEN_SETTLE`]).
#[derive(Debug, Clone, Copy)]
struct Held {
    /// When the first such read was made.
    since: Instant,
    /// When to read again and believe what is there.
    until: Instant,
}

/// The directories to watch so that every way of saving the targets is seen.
pub fn desired_dirs(targets: &Targets) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for file in [&targets.config, &targets.credentials] {
        add_file(file, &mut dirs, 0);
    }
    dirs.insert(nearest_existing_dir(&targets.sso_cache));
    if let Some(parent) = targets.sso_cache.parent() {
        dirs.insert(nearest_existing_dir(parent));
    }
    dirs
}

fn add_file(file: &Path, dirs: &mut BTreeSet<PathBuf>, depth: usize) {
    let Some(parent) = file.parent() else { return };
    dirs.insert(nearest_existing_dir(parent));
    // A symlinked directory (stow links `~/.aws` itself): a watch through it follows the
    // old target, so watch where the link lives too, to see it replaced.
    if parent
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
        && let Some(grandparent) = parent.parent()
    {
        dirs.insert(nearest_existing_dir(grandparent));
    }
    // A symlinked file: its target's directory holds the real changes.
    if depth < 8
        && let Ok(target) = std::fs::read_link(file)
    {
        let target = if target.is_absolute() {
            target
        } else {
            parent.join(target)
        };
        // `../dotfiles/credentials` is resolved by the kernel, not lexically.
        let target = match (
            target.parent().map(std::fs::canonicalize),
            target.file_name(),
        ) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => target,
        };
        add_file(&target, dirs, depth + 1);
    }
}

fn nearest_existing_dir(path: &Path) -> PathBuf {
    let mut current = path;
    loop {
        if current.is_dir() {
            return current.to_owned();
        }
        match current.parent() {
            Some(parent) => current = parent,
            None => return PathBuf::from("/"),
        }
    }
}

/// What the events since the last read did to the watched files themselves.
#[derive(Default)]
struct WriteSigns {
    /// Something was renamed onto one of them.
    renamed: AtomicBool,
    /// A writer closed one after writing it in place (`aws configure set`, `sed -i`
    /// without rename, editors with backupcopy=yes): its write is complete.
    closed: AtomicBool,
    /// They were written, created, truncated or removed in place since: maybe half-written.
    partial: AtomicBool,
    /// They were written or truncated in place since the last read, closed or not: a
    /// shorter file may be a writer's intermediate state.
    in_place: AtomicBool,
}

impl WriteSigns {
    /// Starts afresh for the events after a read.
    fn clear(&self) {
        self.renamed.store(false, Ordering::SeqCst);
        self.closed.store(false, Ordering::SeqCst);
        self.partial.store(false, Ordering::SeqCst);
        self.in_place.store(false, Ordering::SeqCst);
    }

    /// What the events since the last read did, and starts afresh.
    fn take(&self) -> Read {
        let read = if self.in_place.load(Ordering::SeqCst) {
            Read::InPlace
        } else if self.renamed.load(Ordering::SeqCst) {
            Read::Renamed
        } else {
            Read::Events
        };
        self.clear();
        read
    }

    /// Only complete files were put in place: renamed onto, or closed after writing.
    fn complete(&self) -> bool {
        (self.renamed.load(Ordering::SeqCst) || self.closed.load(Ordering::SeqCst))
            && !self.partial.load(Ordering::SeqCst)
    }

    fn note(&self, event: &notify::Event, names: &[std::ffi::OsString]) {
        let named = |p: &PathBuf| p.file_name().is_some_and(|n| names.iter().any(|m| m == n));
        let ours = event.paths.iter().any(named);
        match event.kind {
            // The writes before it came first: the file is whole again.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) if ours => {
                self.partial.store(false, Ordering::SeqCst);
                self.closed.store(true, Ordering::SeqCst);
                self.in_place.store(true, Ordering::SeqCst);
            }
            EventKind::Access(_) => {}
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                if event.paths.last().is_some_and(named) =>
            {
                self.renamed.store(true, Ordering::SeqCst);
            }
            // Renamed away, or onto another file: nothing is half-written.
            EventKind::Modify(ModifyKind::Name(_)) => {}
            _ if ours => {
                self.partial.store(true, Ordering::SeqCst);
                if matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_)) {
                    self.in_place.store(true, Ordering::SeqCst);
                }
            }
            _ => {}
        }
    }
}

/// The watcher actor: sends a [`Snapshot`] to the engine whenever the bytes change, and
/// whenever the engine asks for a fresh read ([`Reread`]).
pub struct FileWatcher {
    pub targets: Targets,
    pub debounce: Duration,
    pub out: mpsc::Sender<Delivery>,
    pub asked: RereadRx,
    /// A fresh read the engine asked for that no forwarded snapshot has answered yet.
    pub pending: Option<u64>,
    /// What the engine already has (see [`Last`]).
    pub last: Last,
    /// When a rename was last read after only [`RENAME_SETTLE`].
    pub last_quick: Option<Instant>,
    /// Directories rescanned because they cannot be watched (inotify exhausted): `status`.
    pub polling: tokio::sync::watch::Sender<BTreeSet<PathBuf>>,
}

impl FileWatcher {
    pub async fn run(mut self, cancel: CancellationToken) {
        let (wake_tx, mut wake) = mpsc::channel::<()>(1);
        let seen = Arc::new(WriteSigns::default());
        let names: Vec<std::ffi::OsString> = [&self.targets.config, &self.targets.credentials]
            .iter()
            .filter_map(|p| p.file_name().map(ToOwned::to_owned))
            .collect();
        let callback_seen = Arc::clone(&seen);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = &res {
                callback_seen.note(event, &names);
            }
            if let Ok(event) = &res
                && event.need_rescan()
            {
                tracing::warn!("file events were lost (event queue overflow); rescanning");
            }
            let relevant = match res {
                // Our own reads show up as access events: only close-after-write matters.
                Ok(event) => match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => true,
                },
                // An error means events may have been lost: rescan.
                Err(err) => {
                    tracing::warn!(error = %err, "file watcher error; rescanning");
                    true
                }
            };
            if relevant {
                // Full means a wake-up is already pending; one is enough.
                let _ = wake_tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(err) => {
                tracing::warn!(error = %err, "file watching unavailable; rescanning every {DEGRADED_RESCAN:?}");
                None
            }
        };
        let mut watched = BTreeSet::new();
        let mut failing = BTreeSet::new();
        let mut degraded =
            update_watches(watcher.as_mut(), &self.targets, &mut watched, &mut failing);
        self.report_polling(watcher.is_some().then_some(&failing));
        let mut stamp = None;
        let mut held: Option<Held> = None;
        // The engine read the files before the watches existed: check once more.
        self.check(&cancel, &mut stamp, Read::Rescan, &mut held)
            .await;
        loop {
            let idle = if degraded {
                DEGRADED_RESCAN
            } else {
                SAFETY_RESCAN
            };
            let until = held.map(|h| h.until);
            // Rescans read whatever the identities say; events only when they changed.
            let read = tokio::select! {
                () = cancel.cancelled() => return,
                Some(()) = wake.recv() => self.settle(&mut wake, &seen).await,
                Some(()) = self.asked.rescan.recv() => Read::Rescan,
                Ok(()) = self.asked.fresh.changed() => {
                    self.pending = Some(*self.asked.fresh.borrow_and_update());
                    Read::Rescan
                }
                () = sleep(idle) => Read::Rescan,
                () = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                    Read::Settled
                }
            };
            degraded = update_watches(watcher.as_mut(), &self.targets, &mut watched, &mut failing);
            self.report_polling(watcher.is_some().then_some(&failing));
            self.check(&cancel, &mut stamp, read, &mut held).await;
        }
    }

    /// Tells `polling` the directories rescanned instead of watched (`None`: no watcher).
    fn report_polling(&self, failing: Option<&BTreeSet<PathBuf>>) {
        let (polling, targets) = (&self.polling, &self.targets);
        let now = failing.cloned().unwrap_or_else(|| desired_dirs(targets));
        polling.send_if_modified(|dirs| std::mem::replace(dirs, now.clone()) != now);
    }

    /// Waits until events stop for `debounce` (at most `MAX_DEBOUNCE_WAIT` in a storm);
    /// when the only events on the watched files put complete files in place (a rename
    /// onto them, a close after writing), for [`RENAME_SETTLE`] — at most once per
    /// `debounce`, so a storm of saves is still read about as often as any other storm.
    ///
    /// Returns what the events did to the watched files.
    async fn settle(&mut self, wake: &mut mpsc::Receiver<()>, seen: &WriteSigns) -> Read {
        let started = Instant::now();
        loop {
            let quick = seen.complete()
                && self
                    .last_quick
                    .is_none_or(|at| at.elapsed() >= self.debounce);
            let quiet = if quick {
                RENAME_SETTLE.min(self.debounce)
            } else {
                self.debounce
            };
            tokio::select! {
                () = sleep(quiet) => {
                    // A write that began during a short pause gets the whole debounce, and
                    // so does an empty file closed after writing: `: > file` first, then
                    // the rewrite in a second open.
                    if quick && (!seen.complete() || self.closed_empty(seen)) {
                        seen.partial.store(true, Ordering::SeqCst);
                        continue;
                    }
                    if quick {
                        self.last_quick = Some(Instant::now());
                    }
                    return seen.take();
                }
                got = wake.recv() => {
                    if got.is_none() || started.elapsed() >= MAX_DEBOUNCE_WAIT {
                        return seen.take();
                    }
                }
            }
        }
    }

    /// A file closed after writing that is now empty: probably truncated, to be rewritten.
    fn closed_empty(&self, seen: &WriteSigns) -> bool {
        seen.closed.load(Ordering::SeqCst)
            && [&self.targets.config, &self.targets.credentials]
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0))
    }

    /// Reads a snapshot and forwards it if its bytes changed. After events, nothing is
    /// read when no identity changed since the last read (see [`Stamp`]). A file found
    /// shorter after an in-place write is held back (`held`) until the writer is done: read
    /// again [`HALF_WRITTEN_SETTLE`] after the last event, and believed then, or at the
    /// latest [`HALF_WRITTEN_MAX`] after it was first seen.
    async fn check(
        &mut self,
        cancel: &CancellationToken,
        stamp: &mut Option<(Stamp, i128)>,
        why: Read,
        held: &mut Option<Held>,
    ) {
        let force = matches!(why, Read::Rescan | Read::Settled);
        let targets = self.targets.clone();
        let named = Arc::clone(&self.asked.named.borrow());
        let last = stamp.take();
        let read = tokio::task::spawn_blocking(move || {
            let read_at = now_ns();
            let now = Stamp::take(&targets);
            if !force
                && let Some((before, at)) = &last
                && *before == now
                && now.settled_before(*at)
            {
                return (None, last);
            }
            // Out of descriptors says nothing about the files: try again shortly (a flood
            // of connections is being shed meanwhile), and report nothing.
            tracing::trace!("reading the watched files");
            for _ in 0..DESCRIPTOR_RETRIES {
                let snapshot = Snapshot::read(&targets, &named);
                if !snapshot.out_of_descriptors() {
                    return (Some(snapshot), Some((now, read_at)));
                }
                std::thread::sleep(DESCRIPTOR_RETRY);
            }
            tracing::warn!("out of file descriptors; reading the files again at the next event");
            (None, None)
        })
        .await;
        let Ok((snapshot, taken)) = read else {
            return;
        };
        *stamp = taken;
        let Some(snapshot) = snapshot else { return };
        let now = Last::of(&snapshot);
        if now.digest == self.last.digest {
            *held = None;
            // Unchanged, but the engine asked for it.
            if let Some(answers) = self.pending.take() {
                self.forward(cancel, snapshot, Some(answers)).await;
            }
            return;
        }
        // In place, or anything but a rename while an earlier read is held: the writer may
        // be busy. (A rename puts a whole file in place.)
        let suspect = match why {
            Read::InPlace => true,
            Read::Events | Read::Rescan => held.is_some(),
            Read::Renamed | Read::Settled => false,
        };
        if suspect && self.last.shrunk_in(&now) {
            let at = Instant::now();
            let since = held.map_or(at, |h| h.since);
            let until = (at + HALF_WRITTEN_SETTLE).min(since + HALF_WRITTEN_MAX);
            if until > at {
                tracing::debug!(
                    "a watched file is shorter after an in-place write: maybe half-written; reading it again"
                );
                *held = Some(Held { since, until });
                return;
            }
        }
        if held.take().is_some() {
            tracing::debug!("the held read settled");
        }
        self.last = now;
        let answers = self.pending.take();
        self.forward(cancel, snapshot, answers).await;
    }

    async fn forward(&self, cancel: &CancellationToken, snapshot: Snapshot, answers: Option<u64>) {
        let delivery = Delivery { snapshot, answers };
        tokio::select! {
            _ = self.out.send(delivery) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// Why the watcher reads the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// After events that renamed a file onto a watched one (and wrote none in place).
    Renamed,
    /// After other events: a removal, a directory change.
    Events,
    /// After events that wrote a watched file in place.
    InPlace,
    /// A rescan: the engine asked, the safety interval passed, or events were lost.
    Rescan,
    /// A held read's settle time passed: believe what is there now.
    Settled,
}

/// Brings the set of watched directories in line with what the targets need now.
/// Every desired directory is (re)added each time: inotify hands back the same watch for
/// the same inode, so this is cheap, and it revives a watch that died with a directory
/// removed and recreated at once, which the file system may give the same inode number.
/// Returns true when some directory could not be watched (so we fall back to rescans).
fn update_watches(
    watcher: Option<&mut notify::RecommendedWatcher>,
    targets: &Targets,
    watched: &mut BTreeSet<PathBuf>,
    failing: &mut BTreeSet<PathBuf>,
) -> bool {
    let Some(watcher) = watcher else { return true };
    let desired = desired_dirs(targets);
    watched.retain(|dir| {
        if desired.contains(dir) {
            return true;
        }
        let _ = watcher.unwatch(dir);
        tracing::debug!(dir = %dir.display(), "unwatched");
        false
    });
    failing.retain(|dir| desired.contains(dir));
    for dir in desired {
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                if watched.insert(dir.clone()) {
                    tracing::debug!(dir = %dir.display(), "watching");
                }
                failing.remove(&dir);
            }
            Err(err) => {
                if failing.insert(dir.clone()) {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot watch directory; falling back to periodic rescans");
                }
            }
        }
    }
    !failing.is_empty()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn watches_parents_ancestors_and_symlink_targets() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path();
        let aws = home.join(".aws");
        let targets = Targets {
            config: aws.join("config"),
            credentials: aws.join("credentials"),
            sso_cache: aws.join("sso").join("cache"),
        };
        // Nothing exists yet: the home directory stands in.
        assert_eq!(desired_dirs(&targets), BTreeSet::from([home.to_owned()]));

        std::fs::create_dir(&aws).expect("mkdir");
        let dotfiles = home.join("dotfiles");
        std::fs::create_dir(&dotfiles).expect("mkdir");
        std::fs::write(dotfiles.join("credentials"), "").expect("write");
        std::os::unix::fs::symlink("../dotfiles/credentials", aws.join("credentials"))
            .expect("symlink");
        let dirs = desired_dirs(&targets);
        assert!(dirs.contains(&aws), "{dirs:?}");
        assert!(dirs.contains(&dotfiles), "{dirs:?}");
    }
}
