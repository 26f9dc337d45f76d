//! The one bounded reader for files a user controls (`~/.aws/*`, the SSO cache,
//! `state.json`), shared by the daemon, `doctor` and `paste`: only regular files (after
//! following symlinks), opened without blocking (a FIFO never hangs a reader), and capped
//! while reading rather than by the reported length (a device reports 0).

use std::fs::{File, Metadata};
use std::io::{self, Read as _};
use std::path::Path;

/// Larger user files are refused rather than read (a safety cap, far above real files).
pub const MAX_USER_FILE_LEN: u64 = 64 << 20;

/// What identifies one version of a file without reading it: if none of these changed
/// (and the file was read after its last modification tick), neither did its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub device: u64,
    pub inode: u64,
    pub len: u64,
    pub modified_ns: i128,
    pub changed_ns: i128,
}

impl Identity {
    pub fn of(meta: &Metadata) -> Identity {
        platform_identity(meta)
    }

    /// When the file was last modified, in nanoseconds since the epoch.
    pub fn modified_ns(&self) -> i128 {
        self.modified_ns.max(self.changed_ns)
    }
}

/// "… is readable by other users …" when the file at `path`, which holds secrets (the
/// credentials file), has any group or other permission bits (Unix); `doctor`, `paste` and
/// `status` say it alike. cmdr never changes a file's mode itself: it is the user's.
pub fn exposed_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The identity of the file at `path` (symlinks followed); `Ok(None)` when it is missing.
pub fn identity(path: &Path) -> io::Result<Option<Identity>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Identity::of(&meta))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads a whole regular file of at most `max` bytes. A missing file is
/// `ErrorKind::NotFound`; a FIFO, socket or device is refused with "not a regular file"
/// before anything is read from it, a directory with "is a directory"; a longer file with
/// "file is larger than …" after reading at most `max + 1` bytes.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_with_identity(path, max).map(|(bytes, _)| bytes)
}

/// [`read_bounded`], also giving the identity of exactly the version that was read.
pub fn read_with_identity(path: &Path, max: u64) -> io::Result<(Vec<u8>, Identity)> {
    // Decide on the path's metadata first, so that a device is never even opened (opening
    // some has side effects), then check the opened file again: it may have been swapped.
    let meta = std::fs::metadata(path)?;
    check_regular(&meta)?;
    let file = open_nonblocking(path)?;
    let opened = file.metadata()?;
    check_regular(&opened)?;
    let identity = Identity::of(&opened);
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len().min(max)).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, too_large(max)));
    }
    Ok((bytes, identity))
}

fn too_large(max: u64) -> String {
    if max >= 1 << 20 {
        format!("file is larger than {} MiB", max >> 20)
    } else {
        format!("file is larger than {max} bytes")
    }
}

fn check_regular(meta: &Metadata) -> io::Result<()> {
    if meta.is_dir() {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ))
    } else if !meta.is_file() {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    } else {
        Ok(())
    }
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(unix)]
fn platform_identity(meta: &Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt as _;
    let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    Identity {
        device: meta.dev(),
        inode: meta.ino(),
        len: meta.len(),
        modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
        changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
    }
}

#[cfg(not(unix))]
fn platform_identity(meta: &Metadata) -> Identity {
    let ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    Identity {
        device: 0,
        inode: 0,
        len: meta.len(),
        modified_ns: ns,
        changed_ns: ns,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"12345").expect("write");
        assert_eq!(read_bounded(&file, 5).expect("read"), b"12345");
        let err = read_bounded(&file, 4).expect_err("too large");
        assert_eq!(err.to_string(), "file is larger than 4 bytes");
        let missing = read_bounded(&tmp.path().join("nope"), 5).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let dir = read_bounded(tmp.path(), 5).expect_err("dir");
        assert_eq!(dir.to_string(), "is a directory");

        // A FIFO with no writer would block a plain open forever.
        let fifo = tmp.path().join("fifo");
        cmdr_testkit::sys::mkfifo(&fifo, 0o600).expect("mkfifo");
        let err = read_bounded(&fifo, 5).expect_err("fifo");
        assert_eq!(err.to_string(), "not a regular file");
        // Devices report a length of 0 and never end.
        let link = tmp.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let err = read_bounded(&link, 5).expect_err("device");
        assert_eq!(err.to_string(), "not a regular file");
    }

    #[test]
    fn identity_follows_the_version() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"a").expect("write");
        let (_, first) = read_with_identity(&file, 10).expect("read");
        assert_eq!(identity(&file).expect("stat"), Some(first));
        std::fs::write(&file, b"ab").expect("write");
        assert_ne!(identity(&file).expect("stat"), Some(first));
        assert_eq!(identity(&tmp.path().join("nope")).expect("stat"), None);
    }
}
