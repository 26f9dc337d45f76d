//! Standard output with the semantics of other Unix tools: when the reader goes away
//! (`cmdrctl status | head -1`), cmdrctl dies of SIGPIPE quietly instead of panicking.
//!
//! SIGPIPE stays ignored for the process (Rust's default), so a write to a daemon that
//! closed its socket is an error cmdrctl can report; only a broken *stdout* re-raises it
//! with the default action. Every `print!`/`println!` in this crate comes here (the macros
//! in `main.rs`), and so do the completions.

use std::io::Write as _;

/// Writes and flushes; on a broken pipe the process ends as if killed by SIGPIPE.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        fail(&err);
    }
}

pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(bytes).and_then(|()| out.flush()) {
        fail(&err);
    }
}

fn fail(err: &std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        die_of_sigpipe();
    }
    eprintln!("cmdrctl: cannot write to standard output: {err}");
    std::process::exit(1);
}

fn die_of_sigpipe() -> ! {
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE and raising it has no memory
    // effects; the default action ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached on Unix. Elsewhere: the exit status a shell shows for SIGPIPE.
    std::process::exit(141)
}
