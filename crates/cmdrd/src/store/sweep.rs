//! Temp files left by writes cut short (`kill -9`, power loss), swept at start so they do
//! not pile up, one per crash: the state file's own (`.state.json.tmp-PID`: only the daemon
//! holding the data directory's lock writes it, and it sweeps before its first save, so
//! any is stale), and any other `.NAME.tmp-PID` (`write_atomic`'s temps: the socket note,
//! the port file, `cmdrctl paste`'s backups) whose process is gone. The AWS directory's
//! temps are `cmdrctl paste`'s to sweep.

use std::path::Path;

/// Sweeps the data directory `dir` (holding `state_name`) and its `backups/`.
pub(super) fn stale_temps(dir: &Path, state_name: &str) {
    let ours = format!(".{state_name}.tmp-");
    for dir in [dir.to_owned(), dir.join("backups")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !(file.starts_with(&ours) || temp_of_dead_process(&file)) {
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
}

/// Whether `file` is named like `write_atomic`'s temps (`.NAME.tmp-PID`, or
/// `.NAME.tmp-PID-N` from `create_temp`) and process PID is gone (never our own).
fn temp_of_dead_process(file: &str) -> bool {
    let Some(pid) = file
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
        .and_then(|(_, pid)| pid.split('-').next().unwrap_or(pid).parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !process_alive(pid)
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Elsewhere only the state file's own temps are swept.
#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn temps_of_dead_processes_go_and_live_ones_stay() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        std::fs::create_dir(dir.join("backups")).expect("mkdir");
        let (dead, live) = (dead_pid(), std::process::id());
        let files = [
            (format!(".state.json.tmp-{live}"), false),
            (format!(".cmdrd.socket.tmp-{dead}"), false),
            (format!(".cmdrd.socket.tmp-{dead}-3"), false),
            (
                format!("backups/.credentials.cmdr-backup-1.tmp-{dead}"),
                false,
            ),
            (format!(".endpoint.port.tmp-{live}"), true),
            ("other.tmp-1".to_owned(), true),
            (".no-pid.tmp-x".to_owned(), true),
        ];
        for (name, _) in &files {
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        stale_temps(dir, "state.json");
        for (name, kept) in &files {
            assert_eq!(dir.join(name).exists(), *kept, "{name}");
        }
    }
}
