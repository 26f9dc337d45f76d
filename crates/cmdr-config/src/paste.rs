//! The write of a paste, shared by `cmdrctl paste` and cmdrd's renewals of "Option 2"
//! accounts: under a lock on the credentials file's directory (every cmdr
//! writer of that file takes it, whatever its data directory), read, edit, and a
//! compare-and-swap replace of exactly what was read (`crate::replace`): if another
//! program changed the file meanwhile, read and apply again, and after a few tries fail
//! without writing. An edit that changes nothing writes nothing and keeps no backup.
//! Temps that crashed pastes left are swept first.

use std::path::{Path, PathBuf};

use crate::replace::{Replaced, lock_beside, replace_if_unchanged, snapshot};
use anyhow::{Context as _, bail};
use chrono::Utc;
use cmdr_core::FileKind;
use cmdr_core::paste::{Block, apply};
use cmdr_core::profile::check_file;

/// Backups kept in `<data dir>/backups/` (`credentials.cmdr-backup-<time>`, mode 0600).
const KEEP_BACKUPS: usize = 5;
/// Read-apply-replace rounds before giving up on a file that keeps changing.
const MAX_TRIES: usize = 5;
const MAX_LEN: u64 = crate::userfile::MAX_USER_FILE_LEN;

/// What the write did.
pub struct Written {
    /// `None` when nothing changed (or there was no file before).
    pub backup: Option<PathBuf>,
    pub changed: bool,
    /// How often another program's write made the paste read and apply again.
    pub retries: usize,
}

/// Puts `block` into the credentials file at `path` (symlinks resolved) as `profile`.
pub fn write(
    path: &Path,
    data_dir: &Path,
    profile: &str,
    block: &Block,
    expires: Option<&str>,
) -> anyhow::Result<Written> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = file_name(path);
    let _lock = lock_beside(path).with_context(|| format!("cannot lock {}", dir.display()))?;
    // Leftovers of pastes killed mid-write: full copies with a secret.
    crate::sweep_temps(dir, Some(&name), crate::STALE_TEMP_AGE);
    let backups = data_dir.join("backups");
    crate::sweep_temps(&backups, None, crate::STALE_TEMP_AGE);

    for retries in 0..MAX_TRIES {
        let read =
            snapshot(path, MAX_LEN).with_context(|| format!("cannot read {}", path.display()))?;
        let text = match &read.bytes {
            Some(bytes) => std::str::from_utf8(bytes).with_context(|| {
                format!(
                    "{} is not valid UTF-8; fix it first (`cmdrctl doctor`)",
                    path.display()
                )
            })?,
            None => "",
        };
        if let Err(e) = check_file(FileKind::Credentials, text.as_bytes()) {
            bail!(
                "{} does not parse ({}); fix it first (`cmdrctl doctor`)",
                path.display(),
                e
            );
        }
        let after = apply(text, profile, block, expires);
        verify(&after, profile, block)?;
        if read.bytes.is_some() && after == text {
            return Ok(Written {
                backup: None,
                changed: false,
                retries,
            });
        }
        let backup = match &read.bytes {
            Some(bytes) => Some(backup(&backups, &name, bytes)?),
            None => None,
        };
        let outcome = replace_if_unchanged(path, &read, after.as_bytes(), 0o600, MAX_LEN)
            .with_context(|| format!("cannot write {}", path.display()));
        match outcome {
            Ok(Replaced::Done) => {
                prune(&backups, &name);
                return Ok(Written {
                    backup,
                    changed: true,
                    retries,
                });
            }
            // Another program wrote the file since it was read: that version is not ours
            // to keep as "previous", and the edit starts over from it.
            Ok(Replaced::Changed) => forget(backup),
            Err(err) => {
                forget(backup);
                return Err(err);
            }
        }
    }
    bail!(
        "{} kept changing while writing (another program is writing it); nothing was written: try again",
        path.display()
    )
}

fn forget(backup: Option<PathBuf>) {
    if let Some(path) = backup {
        let _ = std::fs::remove_file(path);
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".to_owned())
}

/// The result must parse and give exactly the pasted keys to the SDKs.
fn verify(after: &str, profile: &str, block: &Block) -> anyhow::Result<()> {
    let cache = Default::default();
    let view = cmdr_core::parse_view(cmdr_core::Inputs {
        config: b"",
        credentials: after.as_bytes(),
        sso_cache: &cache,
    })
    .map_err(|_| {
        anyhow::anyhow!("internal error: the edited file would not parse; nothing was written")
    })?;
    let got = view.get(profile).and_then(|p| p.credentials.as_ref());
    let ok = got.is_some_and(|c| {
        c.access_key_id == block.access_key_id
            && c.secret_access_key == block.secret_access_key
            && c.session_token == block.session_token
    });
    if !ok {
        bail!(
            "internal error: the edited file would not hold the pasted keys; nothing was written"
        );
    }
    Ok(())
}

/// Keeps the previous file in `dir` (created 0700), mode 0600; pruned by [`prune`] once
/// the new file is in place.
fn backup(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    crate::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let prefix = format!("{name}.cmdr-backup-");
    let path = dir.join(format!(
        "{prefix}{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    ));
    crate::write_atomic(&path, bytes, 0o600)
        .with_context(|| format!("cannot write backup {}", path.display()))?;
    Ok(path)
}

/// Removes all but the newest [`KEEP_BACKUPS`] backups of `name`.
fn prune(dir: &Path, name: &str) {
    let prefix = format!("{name}.cmdr-backup-");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    backups.sort();
    let excess = backups.len().saturating_sub(KEEP_BACKUPS);
    for old in &backups[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

/// Follows a chain of symlinks (stow, chezmoi) to the real file, which is what we replace.
pub fn resolve_symlinks(path: &Path) -> anyhow::Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(target) => {
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Err(_) => return Ok(current),
        }
    }
    bail!("too many levels of symlinks at {}", path.display())
}
