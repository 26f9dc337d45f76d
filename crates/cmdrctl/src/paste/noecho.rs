//! The terminal's echo off while a block of keys is pasted into it: the secret key and
//! session token are not shown on screen, nor kept in the terminal's scrollback or a
//! screen recording. Restored when the read ends, and on SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT before the process dies of them (a Ctrl-C must not leave the shell blind).
//! Windows' console is left as it is (a known gap: its echo is a console mode).

/// Echo off on standard input until dropped; `None` when it is not a terminal whose
/// mode could be read.
pub struct NoEcho {
    #[cfg(unix)]
    saved: libc::termios,
}

#[cfg(unix)]
static SAVED: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

#[cfg(unix)]
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Puts the terminal back and dies of `signal` as if no handler were installed.
#[cfg(unix)]
extern "C" fn restore_and_die(signal: libc::c_int) {
    // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED was set before the
    // handler was installed and is only read here (an atomic load).
    unsafe {
        if let Some(saved) = SAVED.get() {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

impl NoEcho {
    #[cfg(unix)]
    pub fn on_stdin() -> Option<NoEcho> {
        let mut mode = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios it is given when it returns 0.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, mode.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let saved = unsafe { mode.assume_init() };
        let _ = SAVED.set(saved);
        for signal in SIGNALS {
            let handler = restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SAFETY: installs a handler that only calls async-signal-safe functions.
            unsafe { libc::signal(signal, handler) };
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: quiet is a valid termios (a copy of the current one).
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(NoEcho { saved })
    }

    #[cfg(not(unix))]
    pub fn on_stdin() -> Option<NoEcho> {
        None
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores the termios read by tcgetattr; the handlers go back to default.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
            for signal in SIGNALS {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}
