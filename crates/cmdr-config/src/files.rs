//! Writes to the user's and cmdr's own files: atomic replacement that keeps the mode and
//! the owner, private directories, and opening cmdr's own files (journal, locks) so that a
//! symlink or another user's file planted in their place is refused, not followed.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// Replaces `path` with `bytes` atomically: a temp file in the same directory, created
/// anew (`O_EXCL`, `O_NOFOLLOW`: never a file or link someone planted under the temp's
/// name), fsync, rename over the target, fsync of the directory. An existing file keeps
/// its mode, and its owner when we may give it (root writing a user's file); a new one
/// gets `mode`. `path` must not be a symlink (resolve it first): one is refused, so it
/// stays a symlink.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let existing = match path.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is a symlink; refusing to replace it", path.display()),
            ));
        }
        Ok(meta) => Some(meta),
        Err(_) => None,
    };
    // Windows has no modes: the file inherits the ACL of cmdr's private directory.
    #[cfg(not(unix))]
    let _ = (mode, &existing);
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        existing
            .as_ref()
            .map_or(mode, |m| m.permissions().mode() & 0o7777)
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // Ours from a crash with the same pid, or planted: unlinking removes a link itself.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut created = false;
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode).custom_flags(libc::O_NOFOLLOW);
        }
        let mut file = options.open(&tmp)?;
        created = true;
        #[cfg(unix)]
        {
            // The umask may have narrowed the mode at creation: set it exactly.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            keep_owner(&file, existing.as_ref())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The replacement keeps the owner of the file it replaces when we may set it (root);
/// an ordinary user writes only files it owns anyway.
#[cfg(unix)]
fn keep_owner(file: &File, existing: Option<&std::fs::Metadata>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(old) = existing else {
        return Ok(());
    };
    let new = file.metadata()?;
    if (old.uid(), old.gid()) == (new.uid(), new.gid()) || current_euid() != 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid()))
}

#[cfg(unix)]
fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens (creating, mode 0600) one of cmdr's own files for appending or locking, never
/// through a symlink (`O_NOFOLLOW`), and checks what was opened: a regular file owned by
/// us. A planted link or another user's file there is an error naming it.
pub fn open_own(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|err| refused_link(err, path))?;
    check_own(&file, path)?;
    Ok(file)
}

/// Reads one of cmdr's own files whole, at most `max` bytes: never through a symlink, and
/// only a regular file owned by us (checked on what was opened). A longer file is
/// `ErrorKind::InvalidData` ("file is larger than …"), after reading at most `max + 1`.
pub fn read_own(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Non-blocking: a FIFO planted here must not hang the open.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|err| refused_link(err, path))?;
    check_own(&file, path)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file is larger than {} MiB", max >> 20),
        ));
    }
    Ok(bytes)
}

/// `O_NOFOLLOW` on a symlink fails with `ELOOP`: say what it means.
fn refused_link(err: std::io::Error, path: &Path) -> std::io::Error {
    if err.raw_os_error() == Some(libc_eloop()) {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is a symlink; refusing to follow it", path.display()),
        )
    } else {
        err
    }
}

#[cfg(unix)]
fn libc_eloop() -> i32 {
    libc::ELOOP
}

#[cfg(not(unix))]
fn libc_eloop() -> i32 {
    -1
}

/// What was opened at `path` must be a regular file owned by our euid.
pub fn check_own(file: &File, path: &Path) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let euid = current_euid();
        if meta.uid() != euid {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is owned by {}, not by {}: refusing to use it",
                    path.display(),
                    cmdr_client::unix::who(meta.uid()),
                    cmdr_client::unix::who(euid)
                ),
            ));
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates a directory (and parents) readable only by us.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_planted_temp_link_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let target = dir.path().join("state.json");
        let tmp = dir
            .path()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).expect("plant");
        write_atomic(&target, b"new", 0o600).expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"keep");
        assert_eq!(std::fs::read(&target).expect("target"), b"new");
    }

    #[test]
    fn a_symlinked_target_stays_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::write(&real, "old").expect("real");
        let link = dir.path().join("state.json");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let err = write_atomic(&link, b"new", 0o600).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(link.symlink_metadata().expect("lstat").is_symlink());
        assert_eq!(std::fs::read(&real).expect("real"), b"old");
    }

    #[test]
    fn own_files_are_not_opened_through_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let journal = dir.path().join("state.journal");
        std::os::unix::fs::symlink(&victim, &journal).expect("plant");
        let err = open_own(&journal, true).expect_err("refused");
        assert!(err.to_string().contains("symlink"), "{err}");
        let fifo_free = dir.path().join("cmdrd.lock");
        open_own(&fifo_free, false).expect("a new file");
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        assert!(open_own(&dir.path().join("d"), false).is_err());
    }
}
