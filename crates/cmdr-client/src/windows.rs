//! Windows: who this user is (the SID of the process token) and which user owns the
//! process at the other end of a named pipe. A named pipe's peer credentials are only a
//! process id; the daemon checks its clients and the client checks the daemon with these.

use std::io;
use std::path::Path;
use std::ptr;

use interprocess::local_socket::tokio::{Stream, prelude::*};

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{GetTokenInformation, TOKEN_QUERY, TOKEN_USER, TokenUser};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The string SID (`S-1-5-21-…`) of the user this process runs as.
pub fn current_user_sid() -> io::Result<String> {
    // SAFETY: the pseudo-handle of the current process needs no closing and is always valid.
    token_user_sid(unsafe { GetCurrentProcess() })
}

/// The string SID of the user that process `pid` runs as.
pub fn process_user_sid(pid: u32) -> io::Result<String> {
    // SAFETY: OpenProcess takes no pointers; a null result is checked.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    let process = Owned(process);
    token_user_sid(process.0)
}

/// The daemon must run as this user: another process could have taken the pipe's name
/// first, and would then read every request (and hand out its own credentials).
pub(crate) fn check_daemon_user(stream: &Stream, socket: &Path) -> Result<(), crate::ClientError> {
    let ours = current_user_sid();
    let theirs = stream
        .peer_creds()
        .ok()
        .and_then(|creds| creds.pid())
        .map(process_user_sid);
    match (ours, theirs) {
        (Ok(ours), Some(Ok(theirs))) if ours == theirs => Ok(()),
        _ => Err(crate::ClientError::Refused(format!(
            "the process serving {} does not run as this user; not talking to it",
            socket.display()
        ))),
    }
}

/// A handle closed on drop.
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by us and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

fn token_user_sid(process: HANDLE) -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: `token` is a valid out pointer; failure is checked.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let token = Owned(token);
    let mut len = 0u32;
    // SAFETY: a size query with a null buffer; it fails with the size in `len`.
    unsafe { GetTokenInformation(token.0, TokenUser, ptr::null_mut(), 0, &mut len) };
    if len == 0 || len > 64 * 1024 {
        return Err(io::Error::last_os_error());
    }
    // u64 cells: TOKEN_USER holds pointers and needs their alignment.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` has at least `len` writable bytes; failure is checked.
    if unsafe { GetTokenInformation(token.0, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) }
        == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call filled `buf` with a TOKEN_USER, suitably aligned.
    let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
    let mut wide: *mut u16 = ptr::null_mut();
    // SAFETY: the SID points into `buf`, alive here; `wide` is a valid out pointer.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut wide) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `wide` is a NUL-terminated string allocated with LocalAlloc.
    let text = unsafe {
        let len = (0..).take_while(|&i| *wide.add(i) != 0).count();
        let text = String::from_utf16_lossy(std::slice::from_raw_parts(wide, len));
        LocalFree(wide.cast());
        text
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_as_the_current_user() {
        let sid = current_user_sid().expect("own sid");
        assert!(sid.starts_with("S-1-"), "{sid}");
        assert_eq!(process_user_sid(std::process::id()).expect("pid sid"), sid);
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Process ids are multiples of 4; 1 is never one.
        assert!(process_user_sid(1).is_err());
    }
}
