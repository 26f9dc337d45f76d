//! Watching the AWS files: directory watches (never file watches, which die on a rename
//! save), symlink targets, the nearest existing ancestor of anything missing, a debounce,
//! and a content hash so that only real changes reach the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cmdr_client::userfile;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// Larger AWS files are refused rather than read (a safety cap, far above real files).
pub const MAX_FILE_LEN: u64 = userfile::MAX_USER_FILE_LEN;
/// File systems stamp modification times from a coarse clock (a few ms); a file modified
/// within this of a read may change again without its time moving.
const TIMESTAMP_GRAIN: Duration = Duration::from_secs(1);
const MAX_CACHE_FILE_LEN: u64 = 1 << 20;
const MAX_CACHE_FILES: usize = 1000;
/// Directory entries looked at in the SSO cache (a directory can hold millions).
const MAX_LISTED: usize = 100_000;
/// A storm of events still produces a read this often.
const MAX_DEBOUNCE_WAIT: Duration = Duration::from_millis(500);
/// A rename onto a watched file (vim, VS Code, JetBrains, `paste`) puts a complete file in
/// place at once: after this short pause, which still gathers the rest of a burst, it is
/// read without waiting out the whole debounce meant for writers that truncate first.
const RENAME_SETTLE: Duration = Duration::from_millis(3);
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

/// One file as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileRead {
    Missing,
    Bytes(Vec<u8>),
    /// Exists but cannot be read (permissions, a directory, too large).
    Failed(String),
}

/// Why a token file the config names cannot be used: the line (if known) and the message.
pub type SsoProblem = (Option<u32>, String);

/// Both files and the SSO cache, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub config: FileRead,
    pub credentials: FileRead,
    pub sso_cache: BTreeMap<String, Vec<u8>>,
    /// The token files the config names that exist but cannot be used, with why.
    pub sso_problems: BTreeMap<String, SsoProblem>,
}

impl Snapshot {
    pub fn read(targets: &Targets) -> Snapshot {
        let config = read_file(&targets.config);
        let credentials = read_file(&targets.credentials);
        let bytes = |read: &FileRead| match read {
            FileRead::Bytes(bytes) => bytes.clone(),
            _ => Vec::new(),
        };
        let wanted = cmdr_core::profile::sso_cache_files(&bytes(&config), &bytes(&credentials));
        let (sso_cache, sso_problems) = read_cache(&targets.sso_cache, &wanted);
        Snapshot {
            config,
            credentials,
            sso_cache,
            sso_problems,
        }
    }

    /// True when a read failed for want of descriptors: that says nothing about the file,
    /// so it is retried rather than reported.
    fn out_of_descriptors(&self) -> bool {
        let exhausted = [libc::EMFILE, libc::ENFILE]
            .map(|code| std::io::Error::from_raw_os_error(code).to_string());
        [&self.config, &self.credentials]
            .iter()
            .any(|read| matches!(read, FileRead::Failed(e) if exhausted.contains(e)))
    }

    pub fn digest(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }
}

/// Reads one AWS file with the shared bounded reader: regular files only, never blocking,
/// capped while reading.
pub(crate) fn read_file(path: &Path) -> FileRead {
    match userfile::read_bounded(path, MAX_FILE_LEN) {
        Ok(bytes) => FileRead::Bytes(bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => FileRead::Missing,
        Err(err) => FileRead::Failed(err.to_string()),
    }
}

/// The `*.json` files of the SSO token cache, sorted (at most [`MAX_LISTED`]).
fn cache_names(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<(String, PathBuf)> = entries
        .take(MAX_LISTED)
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".json").then(|| (name, e.path()))
        })
        .collect();
    names.sort();
    names
}

/// The SSO token cache: `*.json` files, bounded in number and size. The files the AWS
/// files name (`wanted`) are read first and always, and each that exists but is not a
/// usable token (unreadable, too large, not a token) is a problem; then others in sorted
/// order up to the bound, unreadable ones skipped: the cache holds unrelated files too.
fn read_cache(
    dir: &Path,
    wanted: &BTreeSet<String>,
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, SsoProblem>) {
    let mut out = BTreeMap::new();
    let mut problems = BTreeMap::new();
    // The files the config names first and always, with what is wrong with each.
    for name in wanted {
        match userfile::read_bounded(&dir.join(name), MAX_CACHE_FILE_LEN) {
            Ok(bytes) => {
                if let Some(problem) = cmdr_core::profile::sso_token_problem(&bytes) {
                    problems.insert(name.clone(), problem);
                }
                out.insert(name.clone(), bytes);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                problems.insert(name.clone(), (None, format!("cannot be read: {err}")));
            }
        }
    }
    for (name, path) in cache_names(dir).iter().take(MAX_CACHE_FILES) {
        if out.contains_key(name) || problems.contains_key(name) {
            continue;
        }
        if let Ok(bytes) = userfile::read_bounded(path, MAX_CACHE_FILE_LEN) {
            out.insert(name.to_owned(), bytes);
        }
    }
    (out, problems)
}

/// The identities of everything a [`Snapshot`] reads: when none changed since a read made
/// after the files' last modification, reading again would give the same bytes. This is
/// what keeps churn in a watched directory (a symlink target's, e.g. `/dev` or `/etc`)
/// from turning into re-reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(PathBuf, Option<userfile::Identity>)>);

impl Stamp {
    fn take(targets: &Targets) -> Stamp {
        let mut paths = vec![
            targets.config.clone(),
            targets.credentials.clone(),
            targets.sso_cache.clone(),
        ];
        paths.extend(cache_names(&targets.sso_cache).into_iter().map(|(_, p)| p));
        Stamp(
            paths
                .into_iter()
                .map(|p| {
                    let id = userfile::identity(&p).ok().flatten();
                    (p, id)
                })
                .collect(),
        )
    }

    /// True when every file was last modified well before `read_at` (ns since the epoch):
    /// a later write then moves its modification time past what we saw.
    fn settled_before(&self, read_at: i128) -> bool {
        self.0.iter().all(|(_, id)| {
            id.is_none_or(|id| id.modified_ns() + TIMESTAMP_GRAIN.as_nanos() as i128 <= read_at)
        })
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
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
}

impl WriteSigns {
    /// Starts afresh for the events after a read.
    fn clear(&self) {
        self.renamed.store(false, Ordering::SeqCst);
        self.closed.store(false, Ordering::SeqCst);
        self.partial.store(false, Ordering::SeqCst);
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
            }
            EventKind::Access(_) => {}
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                if event.paths.last().is_some_and(named) =>
            {
                self.renamed.store(true, Ordering::SeqCst);
            }
            // Renamed away, or onto another file: nothing is half-written.
            EventKind::Modify(ModifyKind::Name(_)) => {}
            _ if ours => self.partial.store(true, Ordering::SeqCst),
            _ => {}
        }
    }
}

/// The watcher actor: sends a [`Snapshot`] to the engine whenever the bytes change.
pub struct FileWatcher {
    pub targets: Targets,
    pub debounce: Duration,
    pub out: mpsc::Sender<Snapshot>,
    pub rescan: mpsc::Receiver<()>,
    /// The digest of the snapshot the engine already has.
    pub last_digest: u64,
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
        // The engine read the files before the watches existed: check once more.
        self.check(&cancel, &mut stamp, true).await;
        loop {
            let idle = if degraded {
                DEGRADED_RESCAN
            } else {
                SAFETY_RESCAN
            };
            // Rescans read whatever the identities say; events only when they changed.
            let force = tokio::select! {
                () = cancel.cancelled() => return,
                Some(()) = wake.recv() => {
                    self.settle(&mut wake, &seen).await;
                    false
                }
                Some(()) = self.rescan.recv() => true,
                () = sleep(idle) => true,
            };
            degraded = update_watches(watcher.as_mut(), &self.targets, &mut watched, &mut failing);
            self.report_polling(watcher.is_some().then_some(&failing));
            self.check(&cancel, &mut stamp, force).await;
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
    async fn settle(&mut self, wake: &mut mpsc::Receiver<()>, seen: &WriteSigns) {
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
                    seen.clear();
                    return;
                }
                got = wake.recv() => {
                    if got.is_none() || started.elapsed() >= MAX_DEBOUNCE_WAIT {
                        seen.clear();
                        return;
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

    /// Reads a snapshot and forwards it if its bytes changed. Unless `force`, nothing is
    /// read when no identity changed since the last read (see [`Stamp`]).
    async fn check(
        &mut self,
        cancel: &CancellationToken,
        stamp: &mut Option<(Stamp, i128)>,
        force: bool,
    ) {
        let targets = self.targets.clone();
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
                let snapshot = Snapshot::read(&targets);
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
        let digest = snapshot.digest();
        if digest != self.last_digest {
            self.last_digest = digest;
            tokio::select! {
                _ = self.out.send(snapshot) => {}
                () = cancel.cancelled() => {}
            }
        }
    }
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

    #[test]
    fn reads_are_bounded_and_classified() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_file(&tmp.path().join("nope")), FileRead::Missing);
        assert!(matches!(read_file(tmp.path()), FileRead::Failed(_)));
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).expect("mkdir");
        std::fs::write(cache.join("a.json"), "{}").expect("write");
        std::fs::write(cache.join("b.txt"), "{}").expect("write");
        assert_eq!(
            read_cache(&cache, &BTreeSet::new())
                .0
                .keys()
                .collect::<Vec<_>>(),
            vec!["a.json"]
        );
    }
}
