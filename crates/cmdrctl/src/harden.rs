//! A cmdrctl process that holds a secret (`paste`, `env`, `credential-process`, `exec
//! --static` before it execs) marks itself non-dumpable first, as cmdrd does: no core
//! file, and no other process of the user reads its memory (`/proc/PID/mem`, ptrace).
//! `execve` resets the flag, so the child of `exec --static` is an ordinary process.

/// `prctl(PR_SET_DUMPABLE, 0)` on Linux; nothing elsewhere.
pub fn non_dumpable() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes a flag.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if rc != 0 {
            eprintln!("cmdrctl: warning: could not mark the process non-dumpable");
        }
    }
}
