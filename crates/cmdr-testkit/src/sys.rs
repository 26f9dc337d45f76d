//! Safe wrappers of the libc calls the tests and the benchmarks make: the only `unsafe`
//! blocks either needs, each with the reason it is sound.

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::Path;
use std::process::{Child, ExitStatus};

/// The signals the tests and the benchmarks send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Stop,
    Cont,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

/// Whether this process runs as root (effective uid 0): tests that act as another uid need
/// it, and root reads files that others cannot.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    kill(pid, signal)
}

/// Sends `signal` to every process of group `pgid` (a child spawned with
/// `process_group(0)` leads one whose id is its pid).
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::other("pid out of range"))?;
    kill(-pgid, signal)
}

fn kill(pid: libc::pid_t, signal: Signal) -> io::Result<()> {
    // 0 and -1 would signal our own group or every process we may signal.
    if pid == 0 || pid == -1 {
        return Err(io::Error::other("refusing to signal a group of our own"));
    }
    // SAFETY: kill takes plain integers and has no memory effects.
    if unsafe { libc::kill(pid, signal.number()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// SIGTERM, then waits for the child to exit.
pub fn terminate(child: &mut Child) -> io::Result<ExitStatus> {
    signal(child.id(), Signal::Term)?;
    child.wait()
}

/// Raises this process's soft limit on open descriptors to `want` (at most the hard
/// limit; never lowers it). Returns the soft limit now in force. Children inherit it.
pub fn raise_nofile(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a pointer to a live rlimit for getrlimit to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    // rlim_t is u64 on Linux and macOS.
    let want: libc::rlim_t = want;
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.min(want),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: a valid resource and a pointer to a live rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc/<pid>/stat`'s CPU times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).unwrap_or(0).max(1)
}

/// Waits for `child` to exit, reaping it with `wait4`: whether it exited with status 0, and
/// its peak resident set size in KiB (`ru_maxrss`).
pub fn wait_with_peak_rss(child: Child) -> io::Result<(bool, u64)> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| io::Error::other("pid"))?;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped (we own its `Child`); status and usage
    // are live and valid for writes.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if got != pid {
        return Err(io::Error::last_os_error());
    }
    // Reaped: dropping the `Child` does not wait again.
    drop(child);
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// A new pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into an array of two.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Creates a FIFO (named pipe) at `path` with `mode`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path holds a NUL byte"))?;
    let mode = libc::mode_t::try_from(mode).map_err(|_| io::Error::other("mode"))?;
    // SAFETY: a valid NUL-terminated path that lives across the call.
    if unsafe { libc::mkfifo(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::Command;

    #[test]
    fn signals_reach_the_child_and_its_group() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let status = terminate(&mut child).expect("terminate");
        assert_eq!(status.signal(), Some(libc::SIGTERM));

        use std::os::unix::process::CommandExt as _;
        let mut group = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        signal_group(group.id(), Signal::Term).expect("group");
        assert_eq!(group.wait().expect("wait").signal(), Some(libc::SIGTERM));
        assert!(signal(0, Signal::Term).is_err());
    }

    #[test]
    fn peak_rss_and_exit_status() {
        let child = Command::new("true").spawn().expect("true");
        let (ok, rss) = wait_with_peak_rss(child).expect("wait4");
        assert!(ok && rss > 0, "{ok} {rss}");
        let child = Command::new("false").spawn().expect("false");
        assert!(!wait_with_peak_rss(child).expect("wait4").0);
    }

    #[test]
    fn limits_ticks_pipes_and_fifos() {
        let now = raise_nofile(0);
        assert!(now > 0);
        assert!(raise_nofile(now + 1) >= now);
        assert!(clock_ticks_per_second() >= 1);

        let (read, write) = pipe().expect("pipe");
        let mut w = std::fs::File::from(write);
        std::io::Write::write_all(&mut w, b"x").expect("write");
        drop(w);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut text).expect("read");
        assert_eq!(text, "x");

        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo, 0o600).expect("mkfifo");
        use std::os::unix::fs::FileTypeExt as _;
        assert!(
            std::fs::metadata(&fifo)
                .expect("stat")
                .file_type()
                .is_fifo()
        );
        assert!(mkfifo(&fifo, 0o600).is_err());
    }
}
