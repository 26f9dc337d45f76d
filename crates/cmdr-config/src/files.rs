//! Writes to the user's and cmdr's own files: atomic replacement that keeps the mode, temp
//! files that are private from their creation, the sweep of temps a crash left behind, and
//! private directories, and opening cmdr's own files (journal, locks) so that a symlink
//! or another user's file planted in their place is refused, not followed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Replaces `path` with `bytes` atomically: a temp file in the same directory (see
/// [`create_temp`]), fsync, rename over the target, fsync of the directory. An existing
/// file keeps its mode, and its owner when we may give it (root writing a user's file); a
/// new one gets `mode`. `path` must not be a symlink (resolve it first): one is refused, so
/// it stays a symlink.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let existing = match path.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
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
    let (mut file, tmp) = create_temp(dir, &name)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        // The final mode only now, just before the rename: until then the copy is ours alone.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            keep_owner(&file, existing.as_ref())?;
        }
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
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

/// The prefix of a temp file of `name`: `.NAME.tmp-`, followed by the writer's pid.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Creates a new temp file for `name` in `dir`: `.NAME.tmp-PID-N`, created exclusively
/// (never an existing file, never through a symlink) with mode 0600 whatever the umask
/// or the final mode, so a crash leaves no copy that others can read.
pub(crate) fn create_temp(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}{pid}-{n}", temp_prefix(name)));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        match options.open(&path) {
            Ok(file) => return Ok((file, path)),
            // A leftover of an earlier process with our pid: take the next number.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && n < u32::MAX => {}
            Err(err) => return Err(err),
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// How old a temp file of a live process must be before [`sweep_temps`] removes it: a
/// write takes milliseconds, so a minute-old temp is a leftover even if its pid lives
/// again in another process.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

/// Removes temp files that crashed writers left in `dir` (`.NAME.tmp-PID…` of `name`, or
/// of any name when `name` is `None`): those of processes no longer running, and any older
/// than `older_than`. Only regular files, never through a symlink. Returns how many went.
pub fn sweep_temps(dir: &Path, name: Option<&str>, older_than: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(pid) = temp_pid(&file_name.to_string_lossy(), name) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than);
        let own = pid == std::process::id();
        if (old || (!own && !process_alive(pid))) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The writer's pid of a temp file named `file_name` (`.NAME.tmp-PID` or `.NAME.tmp-PID-N`).
fn temp_pid(file_name: &str, name: Option<&str>) -> Option<u32> {
    let rest = match name {
        Some(name) => file_name.strip_prefix(&temp_prefix(name))?,
        None => {
            let hidden = file_name.strip_prefix('.')?;
            &hidden[hidden.rfind(".tmp-")? + ".tmp-".len()..]
        }
    };
    rest.split('-').next()?.parse().ok()
}

/// Whether a process with this pid runs (Linux: `/proc/PID`); elsewhere unknown, counted
/// as running, so only age removes a temp there.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Creates a directory (and parents) readable only by us.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
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
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    pub(crate) fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    pub(crate) fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn temps_are_private_and_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_a, first) = create_temp(dir.path(), "credentials").expect("temp");
        let (_b, second) = create_temp(dir.path(), "credentials").expect("temp");
        assert_ne!(first, second);
        assert_eq!(mode(&first), 0o600);
        assert!(
            first
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".credentials.tmp-"))
        );
        // write_atomic keeps the target's mode, set only on the finished copy.
        let target = dir.path().join("credentials");
        std::fs::write(&target, b"old").expect("write");
        chmod(&target, 0o644);
        write_atomic(&target, b"new", 0o600).expect("write");
        assert_eq!(mode(&target), 0o644);
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
    }

    #[test]
    fn sweep_removes_temps_of_dead_processes_and_old_ones_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, b"secret").expect("write");
            path
        };
        // pid_max is at most 2^22 on Linux: this pid cannot run.
        let dead = write(".credentials.tmp-99999999");
        let dead_numbered = write(".credentials.tmp-99999999-3");
        let live = write(&format!(".credentials.tmp-{}-0", std::process::id()));
        let other_file = write(".config.tmp-99999999");
        let not_temp = write("credentials");
        let backup_temp = write(".credentials.cmdr-backup-20260101T000000Z.tmp-99999999");
        assert_eq!(
            sweep_temps(dir.path(), Some("credentials"), STALE_TEMP_AGE),
            2
        );
        assert!(!dead.exists() && !dead_numbered.exists());
        assert!(live.exists() && other_file.exists() && not_temp.exists());
        assert!(backup_temp.exists());
        // Any name: the backups directory's hidden temps.
        assert_eq!(sweep_temps(dir.path(), None, STALE_TEMP_AGE), 2);
        assert!(!backup_temp.exists() && !other_file.exists());
        // Old enough, even a live pid's.
        assert_eq!(
            sweep_temps(dir.path(), Some("credentials"), Duration::ZERO),
            1
        );
        assert!(!live.exists() && not_temp.exists());
    }

    // The hardening tests.
    mod own {

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
}
