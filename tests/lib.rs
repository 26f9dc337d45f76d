//! End-to-end test support lives in main.rs; this library is empty.

// Unix only: these tests drive the real binaries over a Unix socket, with signals, uids and
// file modes. On Windows the same parts are tested by the crates' own tests under Wine and
// by the smoke in scripts/cross-check.
#![cfg(unix)]
