//! Reading what the watcher watches: both AWS files and the SSO token cache at one
//! moment (bounded, regular files only), their identities, and what the engine already has.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cmdr_config::userfile;

use super::Targets;

/// Larger AWS files are refused rather than read (a safety cap, far above real files).
pub const MAX_FILE_LEN: u64 = userfile::MAX_USER_FILE_LEN;
/// File systems stamp modification times from a coarse clock (a few ms); a file modified
/// within this of a read may change again without its time moving.
const TIMESTAMP_GRAIN: Duration = Duration::from_secs(1);
const MAX_CACHE_FILE_LEN: u64 = 1 << 20;
const MAX_CACHE_FILES: usize = 1000;
/// Directory entries looked at in the SSO cache (a directory can hold millions).
const MAX_LISTED: usize = 100_000;

/// One file as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileRead {
    Missing,
    Bytes(Vec<u8>),
    /// Exists but cannot be read (permissions, a directory, too large).
    Failed(String),
}

/// Why a file cannot be used (an AWS file that does not parse, a token file the config
/// names that is not a token): the line (if known) and the message.
pub type FileProblem = (Option<u32>, String);

/// The SSO token files the AWS files name, as the engine's last parse found them
/// (`Reread::name`): a cache holding more files than are read has these read first.
pub type TokenFiles = Arc<BTreeSet<String>>;

/// Both files and the SSO cache, read at one moment. Nothing here is parsed: the engine
/// parses the AWS files once per change, and learns from that parse which token files
/// they name (and so which of `sso_cache` and `sso_unreadable` are problems).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub config: FileRead,
    pub credentials: FileRead,
    pub sso_cache: BTreeMap<String, Vec<u8>>,
    /// Token cache files that exist but could not be read, with why.
    pub sso_unreadable: BTreeMap<String, String>,
    /// `Some` when the cache held more files than are read: the token files the engine
    /// had named, which were read first (the rest in sorted order, up to the bound). A
    /// parse that names a file not in it has not seen that file. Part of the digest, so a
    /// read with new names is forwarded even if the bytes are the same.
    pub sso_partial: Option<TokenFiles>,
}

impl Snapshot {
    /// Reads both files and the cache; `named`: the token files to look up first.
    pub fn read(targets: &Targets, named: &TokenFiles) -> Snapshot {
        let config = read_file(&targets.config);
        let credentials = read_file(&targets.credentials);
        let (sso_cache, sso_unreadable, partial) = read_cache(&targets.sso_cache, named);
        Snapshot {
            config,
            credentials,
            sso_cache,
            sso_unreadable,
            sso_partial: partial.then(|| Arc::clone(named)),
        }
    }

    /// True when a read failed for want of descriptors: that says nothing about the file,
    /// so it is retried rather than reported.
    pub(super) fn out_of_descriptors(&self) -> bool {
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

/// The lengths of the two AWS files in the snapshot the engine has (`None`: missing or
/// unreadable), and its digest: what a new read is compared with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Last {
    pub digest: u64,
    pub(super) lengths: [Option<usize>; 2],
}

impl Last {
    pub fn of(snapshot: &Snapshot) -> Last {
        let len = |read: &FileRead| match read {
            FileRead::Bytes(bytes) => Some(bytes.len()),
            FileRead::Missing | FileRead::Failed(_) => None,
        };
        Last {
            digest: snapshot.digest(),
            lengths: [len(&snapshot.config), len(&snapshot.credentials)],
        }
    }

    /// True when either file in `now` is shorter than here (empty included). A missing
    /// file is not shorter: a file is removed by an unlink, which is a whole act.
    pub(super) fn shrunk_in(&self, now: &Last) -> bool {
        self.lengths
            .iter()
            .zip(now.lengths)
            .any(|(before, now)| matches!((before, now), (Some(b), Some(n)) if n < *b))
    }
}

/// Reads one AWS file with the shared bounded reader: regular files only, never blocking,
/// capped while reading.
fn read_file(path: &Path) -> FileRead {
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

/// The SSO token cache: `*.json` files, bounded in number and size, each that cannot be
/// read noted with why. When there are more than [`MAX_CACHE_FILES`] (then the last value
/// is true), the files the AWS files name (`wanted`) are read first and always, then others
/// in sorted order up to the bound: the cache holds unrelated files too.
fn read_cache(
    dir: &Path,
    wanted: &BTreeSet<String>,
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>, bool) {
    let mut out = BTreeMap::new();
    let mut unreadable = BTreeMap::new();
    let mut read = |name: &str, path: &Path| {
        if out.contains_key(name) || unreadable.contains_key(name) {
            return;
        }
        match userfile::read_bounded(path, MAX_CACHE_FILE_LEN) {
            Ok(bytes) => {
                out.insert(name.to_owned(), bytes);
            }
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => {
                unreadable.insert(name.to_owned(), err.to_string());
            }
        }
    };
    let names = cache_names(dir);
    let partial = names.len() > MAX_CACHE_FILES;
    if partial {
        // Names from the engine's parse of the files, never paths: one with a separator
        // or `..` is no file of the cache.
        for name in wanted.iter().filter(|n| is_plain_name(n)) {
            read(name, &dir.join(name));
        }
    }
    for (name, path) in names.iter().take(MAX_CACHE_FILES) {
        read(name, path);
    }
    (out, unreadable, partial)
}

/// A file name in the cache directory itself (the engine names `<sha1 hex>.json`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != ".." && name != "." && !name.contains(['/', '\\'])
}

/// The identities of everything a [`Snapshot`] reads: when none changed since a read made
/// after the files' last modification, reading again would give the same bytes. This is
/// what keeps churn in a watched directory (a symlink target's, e.g. `/dev` or `/etc`)
/// from turning into re-reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp(Vec<(PathBuf, Option<userfile::Identity>)>);

impl Stamp {
    pub(super) fn take(targets: &Targets) -> Stamp {
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
    pub(super) fn settled_before(&self, read_at: i128) -> bool {
        self.0.iter().all(|(_, id)| {
            id.is_none_or(|id| id.modified_ns() + TIMESTAMP_GRAIN.as_nanos() as i128 <= read_at)
        })
    }
}

pub(super) fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn snapshot(config: FileRead, credentials: &str) -> Snapshot {
        Snapshot {
            config,
            credentials: FileRead::Bytes(credentials.as_bytes().to_vec()),
            sso_cache: BTreeMap::new(),
            sso_unreadable: BTreeMap::new(),
            sso_partial: None,
        }
    }

    #[test]
    fn shorter_means_a_file_with_fewer_bytes_not_a_missing_one() {
        let last = Last::of(&snapshot(
            FileRead::Bytes(b"[a]\n".to_vec()),
            "[acme]\nk = v\n",
        ));
        let shrunk = |s: &Snapshot| last.shrunk_in(&Last::of(s));
        assert!(shrunk(&snapshot(FileRead::Bytes(b"[a]\n".to_vec()), "")));
        assert!(shrunk(&snapshot(
            FileRead::Bytes(b"[a]\n".to_vec()),
            "[acme]\n"
        )));
        assert!(shrunk(&snapshot(
            FileRead::Bytes(Vec::new()),
            "[acme]\nk = v\n"
        )));
        assert!(!shrunk(&snapshot(
            FileRead::Bytes(b"[a]\n".to_vec()),
            "[acme]\nk = w\n"
        )));
        assert!(!shrunk(&snapshot(
            FileRead::Missing,
            "[acme]\nk = v\nmore\n"
        )));
        let failed = FileRead::Failed("denied".to_owned());
        assert!(!shrunk(&snapshot(failed, "[acme]\nk = v\n")));
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
        let (read, _, partial) = read_cache(&cache, &BTreeSet::new());
        assert_eq!(read.keys().collect::<Vec<_>>(), vec!["a.json"]);
        assert!(!partial);
    }

    /// Past the bound, the files named are read first whatever their place in the order,
    /// and the read says it is partial; a name that is not a plain file name is ignored.
    #[test]
    fn a_large_cache_reads_the_named_files_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = tmp.path().join("cache");
        std::fs::create_dir(&cache).expect("mkdir");
        for n in 0..=MAX_CACHE_FILES {
            std::fs::write(cache.join(format!("a{n:05}.json")), "{}").expect("write");
        }
        std::fs::write(cache.join("zz.json"), "{\"named\": 1}").expect("write");
        std::fs::write(tmp.path().join("outside.json"), "{}").expect("write");
        let (read, _, partial) = read_cache(&cache, &BTreeSet::new());
        assert!(partial);
        assert_eq!(read.len(), MAX_CACHE_FILES);
        assert!(!read.contains_key("zz.json"));
        let wanted = BTreeSet::from(["zz.json".to_owned(), "../outside.json".to_owned()]);
        let (read, _, partial) = read_cache(&cache, &wanted);
        assert!(partial);
        assert_eq!(
            read.get("zz.json").map(Vec::as_slice),
            Some(&b"{\"named\": 1}"[..])
        );
        assert!(!read.contains_key("../outside.json"));
    }
}
