//! `paste` never loses another program's write (issue 23 item 5): a real concurrent writer
//! process rename-saving a new profile 0–30 ms into each paste, and pastes with different
//! data directories at once; crash leftovers (item 6): temps killed mid-write are 0600 and
//! swept by the next paste; and a paste holding a secret is non-dumpable (item 7).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cmdr_testkit::skip::{need, need_root};

use crate::sandbox::{NOBODY, Sandbox, mode, stderr};

fn start_paste(sb: &Sandbox, data_home: Option<&std::path::Path>, profile: &str) -> Child {
    let mut cmd = sb.command("cmdrctl");
    if let Some(dir) = data_home {
        cmd.env("XDG_DATA_HOME", dir);
    }
    let mut child = cmd
        .arg("paste")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let block = format!(
        "[{profile}]\naws_access_key_id = AKIARACE{profile}\naws_secret_access_key = wJalrXUtnFEMI-SECRET-race\n"
    );
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(block.as_bytes());
    child
}

/// A writer like an editor's save: on `N` it sleeps 0–30 ms, reads the file, appends
/// `[wN]` and rename-saves it (temp file, rename); then prints `N`. It takes no lock.
const WRITER: &str = r#"
import os, random, sys
path = sys.argv[1]
for line in sys.stdin:
    n = line.strip()
    random_delay = random.uniform(0, 0.030)
    import time; time.sleep(random_delay)
    with open(path) as f:
        text = f.read()
    tmp = path + ".editor-save"
    with open(tmp, "w") as f:
        f.write(text + "\n[w%s]\nregion = eu-west-1\n" % n)
    os.rename(tmp, path)
    print(n, flush=True)
"#;

#[test]
fn a_rename_save_during_a_paste_is_never_lost() {
    // The concurrent writer is a python3 process.
    if !need("python3", "Debian package `python3`") {
        return;
    }
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    // 400 KB: reading, parsing and editing take long enough for saves to land inside.
    let filler = "# a comment line that makes the file large enough to race with\n".repeat(6_000);
    std::fs::write(sb.credentials(), format!("# top\n{filler}")).expect("write");
    let mut writer = sb
        .external("python3")
        .args(["-c", WRITER])
        .arg(sb.credentials())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut to_writer = writer.stdin.take().expect("stdin");
    let mut from_writer = BufReader::new(writer.stdout.take().expect("stdout"));
    let rounds = 100;
    let (mut lost, mut refused, mut paste_lost, mut reapplied) = (0, 0, 0, 0);
    for n in 0..rounds {
        writeln!(to_writer, "{n}").expect("to writer");
        let paste = start_paste(&sb, None, &format!("p{n}"));
        let out = paste.wait_with_output().expect("paste");
        let mut line = String::new();
        from_writer.read_line(&mut line).expect("from writer");
        assert_eq!(line.trim(), n.to_string());
        let text = std::fs::read_to_string(sb.credentials()).expect("read");
        if !text.contains(&format!("[w{n}]")) {
            lost += 1;
        }
        if stderr(&out).contains("the paste was applied to its version") {
            reapplied += 1;
        }
        match out.status.code() {
            Some(0) => {
                // The writer may have read before the paste and saved after it: then it,
                // not paste, dropped the paste's profile (counted, not asserted).
                if !text.contains(&format!("[p{n}]")) {
                    paste_lost += 1;
                }
            }
            Some(1) => {
                assert!(stderr(&out).contains("kept changing"), "{}", stderr(&out));
                refused += 1;
            }
            other => panic!("paste exited {other:?}: {}", stderr(&out)),
        }
    }
    drop(to_writer);
    let _ = writer.wait();
    eprintln!(
        "rename-save race: {lost} of {rounds} writer saves lost, {reapplied} pastes re-read and re-applied, {refused} pastes refused (exit 1), {paste_lost} pastes overwritten by the writer"
    );
    assert_eq!(lost, 0, "another program's write was lost");
    assert!(
        std::fs::read_to_string(sb.credentials())
            .expect("read")
            .starts_with("# top\n")
    );
}

#[test]
fn pastes_with_different_data_directories_lose_nothing() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(sb.credentials(), "# top\n").expect("write");
    let other_data = sb.root.join("other-data");
    let rounds = 100;
    let mut lost = 0;
    for n in 0..rounds {
        let a = start_paste(&sb, None, &format!("a{n}"));
        let b = start_paste(&sb, Some(&other_data), &format!("b{n}"));
        for child in [a, b] {
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success(), "{}", stderr(&out));
        }
        let text = std::fs::read_to_string(sb.credentials()).expect("read");
        for name in [format!("[a{n}]"), format!("[b{n}]")] {
            if !text.contains(&name) {
                lost += 1;
            }
        }
    }
    eprintln!("two data directories: {lost} pastes lost in {rounds} rounds");
    assert_eq!(lost, 0);
    // The lock is on the directory: nothing of cmdr's lands beside the file.
    let beside: Vec<_> = std::fs::read_dir(&sb.aws)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("credentials")]);
}

fn temps(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&sb.aws)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".credentials.tmp-"))
        })
        .collect()
}

/// `kill -9` during paste left full copies with the new secret at the file's mode (0644
/// here), and hidden backup temps that escaped pruning; nothing removed them.
#[test]
fn crash_leftovers_are_private_and_swept() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    // A large file keeps each write long enough to be killed in the middle.
    let filler = "# a comment line to make the file large enough to be killed while written\n"
        .repeat(40_000);
    std::fs::write(sb.credentials(), &filler).expect("write");
    crate::sandbox::set_mode(&sb.credentials(), 0o644);
    let mut seen = 0;
    for n in 0..30u64 {
        let mut child = start_paste(&sb, None, &format!("k{n}"));
        // Kept: killing paste at a spread of moments in its write is what is under test.
        std::thread::sleep(Duration::from_millis(n * 7 % 120));
        let _ = child.kill();
        let _ = child.wait();
        for temp in temps(&sb) {
            seen += 1;
            assert_eq!(mode(&temp), 0o600, "{} readable by others", temp.display());
        }
    }
    // Leftovers of older versions: one at the file's mode, and a hidden backup temp.
    let old = sb.aws.join(".credentials.tmp-99999999");
    std::fs::write(
        &old,
        "[x]\naws_secret_access_key = wJalrXUtnFEMI-SECRET-old\n",
    )
    .expect("write");
    crate::sandbox::set_mode(&old, 0o644);
    let backups = sb.data_dir.join("backups");
    std::fs::create_dir_all(&backups).expect("backups");
    let hidden = backups.join(".credentials.cmdr-backup-20260101T000000.000000Z.tmp-99999999");
    std::fs::write(&hidden, "secret copy").expect("write");
    let out = start_paste(&sb, None, "after")
        .wait_with_output()
        .expect("paste");
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("kill -9 during paste: {seen} temps seen (all 0600); swept by the next paste");
    assert_eq!(temps(&sb), Vec::<std::path::PathBuf>::new());
    assert!(!hidden.exists(), "the hidden backup temp is swept");
    assert_eq!(mode(&sb.credentials()), 0o644, "the file keeps its mode");
}

/// A core of `cmdrctl paste` held the pasted secret three times. Run as an unprivileged
/// uid (root reads anything); needs root to switch uid, skipped otherwise.
#[test]
fn a_paste_holding_a_secret_is_not_dumpable() {
    if !need_root("running cmdrctl as another uid") {
        return;
    }
    let sb = Sandbox::new();
    let owner = |pid: u32| {
        std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(format!("/proc/{pid}/environ")).expect("stat"),
        )
    };
    // Control: a process of that uid owns its /proc files.
    let mut control = std::process::Command::new("sleep")
        .arg("30")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .expect("sleep");
    let control_owner = owner(control.id());
    let _ = control.kill();
    let _ = control.wait();
    assert_eq!(control_owner, NOBODY);
    // paste waits on stdin, which stays open: by then it must be non-dumpable.
    let mut paste = sb
        .command("cmdrctl")
        .arg("paste")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("paste");
    let deadline = Instant::now() + Duration::from_secs(10);
    while owner(paste.id()) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let final_owner = owner(paste.id());
    let _ = paste.kill();
    let _ = paste.wait();
    assert_eq!(
        final_owner, 0,
        "a non-dumpable process's /proc files belong to root"
    );
}
