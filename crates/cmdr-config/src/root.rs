//! root on another user's files: `sudo -E cmdrd` or `sudo cmdrctl paste` would write
//! root-owned files into a user's HOME (a `cmdrd.lock` and `state.json` that lock the user
//! out, a credentials file the user can no longer read) and follow symlinks the user
//! planted. cmdr refuses instead: when the effective uid is 0 and HOME, the data directory
//! or an AWS file belongs to another uid, cmdrd and cmdrctl's writing commands stop with a
//! message saying to run as that user. `CMDR_ALLOW_ROOT=1` overrides it (a deliberate,
//! root-managed setup). Only Unix has this: Windows has no root that borrows a HOME.

#[cfg(unix)]
use std::path::{Path, PathBuf};

use crate::Settings;

/// The variable that lets root use files that belong to another user anyway.
pub const ALLOW_ROOT_VAR: &str = "CMDR_ALLOW_ROOT";

/// `Err(message)` when this process runs as root on files that belong to another user
/// (and `CMDR_ALLOW_ROOT` is not set); `program` names the binary in the message.
pub fn refuse_root_on_foreign_files(settings: &Settings, program: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        let allowed = std::env::var_os(ALLOW_ROOT_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        if euid != 0 || allowed {
            return Ok(());
        }
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let paths = home
            .iter()
            .chain([
                &settings.data_dir,
                &settings.aws_credentials,
                &settings.aws_config,
            ])
            .cloned();
        for path in paths {
            if let Some((at, owner)) = foreign_owner(&path) {
                let who = cmdr_client::unix::who(owner);
                return Err(format!(
                    "running as root, but {} belongs to {who}: run {program} as that user (without sudo, or `sudo -u '#{owner}' …`), so that every file it writes stays theirs; set {ALLOW_ROOT_VAR}=1 to use these files as root anyway",
                    at.display()
                ));
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (settings, program);
        Ok(())
    }
}

/// The path itself, or its nearest existing ancestor, when it belongs to a uid other
/// than root (what a file created there would be written into).
#[cfg(unix)]
fn foreign_owner(path: &Path) -> Option<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let (at, meta) = path
        .ancestors()
        .find_map(|p| p.symlink_metadata().ok().map(|m| (p.to_owned(), m)))?;
    (meta.uid() != 0).then_some((at, meta.uid()))
}
