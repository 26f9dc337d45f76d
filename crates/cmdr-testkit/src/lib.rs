//! cmdr-testkit: what the end-to-end tests (`tests/`) and the benchmarks (cmdr-bench) share:
//! a temp HOME laid out as cmdr expects it ([`TempHome`]) and the environment every command
//! in it runs with, `moto_server` on loopback ([`Moto`]), a seeded generator ([`Rng`]),
//! skipping a test that cannot run here ([`skip`]: a failure in CI), and safe wrappers of
//! the few libc calls they make ([`sys`]), so that neither holds an `unsafe` block of its
//! own.
//!
//! A crate rather than the bench using the tests crate: the bench needs neither the test
//! binary's `Sandbox` (which panics, scans for leaked secrets and waits on `cmdrctl`) nor
//! the tests crate's SDK client; both need this much, with `io::Result` so each keeps its
//! own error style.

// Unix only, like its two users: uids, signals, rlimits, FIFOs, file modes.
#![cfg(unix)]

mod home;
mod moto;
mod rng;
pub mod skip;
pub mod sys;

pub use home::{TempHome, set_mode};
pub use moto::{Moto, free_port};
pub use rng::Rng;
