//! Secrets in the daemon's memory: the daemon is non-dumpable, so another process of the
//! same user can neither read its memory (/proc/PID/mem, ptrace) nor get a core file.
//! Checked with the daemon and the prying process both running as an unprivileged uid
//! (root could read anything); needs root to switch uid, skipped with a message otherwise.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use cmdr_testkit::skip::need_root;

use crate::sandbox::{NOBODY, Sandbox, set_mode};

/// Whether a process of uid `NOBODY` can read `path` (as a ptrace-checked /proc file).
fn nobody_can_read(path: &str) -> bool {
    Command::new("head")
        .args(["-c", "1", path])
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn daemon_memory_cannot_be_read_by_the_same_user() {
    if !need_root("running the daemon and a prying process as another uid") {
        return;
    }
    let mut sb = Sandbox::with_profile("SECRET-IN-MEMORY-TOKEN");
    set_mode(&sb.root, 0o755);
    let chown = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(&sb.root)
        .status()
        .expect("chown");
    assert!(chown.success());
    sb.run_as = Some(NOBODY);
    sb.start();
    sb.add_account("acme", &[]);
    let pid = sb.pid().expect("pid");

    // Control: an ordinary process of that uid is readable by its siblings.
    let mut control = Command::new("sleep")
        .arg("30")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .expect("spawn sleep");
    let control_readable = nobody_can_read(&format!("/proc/{}/environ", control.id()));
    let _ = control.kill();
    let _ = control.wait();
    assert!(control_readable, "the control process should be readable");

    // The daemon is not: PR_SET_DUMPABLE 0 makes its /proc files root's.
    for file in ["environ", "mem", "maps"] {
        assert!(
            !nobody_can_read(&format!("/proc/{pid}/{file}")),
            "/proc/{pid}/{file} readable by the same uid"
        );
    }
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(format!("/proc/{pid}/environ"))
        .expect("stat")
        .uid();
    assert_eq!(
        owner, 0,
        "a non-dumpable process's /proc files belong to root"
    );
    assert!(sb.ctl(&["status"]).status.success());
}
