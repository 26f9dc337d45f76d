//! A pollable descriptor that becomes readable when watched paths change (Linux inotify,
//! macOS kqueue): for the endpoint's guard and sentinel, small processes that wait on a
//! directory's deletion or a lock file's mark, and on nothing else.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

/// What to be woken by.
#[derive(Clone, Copy)]
pub enum On {
    /// The path is deleted or moved away.
    Gone,
    /// The path is written to, deleted or moved away.
    Changed,
}

pub struct Watch {
    /// inotify (Linux) or kqueue (macOS): both can be polled.
    queue: OwnedFd,
    /// macOS: the watched paths, open for events only, while they are watched.
    #[cfg(target_os = "macos")]
    held: Vec<OwnedFd>,
}

impl Watch {
    /// A watch of `path` alone.
    pub fn of(path: &Path, on: On) -> Option<Watch> {
        let mut watch = Watch::new()?;
        watch.add(path, on).then_some(watch)
    }

    pub fn fd(&self) -> RawFd {
        self.queue.as_raw_fd()
    }

    /// Waits at most `timeout` for an event and takes it in: `true` when one came.
    pub fn wait(&self, timeout: Duration) -> bool {
        let ready = super::handover::poll(&[self.fd()], Some(timeout))[0];
        if ready {
            self.drain();
        }
        ready
    }

    #[cfg(target_os = "linux")]
    pub fn new() -> Option<Watch> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        // SAFETY: a descriptor just created and owned by nothing else.
        (fd >= 0).then(|| Watch {
            queue: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Adds `path`; `false` if it cannot be watched (it does not exist).
    #[cfg(target_os = "linux")]
    pub fn add(&mut self, path: &Path, on: On) -> bool {
        let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        let mask = match on {
            On::Gone => libc::IN_DELETE_SELF | libc::IN_MOVE_SELF,
            On::Changed => {
                libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_MODIFY | libc::IN_ATTRIB
            }
        };
        // SAFETY: a live NUL-terminated path and a valid inotify descriptor.
        unsafe { libc::inotify_add_watch(self.fd(), name.as_ptr(), mask) >= 0 }
    }

    #[cfg(target_os = "linux")]
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a live buffer; the descriptor does not block.
        while unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    #[cfg(target_os = "macos")]
    pub fn new() -> Option<Watch> {
        // SAFETY: kqueue returns a new descriptor or -1.
        let raw = unsafe { libc::kqueue() };
        // SAFETY: a descriptor just created and owned by nothing else.
        (raw >= 0).then(|| Watch {
            queue: unsafe { OwnedFd::from_raw_fd(raw) },
            held: Vec::new(),
        })
    }

    /// Adds `path`; `false` if it cannot be watched (it does not exist).
    #[cfg(target_os = "macos")]
    pub fn add(&mut self, path: &Path, on: On) -> bool {
        let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: a live NUL-terminated path; open returns a new descriptor or -1.
        let raw = unsafe { libc::open(name.as_ptr(), libc::O_EVTONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return false;
        }
        // SAFETY: a descriptor just opened and owned by nothing else.
        let file = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: kevent is plain data.
        let mut change: libc::kevent = unsafe { std::mem::zeroed() };
        change.ident = file.as_raw_fd() as libc::uintptr_t;
        change.filter = libc::EVFILT_VNODE;
        change.flags = libc::EV_ADD | libc::EV_CLEAR;
        change.fflags = match on {
            On::Gone => libc::NOTE_DELETE | libc::NOTE_RENAME | libc::NOTE_REVOKE,
            On::Changed => {
                libc::NOTE_DELETE
                    | libc::NOTE_RENAME
                    | libc::NOTE_REVOKE
                    | libc::NOTE_WRITE
                    | libc::NOTE_EXTEND
                    | libc::NOTE_ATTRIB
            }
        };
        // SAFETY: one change from a live struct, no events asked back.
        let added = unsafe {
            libc::kevent(
                self.fd(),
                &raw const change,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if added != 0 {
            return false;
        }
        self.held.push(file);
        true
    }

    #[cfg(target_os = "macos")]
    fn drain(&self) {
        // SAFETY: kevent is plain data.
        let mut events: [libc::kevent; 8] = unsafe { std::mem::zeroed() };
        let none = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: takes at most 8 events into a live array, without waiting.
        unsafe {
            libc::kevent(
                self.fd(),
                std::ptr::null(),
                0,
                events.as_mut_ptr(),
                8,
                &raw const none,
            )
        };
    }
}
