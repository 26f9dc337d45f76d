//! cmdr-bench: runs every benchmark of docs/benchmarks.md against its baseline in the
//! same run, prints the table and writes that page (`scripts/bench` drives it).
//!
//! Usage: `cmdr-bench [--quick] [--build-time] [--only NAME] [--bins DIR] [--out PATH]`;
//! `--only NAME` runs the benchmarks whose names contain NAME and, when the page exists,
//! puts their sections into it in place of the old ones (`scripts/bench --only NAME`).
//!
//! Unix only: the benchmarks drive the daemon with signals and `wait4`, raise rlimits and
//! read `sysconf` and file modes. The modules are gated here, at the module level; on other
//! platforms the binary says so and exits 2.

#[cfg(unix)]
mod daemon;
#[cfg(unix)]
mod files;
#[cfg(unix)]
mod measure;
#[cfg(unix)]
mod portals;
#[cfg(unix)]
mod propagation;
#[cfg(unix)]
mod report;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod scale;

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    run::main()
}

#[cfg(not(unix))]
fn main() -> std::process::ExitCode {
    eprintln!("cmdr-bench runs on Unix only (signals, wait4, rlimits)");
    std::process::ExitCode::from(2)
}
