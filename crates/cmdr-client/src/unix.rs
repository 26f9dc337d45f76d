//! Unix: whom to trust at the other end of a socket. A client talks only to a daemon that
//! runs as its own euid (the peer's credentials, `SO_PEERCRED` / `getpeereid`, read on
//! every connection), and only through a socket directory that nobody else could have
//! made or can replace: a real directory (not a symlink) owned by us and writable by
//! nobody else, under ancestors owned by us or root that others can write only when they
//! are sticky (`/tmp`). cmdrd applies the same directory rule before it listens.

use std::ffi::CStr;
use std::path::Path;

use interprocess::local_socket::tokio::{Stream, prelude::*};

use crate::{ClientError, UnsafeDir};

/// The effective uid of this process: the one a daemon and its socket must have.
pub fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks the socket directory `dir` for the user `euid`: a real directory owned by
/// `euid` that neither group nor others may write, whose ancestors (symlinks resolved)
/// are owned by `euid` or root and writable by others only when sticky. Of a directory
/// that does not exist yet only the ancestors are checked (nobody listens in it, but
/// whoever could make it first could listen there). `Err` names the offending directory
/// and its owner.
pub fn check_socket_dir(dir: &Path, euid: u32) -> Result<(), UnsafeDir> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match dir.symlink_metadata() {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return check_ancestors(dir, euid);
        }
        Err(err) => return Err(unsafe_dir(dir, format!("cannot inspect it: {err}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(dir, "it is a symlink".to_owned()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir(dir, "it is not a directory".to_owned()));
    }
    if meta.uid() != euid {
        return Err(unsafe_dir(
            dir,
            format!("it is owned by {}, not by {}", who(meta.uid()), who(euid)),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(
            dir,
            format!(
                "others can write to it (mode {:o}, owner {})",
                meta.mode() & 0o7777,
                who(meta.uid())
            ),
        ));
    }
    check_ancestors(dir, euid)
}

/// `path` is not safe for a socket directory, and why.
fn unsafe_dir(path: &Path, reason: String) -> UnsafeDir {
    UnsafeDir {
        path: path.to_owned(),
        reason,
    }
}

/// Whoever may rename entries of an ancestor of `dir` could swap it for their own.
fn check_ancestors(dir: &Path, euid: u32) -> Result<(), UnsafeDir> {
    use std::os::unix::fs::MetadataExt as _;
    // The nearest ancestor that exists (a socket directory may be made with its parents).
    let Some(parent) = dir
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| p.exists())
    else {
        return Ok(());
    };
    let parent = parent
        .canonicalize()
        .map_err(|err| unsafe_dir(parent, format!("cannot resolve it: {err}")))?;
    for ancestor in parent.ancestors() {
        let meta = ancestor
            .metadata()
            .map_err(|err| unsafe_dir(ancestor, format!("cannot inspect it: {err}")))?;
        let owner = meta.uid();
        if owner != euid && owner != 0 {
            return Err(unsafe_dir(
                ancestor,
                format!(
                    "it is owned by {}, who could replace the socket directory {}",
                    who(owner),
                    dir.display()
                ),
            ));
        }
        let mode = meta.mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_dir(
                ancestor,
                format!(
                    "others can write to it and it is not sticky (mode {:o}, owner {}): anyone could replace the socket directory {}",
                    mode & 0o7777,
                    who(owner),
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `uid N (name)`, or `uid N` when the user database has no name for it.
pub fn who(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value for getpwuid_r to overwrite.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type; `buf`'s length is passed.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    let name = name.to_string_lossy().into_owned();
    (!name.is_empty() && !name.chars().any(char::is_control)).then_some(name)
}

/// Before connecting: the directory of `socket` must pass [`check_socket_dir`].
pub(crate) fn check_before_connect(socket: &Path) -> Result<(), ClientError> {
    let Some(dir) = socket.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    check_socket_dir(dir, current_euid()).map_err(ClientError::UnsafeSocketDir)
}

/// After connecting: the process listening must run as our euid. Another user's process
/// at that path (a relay planted before the daemon started) would read every request and
/// answer with credentials and endpoints of its choosing.
pub(crate) fn check_daemon_user(stream: &Stream, socket: &Path) -> Result<(), ClientError> {
    let ours = current_euid();
    match stream.peer_creds().map(|creds| creds.euid()) {
        Ok(Some(theirs)) if theirs == ours => Ok(()),
        Ok(Some(theirs)) => Err(ClientError::OtherUser {
            socket: socket.to_owned(),
            uid: theirs,
        }),
        Ok(None) => Err(ClientError::PeerUnknown {
            socket: socket.to_owned(),
            reason: "the system gave no uid for it".to_owned(),
        }),
        Err(err) => Err(ClientError::PeerUnknown {
            socket: socket.to_owned(),
            reason: err.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_private_directory_passes_and_a_missing_one_is_not_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cmdr");
        assert_eq!(check_socket_dir(&dir, current_euid()), Ok(()));
        std::fs::create_dir(&dir).expect("mkdir");
        set_mode(&dir, 0o700);
        assert_eq!(check_socket_dir(&dir, current_euid()), Ok(()));
        // Readable by others is allowed: the peer check still applies.
        set_mode(&dir, 0o755);
        assert_eq!(check_socket_dir(&dir, current_euid()), Ok(()));
    }

    #[test]
    fn writable_by_others_symlinked_or_someone_elses_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cmdr");
        std::fs::create_dir(&dir).expect("mkdir");
        set_mode(&dir, 0o777);
        let err = check_socket_dir(&dir, current_euid()).expect_err("0777");
        assert_eq!(err.path, dir);
        assert!(err.reason.contains("others can write"), "{err}");
        set_mode(&dir, 0o700);

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let err = check_socket_dir(&link, current_euid()).expect_err("symlink");
        assert!(err.reason.contains("symlink"), "{err}");

        let other = current_euid().wrapping_add(1);
        let err = check_socket_dir(&dir, other).expect_err("someone else's");
        assert!(
            err.reason
                .contains(&format!("owned by {}", who(current_euid()))),
            "{err}"
        );
    }

    #[test]
    fn a_writable_ancestor_without_the_sticky_bit_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let runtime = tmp.path().join("run");
        let dir = runtime.join("cmdr");
        std::fs::create_dir_all(&dir).expect("mkdir");
        set_mode(&dir, 0o700);
        set_mode(&runtime, 0o777);
        let err = check_socket_dir(&dir, current_euid()).expect_err("0777 parent");
        assert_eq!(err.path, runtime.canonicalize().expect("canonical"));
        assert!(err.reason.contains("not sticky"), "{err}");
        // Sticky, as /tmp is: entries can be replaced only by their owners.
        set_mode(&runtime, 0o1777);
        assert_eq!(check_socket_dir(&dir, current_euid()), Ok(()));
    }
}
