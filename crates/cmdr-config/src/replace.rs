//! Compare-and-swap replacement of a file other programs write too (the credentials file):
//! a lock on the file's directory that every cmdr writer takes, a [`Snapshot`] of what was
//! read, and [`replace_if_unchanged`], which replaces the file only if it is still that
//! snapshot. Other programs do not take our lock, so the check is repeated right before
//! the swap, and on Linux the swap itself is an exchange (`renameat2(RENAME_EXCHANGE)`)
//! whose displaced file is checked once more and swapped back if it was not the snapshot.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::userfile::{self, Identity};

use crate::files::{create_temp, sync_dir};

/// One version of a file as it was read: its bytes (zeroed on drop: they may hold
/// secrets), identity and mode; `bytes: None` when the file did not exist.
pub struct Snapshot {
    pub bytes: Option<Vec<u8>>,
    identity: Option<Identity>,
    /// Permission bits of the file read (Unix), kept by the replacement.
    pub mode: Option<u32>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(bytes) = &mut self.bytes {
            zeroize::Zeroize::zeroize(bytes);
        }
    }
}

impl Snapshot {
    /// Whether `other` is the same version: same bytes, same file (device and inode) of
    /// the same length and modification time. The change time is left out: the exchange
    /// itself changes it.
    fn same_version(&self, other: &Snapshot) -> bool {
        let key = |id: &Option<Identity>| id.map(|i| (i.device, i.inode, i.len, i.modified_ns));
        self.bytes == other.bytes && key(&self.identity) == key(&other.identity)
    }
}

/// Reads `path` (a regular file, at most `max` bytes; symlinks already resolved by the
/// caller) with its identity; a missing file is a snapshot without bytes.
pub fn snapshot(path: &Path, max: u64) -> io::Result<Snapshot> {
    match userfile::read_with_identity(path, max) {
        Ok((bytes, identity)) => Ok(Snapshot {
            bytes: Some(bytes),
            identity: Some(identity),
            mode: mode_of(path),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Snapshot {
            bytes: None,
            identity: None,
            mode: None,
        }),
        Err(err) => Err(err),
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// What [`replace_if_unchanged`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// The file now holds the new bytes.
    Done,
    /// The file was no longer the snapshot: nothing was replaced; read it again.
    Changed,
}

/// The exclusive lock every cmdr writer of a file takes, held until dropped: on Unix a
/// `flock` of the file's directory itself (nothing is created beside the file, which may
/// be a dotfiles repository), elsewhere a lock file `.NAME.cmdr-lock` beside it.
pub struct DirLock {
    _file: File,
}

/// Takes [`DirLock`] for `path`, waiting for another holder.
pub fn lock_beside(path: &Path) -> io::Result<DirLock> {
    let file = open_lock(path)?;
    file.lock()?;
    Ok(DirLock { _file: file })
}

#[cfg(unix)]
fn open_lock(path: &Path) -> io::Result<File> {
    File::open(parent(path))
}

#[cfg(not(unix))]
fn open_lock(path: &Path) -> io::Result<File> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(parent(path).join(format!(".{name}.cmdr-lock")))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Replaces `path` with `bytes` only if it still is `read`: a 0600 temp file in the same
/// directory, fsync, a last check of the file against `read`, the temp given the final
/// mode (`read`'s, else `new_mode`), then the swap and an fsync of the directory. A file
/// that did not exist is created only if it still does not (never over someone's new file).
/// `path` must not be a symlink (resolve it first); `max` bounds the re-reads.
pub fn replace_if_unchanged(
    path: &Path,
    read: &Snapshot,
    bytes: &[u8],
    new_mode: u32,
    max: u64,
) -> io::Result<Replaced> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut file, tmp) = create_temp(dir, &name)?;
    let outcome = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        if !snapshot(path, max)?.same_version(read) {
            return Ok(Replaced::Changed);
        }
        set_mode(&file, read.mode.unwrap_or(new_mode))?;
        let ours = Identity::of(&file.metadata()?);
        let swapped = if read.bytes.is_some() {
            exchange(&tmp, path, read, ours, max)?
        } else {
            create_new(&tmp, path)?
        };
        if swapped == Replaced::Done {
            sync_dir(dir)?;
        }
        Ok(swapped)
    })();
    // After a swap `tmp` holds the displaced old version; otherwise our unused copy (a
    // displaced version that was not ours to drop has been moved aside already).
    let _ = std::fs::remove_file(&tmp);
    outcome
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn set_path_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_path_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Swaps `tmp` into `path`. On Linux an atomic exchange: the displaced file, now at `tmp`,
/// must be the version read; if another program replaced or rewrote the file in the
/// meantime, the exchange is undone and the caller reads again.
fn exchange(
    tmp: &Path,
    path: &Path,
    read: &Snapshot,
    ours: Identity,
    max: u64,
) -> io::Result<Replaced> {
    match rename_exchange(tmp, path) {
        Ok(true) => {}
        // The filesystem cannot exchange (NFS, some FUSE): a plain rename right after the
        // last check is the best left.
        Ok(false) => {
            std::fs::rename(tmp, path)?;
            return Ok(Replaced::Done);
        }
        Err(err) => return Err(err),
    }
    // The displaced version is private until it is removed, so a crash right here leaves
    // no copy that others can read; its mode comes back if it goes back.
    let displaced_mode = mode_of(tmp);
    if let Some(mode) = displaced_mode {
        set_path_mode(tmp, mode & 0o700)?;
    }
    if snapshot(tmp, max)?.same_version(read) {
        return Ok(Replaced::Done);
    }
    // Someone else's version was displaced: put it back.
    if let Some(mode) = displaced_mode {
        set_path_mode(tmp, mode)?;
    }
    rename_exchange(tmp, path)?;
    if userfile::identity(tmp)?.is_some_and(|id| id.device == ours.device && id.inode == ours.inode)
    {
        return Ok(Replaced::Changed);
    }
    // A third version arrived between the two exchanges: keep the displaced file.
    let kept = conflict_name(path);
    std::fs::rename(tmp, &kept)?;
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} was replaced twice while it was being written; the version it held is kept as {}",
            path.display(),
            kept.display()
        ),
    ))
}

fn conflict_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(
        "{name}.cmdr-conflict-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    ))
}

/// `renameat2(RENAME_EXCHANGE)`: `Ok(false)` when the kernel or filesystem cannot do it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn rename_exchange(a: &Path, b: &Path) -> io::Result<bool> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn rename_exchange(_a: &Path, _b: &Path) -> io::Result<bool> {
    Ok(false)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(err),
    }
}

/// Puts `tmp` at `path` only if nothing is there: `Changed` if another program created
/// the file meanwhile.
fn create_new(tmp: &Path, path: &Path) -> io::Result<Replaced> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match renameat2(tmp, path, libc::RENAME_NOREPLACE) {
        Ok(true) => return Ok(Replaced::Done),
        Ok(false) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(Replaced::Changed),
        Err(err) => return Err(err),
    }
    // Elsewhere a hard link, which never replaces either; then the temp name goes.
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(Replaced::Done),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Replaced::Changed),
        // No hard links here (FAT, some network filesystems): check and rename.
        Err(_) if !path.exists() => std::fs::rename(tmp, path).map(|()| Replaced::Done),
        Err(_) => Ok(Replaced::Changed),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    #[test]
    fn replaces_only_the_version_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        std::fs::write(&path, b"one").expect("write");
        crate::files::tests::chmod(&path, 0o640);
        let read = snapshot(&path, MAX).expect("read");
        assert_eq!(
            replace_if_unchanged(&path, &read, b"two", 0o600, MAX).expect("replace"),
            Replaced::Done
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(crate::files::tests::mode(&path), 0o640, "mode kept");
        // `read` is stale now: nothing is replaced.
        assert_eq!(
            replace_if_unchanged(&path, &read, b"three", 0o600, MAX).expect("replace"),
            Replaced::Changed
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        // A rename-save by another program (new inode, same length) is a change too.
        let read = snapshot(&path, MAX).expect("read");
        std::fs::write(dir.path().join("other"), b"TWO").expect("write");
        std::fs::rename(dir.path().join("other"), &path).expect("rename");
        assert_eq!(
            replace_if_unchanged(&path, &read, b"four", 0o600, MAX).expect("replace"),
            Replaced::Changed
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"TWO");
        // No temp is left behind either way.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("credentials")]);
    }

    #[test]
    fn a_new_file_never_replaces_one_created_meanwhile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        let read = snapshot(&path, MAX).expect("read");
        assert!(read.bytes.is_none());
        std::fs::write(&path, b"theirs").expect("write");
        assert_eq!(
            replace_if_unchanged(&path, &read, b"ours", 0o600, MAX).expect("replace"),
            Replaced::Changed
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"theirs");
        std::fs::remove_file(&path).expect("rm");
        assert_eq!(
            replace_if_unchanged(&path, &read, b"ours", 0o600, MAX).expect("replace"),
            Replaced::Done
        );
        assert_eq!(crate::files::tests::mode(&path), 0o600);
    }

    #[test]
    fn the_lock_is_exclusive_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("credentials");
        let held = lock_beside(&path).expect("lock");
        let other = File::open(dir.path()).expect("open");
        assert!(other.try_lock().is_err(), "a second lock must wait");
        drop(held);
        assert!(other.try_lock().is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
