//! The state file under the data dir: accounts, accepted fingerprints, first-seen times.
//! Never a secret. Written atomically (temp file, fsync, rename, fsync of the directory);
//! a corrupt file is moved aside, never silently dropped.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;
use std::io::Write as _;

use chrono::Utc;
use cmdr_config::write_atomic;
use cmdr_core::{Account, SeenTokens};
use serde::{Deserialize, Serialize};

mod record;
mod sweep;

use record::{StoredAccount, StoredSeen};

/// The state file's format; a file of another version is set aside, not read.
pub const STATE_VERSION: u32 = 1;

/// What the daemon keeps across runs: its accounts and when each token was first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub accounts: Vec<Account>,
    pub seen: SeenTokens,
}

/// `state.json` as it is on disk (`record.rs` has its parts).
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    accounts: Vec<StoredAccount>,
    seen: BTreeMap<String, StoredSeen>,
}

/// One account operation appended to the journal (`state.journal`, one JSON line each):
/// the account as it is now, or its removal. Replaying is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEntry {
    Put(Box<StoredAccount>),
    Remove(String),
}

impl JournalEntry {
    /// The account as it is now.
    pub fn put(account: &Account) -> JournalEntry {
        JournalEntry::Put(Box::new(StoredAccount::from(account)))
    }
}

/// The journal is folded into the state file once it holds this many entries, or as many
/// as there are accounts if more: each account operation costs one small append, and the
/// full rewrite is paid once per that many operations.
const COMPACT_AFTER: usize = 256;

impl TryFrom<StateFile> for State {
    type Error = record::RecordError;

    fn try_from(file: StateFile) -> Result<State, record::RecordError> {
        Ok(State {
            accounts: file
                .accounts
                .into_iter()
                .map(Account::try_from)
                .collect::<Result<_, _>>()?,
            seen: record::seen_tokens(file.seen),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    /// Entries in the journal since the state file was last written.
    journaled: usize,
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        Store { path, journaled: 0 }
    }

    fn journal_path(&self) -> PathBuf {
        self.path.with_extension("journal")
    }

    /// Appends account operations to the journal and syncs it: cheap however many
    /// accounts there are. True when the journal should now be folded in with [`Store::save`].
    pub fn append(
        &mut self,
        entries: &[JournalEntry],
        accounts: usize,
    ) -> Result<bool, StoreError> {
        let path = self.journal_path();
        let error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut bytes = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut bytes, entry)
                .map_err(|e| error(std::io::Error::other(e)))?;
            bytes.push(b'\n');
        }
        // Never through a link planted in its place, never another user's file.
        let mut file = cmdr_config::open_own(&path, true).map_err(error)?;
        let len = file.metadata().map_err(error)?.len();
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(err) = written {
            // Leave no partial line behind: the next entry must start on a line of its own.
            let _ = file.set_len(len);
            return Err(error(err));
        }
        self.journaled += entries.len();
        Ok(self.journaled >= COMPACT_AFTER.max(accounts))
    }

    /// Replays the journal over `state`: a line that does not parse (a torn last write)
    /// ends the replay, with a warning.
    fn replay(&mut self, state: &mut State) {
        let path = self.journal_path();
        // Never through a link planted in its place (root must not read a file of root's
        // into the user's data directory), never another user's file.
        let bytes = match cmdr_config::read_own(&path, cmdr_config::userfile::MAX_USER_FILE_LEN) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                // Too large to replay: keep it aside like a corrupt one, never delete it.
                let aside = aside_path(&path, "journal");
                match std::fs::rename(&path, &aside) {
                    Ok(()) => {
                        tracing::error!(path = %path.display(), error = %err, kept = %aside.display(), "state journal is too large to replay; kept it aside and starting without the account changes it holds")
                    }
                    Err(rename) => {
                        tracing::error!(path = %path.display(), error = %err, rename_error = %rename, "state journal is too large to replay, and could not be kept aside; its account changes are not applied")
                    }
                }
                return;
            }
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "cannot read the state journal; its last account changes are lost");
                return;
            }
        };
        let mut accounts: std::collections::BTreeMap<String, Account> =
            std::mem::take(&mut state.accounts)
                .into_iter()
                .map(|a| (a.name.clone(), a))
                .collect();
        for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let entry = serde_json::from_slice::<JournalEntry>(line)
                .map_err(|err| json_reason(&err))
                .and_then(|entry| match entry {
                    JournalEntry::Put(stored) => Account::try_from(*stored)
                        .map(Some)
                        .map_err(|err| err.to_string()),
                    JournalEntry::Remove(name) => {
                        accounts.remove(&name);
                        Ok(None)
                    }
                });
            match entry {
                Ok(Some(account)) => {
                    accounts.insert(account.name.clone(), account);
                }
                Ok(None) => {}
                Err(error) => {
                    let more = bytes
                        .split(|b| *b == b'\n')
                        .skip(number + 1)
                        .any(|l| !l.trim_ascii().is_empty());
                    if more {
                        // Not a torn last write: what follows is kept for the user, since
                        // the next save removes the journal.
                        self.keep_aside(&path, number + 1, &error);
                    } else {
                        tracing::warn!(path = %path.display(), line = number + 1, %error, "state journal ends in a torn entry; ignoring it");
                    }
                    break;
                }
            }
            self.journaled += 1;
        }
        state.accounts = accounts.into_values().collect();
    }

    /// Copies a journal with a bad entry before its end to `state.journal.corrupt-<time>`.
    fn keep_aside(&self, path: &Path, line: usize, error: &str) {
        let aside = aside_path(path, "journal");
        match std::fs::copy(path, &aside) {
            Ok(_) => tracing::error!(
                path = %path.display(),
                line,
                %error,
                kept = %aside.display(),
                "state journal has a bad entry before its end; replayed the entries before it and kept the whole journal aside"
            ),
            Err(err) => tracing::error!(
                path = %path.display(),
                line,
                %error,
                copy_error = %err,
                "state journal has a bad entry before its end; replayed the entries before it, and could not keep the journal aside"
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state. A missing file is an empty state; a corrupt one is renamed to
    /// `state.json.corrupt-<time>` with an error in the log, and the daemon starts empty.
    pub fn load(&mut self) -> Result<State, StoreError> {
        let mut state = self.load_file()?;
        self.replay(&mut state);
        Ok(state)
    }

    fn load_file(&self) -> Result<State, StoreError> {
        self.remove_stale_temps();
        // Bounded, regular files only: a FIFO or device here must not hang the start.
        let bytes = match cmdr_config::userfile::read_bounded(
            &self.path,
            cmdr_config::userfile::MAX_USER_FILE_LEN,
        ) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State::default());
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let read = serde_json::from_slice::<StateFile>(&bytes)
            .map_err(|err| json_reason(&err))
            .and_then(|file| match file.version {
                STATE_VERSION => State::try_from(file).map_err(|err| err.to_string()),
                version => Err(format!("unsupported version {version}")),
            });
        match read {
            Ok(state) => Ok(state),
            Err(reason) => {
                let aside = aside_path(&self.path, "json");
                match std::fs::rename(&self.path, &aside) {
                    Ok(()) => tracing::error!(
                        path = %self.path.display(),
                        moved_to = %aside.display(),
                        %reason,
                        "state file is corrupt; moved it aside and starting with no accounts"
                    ),
                    Err(err) => {
                        return Err(StoreError::Read {
                            path: self.path.clone(),
                            source: std::io::Error::other(format!(
                                "corrupt ({reason}) and cannot be moved aside: {err}"
                            )),
                        });
                    }
                }
                Ok(State::default())
            }
        }
    }

    /// Removes the temp files of saves cut short by a crash ([`sweep::stale_temps`]).
    fn remove_stale_temps(&self) {
        if let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) {
            sweep::stale_temps(dir, &name.to_string_lossy());
        }
    }

    /// Writes the whole state and empties the journal it now includes.
    pub fn save<'a>(
        &mut self,
        accounts: impl Iterator<Item = &'a Account>,
        seen: &SeenTokens,
    ) -> Result<(), StoreError> {
        let file = StateFile {
            version: STATE_VERSION,
            accounts: accounts.map(StoredAccount::from).collect(),
            seen: record::stored_seen(seen),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes, 0o600).map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })?;
        // The state file now holds everything the journal said. A crash before this line
        // replays entries it already holds, which changes nothing.
        match std::fs::remove_file(self.journal_path()) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Write {
                    path: self.journal_path(),
                    source,
                });
            }
        }
        self.journaled = 0;
        Ok(())
    }
}

/// Where a corrupt `state.<extension>` is kept: `state.<extension>.corrupt-<time>`.
fn aside_path(path: &Path, extension: &str) -> PathBuf {
    path.with_extension(format!(
        "{extension}.corrupt-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    ))
}

/// What serde_json says is wrong with a state file or journal line (`unknown variant
/// `gcp``, `missing field `name``, with line and column), escaped and cut short: the file
/// is ours, but anyone can edit it.
fn json_reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text: String = text.chars().take(300).collect();
    cmdr_core::text::escape_controls(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdr_core::Seen;

    #[test]
    fn save_load_and_corrupt_file_moved_aside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = Store::new(tmp.path().join("data").join("state.json"));
        assert_eq!(store.load().expect("load").accounts.len(), 0);

        let mut state = State::default();
        state.seen.insert(
            "p".into(),
            Seen {
                fingerprint: "abc".into(),
                first_seen: Utc::now(),
            },
        );
        store
            .save(state.accounts.iter(), &state.seen)
            .expect("save");
        assert_eq!(store.load().expect("load"), state);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        std::fs::write(store.path(), b"{ not json").expect("write");
        assert_eq!(store.load().expect("load").seen.len(), 0);
        let aside = kept_aside(&tmp.path().join("data"), "corrupt");
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(&aside[0]).expect("read"), b"{ not json");
    }

    /// Regression: every `kill -9` during a save left a `.state.json.tmp-PID` file behind
    /// for good (found by tests/faults.rs).
    #[test]
    fn temp_files_of_interrupted_saves_are_removed_at_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut store = Store::new(dir.join("state.json"));
        std::fs::write(dir.join(".state.json.tmp-4242"), b"{ half").expect("write");
        std::fs::write(dir.join("other.tmp-1"), b"keep").expect("write");
        store.load().expect("load");
        assert!(!dir.join(".state.json.tmp-4242").exists());
        assert!(dir.join("other.tmp-1").exists());
    }

    /// Appends `bytes` to the journal as they are, as a crash or an editor might leave it.
    fn append_raw(journal: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(journal)
            .expect("open");
        file.write_all(bytes).expect("write");
    }

    /// The files in `dir` whose names contain `marker`.
    fn kept_aside(dir: &Path, marker: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(marker))
            .map(|e| e.path())
            .collect()
    }

    fn account(name: &str, region: &str) -> Account {
        let stored: StoredAccount = serde_json::from_value(serde_json::json!({
            "name": name,
            "profile": "p",
            "region": region,
            "target": {"kind": "aws"},
            "on_change": "ask",
            "accepted_fingerprint": null,
            "accepted_at": null,
        }))
        .expect("account");
        Account::try_from(stored).expect("valid")
    }

    /// Account operations are journal appends; a load replays them over the state file,
    /// stops at a torn last line, and a save folds them in and empties the journal.
    #[test]
    fn journal_appends_replay_and_compact() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let path = dir.join("state.json");
        let mut store = Store::new(path.clone());
        let mut state = State {
            accounts: vec![account("a", "eu-west-1")],
            ..State::default()
        };
        store
            .save(state.accounts.iter(), &state.seen)
            .expect("save");
        let compact = store
            .append(
                &[
                    JournalEntry::put(&account("b", "us-east-1")),
                    JournalEntry::put(&account("a", "eu-north-1")),
                ],
                2,
            )
            .expect("append");
        assert!(!compact);
        store
            .append(&[JournalEntry::Remove("b".into())], 1)
            .expect("append");
        store
            .append(&[JournalEntry::put(&account("c", "ap-south-1"))], 2)
            .expect("append");
        // A crash mid-append: half a line at the end.
        let journal = path.with_extension("journal");
        append_raw(&journal, br#"{"put":{"name":"d","pro"#);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&journal)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let mut reopened = Store::new(path.clone());
        let loaded = reopened.load().expect("load");
        let regions: Vec<(&str, Option<&str>)> = loaded
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.region.as_deref()))
            .collect();
        assert_eq!(
            regions,
            [("a", Some("eu-north-1")), ("c", Some("ap-south-1"))]
        );
        assert_eq!(reopened.journaled, 4);

        // Folded in: the journal is gone and the state file alone says the same.
        state.accounts = loaded.accounts.clone();
        reopened
            .save(state.accounts.iter(), &state.seen)
            .expect("save");
        assert!(!journal.exists());
        assert_eq!(Store::new(path).load().expect("load"), state);
    }

    /// Regression (hostile round): a bad entry before the journal's end stopped the replay,
    /// and the next save deleted the journal with the good entries after it. The journal
    /// is now kept aside first.
    #[test]
    fn a_bad_entry_before_the_end_keeps_the_journal_aside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("state.json");
        let mut store = Store::new(path.clone());
        store.save([].iter(), &SeenTokens::new()).expect("save");
        store
            .append(&[JournalEntry::put(&account("j1", "eu-west-1"))], 1)
            .expect("append");
        append_raw(&path.with_extension("journal"), b"{\"put\":{\"name\":\"j2\",\"profile\":\"p\",\"region\":null,\"target\":{\"kind\":\"aws\"},\"on_change\":\"ask\",\"accepted_fingerprint\":null,\"accepted_at\":null,\"accepted_expiry\":{\"at\":null,\"source\":\"comment\"}}}\n");
        store
            .append(&[JournalEntry::put(&account("j3", "eu-west-1"))], 2)
            .expect("append");
        let loaded = Store::new(path.clone()).load().expect("load");
        let names: Vec<&str> = loaded.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["j1"]);
        let aside = kept_aside(tmp.path(), "journal.corrupt-");
        assert_eq!(aside.len(), 1);
        let kept = std::fs::read_to_string(&aside[0]).expect("kept");
        assert!(kept.contains("\"j3\""), "{kept}");
    }

    /// The journal asks to be folded in after `COMPACT_AFTER` entries, or one per account
    /// when there are more: the rewrite's cost is spread over that many operations.
    #[test]
    fn journal_asks_for_compaction_in_proportion() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = Store::new(tmp.path().join("state.json"));
        let put = [JournalEntry::put(&account("a", "eu-west-1"))];
        for _ in 1..COMPACT_AFTER {
            assert!(!store.append(&put, 10).expect("append"));
        }
        assert!(store.append(&put, 10).expect("append"));
        store.save([].iter(), &SeenTokens::new()).expect("save");
        for _ in 1..1000 {
            assert!(!store.append(&put, 1000).expect("append"));
        }
        assert!(store.append(&put, 1000).expect("append"));
    }
}
