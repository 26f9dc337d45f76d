//! Writes to the user's and cmdr's own files: atomic replacement that keeps the mode, temp
//! files that are private from their creation, the sweep of temps a crash left behind, and
//! private directories.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Replaces `path` with `bytes` atomically: a temp file in the same directory, fsync,
/// rename over the target, fsync of the directory. An existing file keeps its mode; a new
/// one gets `mode`. `path` must not be a symlink (resolve it first).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // Windows has no modes: the file inherits the ACL of cmdr's private directory.
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).map_or(mode, |m| m.permissions().mode() & 0o7777)
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
}
