//! Skipping a test that cannot run here: one `skipped: …` line on a developer's machine,
//! a failure in CI, where a skipped test would look like a passed one.
//!
//! ```text
//! if !need("nvim", "Debian package `neovim`") { return; }
//! if !need_root("acting as another uid") { return; }
//! if !mount_works { return skip("mount is not permitted here (no CAP_SYS_ADMIN?)"); }
//! ```

use std::path::Path;

/// Whether a skip fails the test: `CI=true` (set by CI services), or running as root where
/// `apt-get` exists — the machine on which `scripts/test` (the CI command, `.ci/run`)
/// installs every tool the tests use, so a missing one means the run is broken.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || (crate::sys::is_root() && have("apt-get"))
}

/// Says that (part of) a test cannot run here, with `reason`: prints `skipped: REASON` on
/// stderr, or panics with the reason where [`strict`].
pub fn skip(reason: &str) {
    assert!(
        !strict(),
        "cannot skip in CI (CI=true, or root where scripts/test installs the tools): {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// Whether `program` is on PATH; when it is not, [`skip`]s saying so and where it comes
/// from (`install`, e.g. "Debian package `neovim`").
pub fn need(program: &str, install: &str) -> bool {
    let found = have(program);
    if !found {
        skip(&format!("{program} is not installed ({install})"));
    }
    found
}

/// Whether this process runs as root; when not, [`skip`]s saying that `what` needs it.
pub fn need_root(what: &str) -> bool {
    let root = crate::sys::is_root();
    if !root {
        skip(&format!("{what} needs root"));
    }
    root
}

/// Whether `program` is an executable file on PATH (or, given with a `/`, at that path).
pub fn have(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

#[cfg(test)]
mod tests {
    use super::have;

    #[test]
    fn have_finds_programs_on_path_only() {
        assert!(have("sh"));
        assert!(have("/bin/sh"));
        assert!(!have("cmdr-no-such-program"));
        assert!(!have("/nonexistent/sh"));
    }
}
