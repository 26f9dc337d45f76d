//! The AWS files of processes started for an account (`cmdrctl exec`, `env --serve`):
//! the user's files without any credential (`cmdr_core::profile::without_credentials`),
//! rewritten beside the socket whenever the user's files change, plus an empty
//! `BOTO_CONFIG`. With them nothing outranks the credentials endpoint in any SDK, and the
//! user's other settings still apply; ARCHITECTURE.md says why this design.

use std::path::{Path, PathBuf};

use cmdr_core::{FileKind, PerFile};

pub struct ChildFiles {
    dir: PathBuf,
    /// What each file holds now, so an unchanged copy is not written again.
    written: PerFile<Option<Vec<u8>>>,
    boto_written: bool,
    /// A failure is logged once, until a write works again.
    failing: bool,
}

impl ChildFiles {
    pub fn new(dir: PathBuf) -> ChildFiles {
        ChildFiles {
            dir,
            written: PerFile::default(),
            boto_written: false,
            failing: false,
        }
    }

    pub fn path(&self, kind: FileKind) -> PathBuf {
        self.dir.join(match kind {
            FileKind::Config => "config",
            FileKind::Credentials => "credentials",
        })
    }

    pub fn boto_path(&self) -> PathBuf {
        self.dir.join("boto")
    }

    /// Writes the copies of `good` (the last good bytes of each file; secrets already
    /// redacted) that differ from what is there.
    pub fn update(&mut self, good: &PerFile<Vec<u8>>) {
        let result = (|| -> std::io::Result<()> {
            for kind in [FileKind::Config, FileKind::Credentials] {
                let copy = cmdr_core::profile::without_credentials(kind, &good[kind]);
                if self.written[kind].as_ref() == Some(&copy) && self.path(kind).is_file() {
                    continue;
                }
                write(&self.path(kind), &copy)?;
                self.written[kind] = Some(copy);
            }
            if !self.boto_written {
                write(&self.boto_path(), b"")?;
                self.boto_written = true;
            }
            Ok(())
        })();
        match result {
            Ok(()) => self.failing = false,
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot write the AWS files of processes on the endpoint");
            }
            Err(_) => {}
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    cmdr_config::write_atomic(path, bytes, 0o600)
}
