//! The state file under the data dir: accounts, accepted fingerprints, first-seen times.
//! Never a secret. Written atomically (temp file, fsync, rename, fsync of the directory);
//! a corrupt file is moved aside, never silently dropped.

use std::path::{Path, PathBuf};

use chrono::Utc;
pub use cmdr_config::{create_private_dir, write_atomic};
#[cfg(test)]
use cmdr_core::Seen;
use cmdr_core::{Account, SeenTokens};
use serde::{Deserialize, Serialize};

/// The state file's format; a file of another version is set aside, not read.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub version: u32,
    pub accounts: Vec<Account>,
    pub seen: SeenTokens,
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
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        Store { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state. A missing file is an empty state; a corrupt one is renamed to
    /// `state.json.corrupt-<time>` with an error in the log, and the daemon starts empty.
    pub fn load(&self) -> Result<StoredState, StoreError> {
        self.remove_stale_temps();
        // Bounded, regular files only: a FIFO or device here must not hang the start.
        let bytes = match cmdr_client::userfile::read_bounded(
            &self.path,
            cmdr_client::userfile::MAX_USER_FILE_LEN,
        ) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoredState {
                    version: STATE_VERSION,
                    ..StoredState::default()
                });
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        match serde_json::from_slice::<StoredState>(&bytes) {
            Ok(state) if state.version == STATE_VERSION => Ok(state),
            outcome => {
                let reason = match outcome {
                    Ok(state) => format!("unsupported version {}", state.version),
                    Err(err) => format!(
                        "line {}, column {}: {:?}",
                        err.line(),
                        err.column(),
                        err.classify()
                    ),
                };
                let aside = self.path.with_extension(format!(
                    "json.corrupt-{}",
                    Utc::now().format("%Y%m%dT%H%M%SZ")
                ));
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
                Ok(StoredState {
                    version: STATE_VERSION,
                    ..StoredState::default()
                })
            }
        }
    }

    /// Removes the temp files of saves cut short by a crash (`kill -9`, power loss), which
    /// would otherwise pile up, one per crash. Only the daemon holding the socket lock
    /// writes the state file, and it calls this before its first save: any such file is stale.
    fn remove_stale_temps(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed the temp file of an interrupted save")
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot remove the temp file of an interrupted save")
                }
            }
        }
    }

    pub fn save(&self, state: &StoredState) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes, 0o600).map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_corrupt_file_moved_aside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::new(tmp.path().join("data").join("state.json"));
        assert_eq!(store.load().expect("load").accounts.len(), 0);

        let mut state = StoredState {
            version: STATE_VERSION,
            ..StoredState::default()
        };
        state.seen.insert(
            "p".into(),
            Seen {
                fingerprint: "abc".into(),
                first_seen: Utc::now(),
            },
        );
        store.save(&state).expect("save");
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
        let aside: Vec<_> = std::fs::read_dir(tmp.path().join("data"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).expect("read"), b"{ not json");
    }

    /// Regression: every `kill -9` during a save left a `.state.json.tmp-PID` file behind
    /// for good (found by tests/faults.rs).
    #[test]
    fn temp_files_of_interrupted_saves_are_removed_at_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let store = Store::new(dir.join("state.json"));
        std::fs::write(dir.join(".state.json.tmp-4242"), b"{ half").expect("write");
        std::fs::write(dir.join("other.tmp-1"), b"keep").expect("write");
        store.load().expect("load");
        assert!(!dir.join(".state.json.tmp-4242").exists());
        assert!(dir.join("other.tmp-1").exists());
    }
}
