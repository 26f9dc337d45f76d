//! Faults: `kill -9` at random moments during account and file operations, a full disk,
//! a read-only data dir, an unreadable credentials file, an inotify queue overflow and the
//! inotify watch limit. The state file is never corrupt, nothing accepted is lost, and the
//! daemon keeps serving. Mounts and sysctls need root (CI runs as root); those parts are
//! skipped with a message otherwise (a failure in CI: `cmdr_testkit::skip`), and every
//! system setting is restored on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cmdr_testkit::Rng;
use cmdr_testkit::skip::{need_root, skip};
use serde_json::Value;

use crate::sandbox::{NOBODY, Sandbox, creds, scale, set_mode};

/// One system-wide inotify experiment at a time.
static SYSCTL: Mutex<()> = Mutex::new(());

/// A mount that is undone (lazily) when dropped, even when the test fails.
struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], target: &Path) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(args)
            .arg(target)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(target.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether this process may mount (root with CAP_SYS_ADMIN; not in every container).
fn can_mount() -> bool {
    if !need_root("mounting") {
        return false;
    }
    let probe = tempfile::tempdir().expect("tempdir");
    let ok = Mount::new(&["-t", "tmpfs", "-o", "size=4k", "tmpfs"], probe.path()).is_some();
    if !ok {
        skip("mount is not permitted here (no CAP_SYS_ADMIN?)");
    }
    ok
}

/// A sysctl value restored when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = std::fs::read_to_string(path).ok()?;
        std::fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// The profile fingerprints a fresh parse of the files gives (the test's own parse).
pub fn fresh_fingerprints(sb: &Sandbox) -> BTreeMap<String, Option<String>> {
    let read = |p: PathBuf| std::fs::read(p).unwrap_or_default();
    let (config, credentials) = (read(sb.config()), read(sb.credentials()));
    let cache = BTreeMap::new();
    let view = cmdr_core::parse_view(cmdr_core::Inputs {
        config: &config,
        credentials: &credentials,
        sso_cache: &cache,
    })
    .expect("the test writes only valid files");
    view.profiles
        .into_iter()
        .map(|(name, p)| (name, p.fingerprint))
        .collect()
}

/// The daemon's view: profile name → fingerprint.
pub fn daemon_fingerprints(sb: &Sandbox) -> BTreeMap<String, Option<String>> {
    let profiles = sb.json(&["profiles"]);
    profiles
        .as_array()
        .expect("profiles array")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["fingerprint"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn state_is_sound(sb: &Sandbox) -> Value {
    let corrupt: Vec<_> = std::fs::read_dir(&sb.data_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("corrupt"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        corrupt.is_empty(),
        "state moved aside as corrupt: {corrupt:?}"
    );
    match std::fs::read(sb.state_file()) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "state.json is corrupt: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        }),
        Err(_) => Value::Null,
    }
}

fn accounts(sb: &Sandbox) -> BTreeMap<String, Value> {
    sb.json(&["accounts", "list"])
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| (a["name"].as_str().unwrap_or_default().to_owned(), a.clone()))
        .collect()
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let profiles = 4;
    let mut rng = Rng::seeded();
    let mut tokens: Vec<String> = (0..profiles).map(|p| format!("TOKEN-K0-{p}")).collect();
    let render = |tokens: &[String]| -> String {
        tokens
            .iter()
            .enumerate()
            .map(|(p, t)| creds(&format!("p{p}"), t))
            .collect()
    };
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&render(&tokens));
    // Every fingerprint each profile ever had: an accepted one must be among them.
    let mut history: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let remember = |sb: &Sandbox, history: &mut BTreeMap<String, BTreeSet<String>>| {
        for (name, fp) in fresh_fingerprints(sb) {
            history.entry(name).or_default().extend(fp);
        }
    };
    remember(&sb, &mut history);
    // Accounts whose `add` returned success: they must survive every crash.
    let mut confirmed: BTreeSet<String> = BTreeSet::new();
    let iterations = scale(25, 1_000);
    let mut kills = 0;
    for i in 0..iterations {
        sb.start();
        // After every crash: the state parses and nothing confirmed is missing.
        state_is_sound(&sb);
        let list = accounts(&sb);
        for name in &confirmed {
            let account = list
                .get(name)
                .unwrap_or_else(|| panic!("confirmed account {name} lost after kill -9"));
            let accepted = account["accepted_fingerprint"].as_str();
            let profile = account["profile"].as_str().unwrap_or_default();
            let known = history.get(profile).cloned().unwrap_or_default();
            assert!(
                accepted.is_some_and(|fp| known.contains(fp)),
                "{name}: accepted fingerprint {accepted:?} lost or unknown ({known:?})"
            );
        }
        let delay = Duration::from_micros(rng.below(40_000) as u64);
        match rng.below(3) {
            0 => {
                let name = format!("a{i}");
                let profile = format!("p{}", rng.below(profiles));
                let args = ["accounts", "add", &name, "--profile", &profile];
                let added = ctl_then_kill9(
                    &mut sb,
                    &[&args[..], &["--on-change", "auto"]].concat(),
                    delay,
                );
                if added {
                    confirmed.insert(name);
                }
            }
            1 => {
                let p = rng.below(profiles);
                tokens[p] = format!("TOKEN-K{i}-{p}");
                sb.write_credentials(&render(&tokens));
                remember(&sb, &mut history);
                // Kept: SIGKILL at a random moment after the write is what is under test.
                std::thread::sleep(delay);
                sb.kill9();
            }
            _ => {
                let target = confirmed.iter().nth(rng.below(confirmed.len().max(1)));
                let name = target.cloned().unwrap_or_else(|| "nobody".to_owned());
                ctl_then_kill9(&mut sb, &["accept", &name], delay);
            }
        }
        kills += 1;
    }
    sb.start();
    state_is_sound(&sb);
    // Crashed writes must not leave temp files piling up next to the state.
    let leftovers: Vec<_> = std::fs::read_dir(&sb.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "stale temp files: {leftovers:?}");
    eprintln!(
        "figure: kill -9 during operations: {kills}, confirmed accounts kept: {}/{}",
        confirmed.len(),
        confirmed.len()
    );
}

fn add(sb: &Sandbox, name: &str) -> std::process::Output {
    sb.ctl(&["accounts", "add", name, "--profile", "acme"])
}

/// Shared by the full-disk and read-only cases: saving fails clearly, the old state stays,
/// the daemon keeps serving, and it recovers once the disk is writable again.
/// `make_unwritable` returns how to make it writable again and a mount to undo at the end.
fn unwritable_data_dir(
    make_unwritable: impl FnOnce(&Sandbox) -> (Box<dyn FnOnce()>, Option<Mount>),
) {
    let mut sb = Sandbox::with_profile("TOKEN-FAULT-ONE");
    std::fs::create_dir_all(&sb.data_dir).expect("data dir");
    sb.start();
    sb.add_account("first", &[]);
    let before = std::fs::read(sb.state_file()).expect("state");
    let (restore, _mount) = make_unwritable(&sb);
    let out = add(&sb, "second");
    let stderr = crate::sandbox::stderr(&out);
    assert!(!out.status.success(), "saving cannot have worked");
    assert!(
        stderr.contains("state") && stderr.contains(&sb.data_dir.display().to_string()),
        "the error must say what could not be saved and where: {stderr}"
    );
    assert_eq!(std::fs::read(sb.state_file()).expect("state"), before);
    // Still serving, and the failed change was rolled back.
    let list = accounts(&sb);
    assert!(list.contains_key("first") && !list.contains_key("second"));
    sb.write_credentials(&creds("acme", "TOKEN-FAULT-TWO"));
    sb.wait_until("the new token is seen", || {
        sb.account("first")["state"] == "changed"
    });
    restore();
    assert!(add(&sb, "second").status.success());
    sb.stop();
    sb.start();
    let list = accounts(&sb);
    assert!(list.contains_key("first") && list.contains_key("second"));
}

#[test]
fn full_disk_keeps_old_state_and_serving() {
    if !can_mount() {
        return;
    }
    unwritable_data_dir(|sb| {
        // Move the data dir onto a tiny tmpfs, then fill it.
        let old = std::fs::read(sb.state_file()).expect("state");
        let mount = Mount::new(
            &["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"],
            &sb.data_dir,
        )
        .expect("mount tmpfs (needs CAP_SYS_ADMIN)");
        std::fs::write(sb.state_file(), &old).expect("state onto tmpfs");
        let filler = sb.data_dir.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        drop(file);
        // The mount stays until the end of the test: the state lives there now.
        let restore = move || std::fs::remove_file(&filler).expect("free space");
        (Box::new(restore), Some(mount))
    });
}

/// The state file's `error` in `status --json` (None while it is healthy).
fn state_error(sb: &Sandbox) -> Option<String> {
    let status = sb.json(&["status"]);
    let files = status["files"].as_array().cloned().unwrap_or_default();
    let state = files
        .iter()
        .find(|f| f["kind"] == "state")
        .unwrap_or_else(|| panic!("no state file in status: {status}"))
        .clone();
    state["error"].as_str().map(str::to_owned)
}

#[test]
fn starts_on_a_full_data_filesystem_and_serves_read_only() {
    if !can_mount() {
        return;
    }
    let mut sb = Sandbox::with_profile("TOKEN-FULL-START");
    sb.start();
    sb.add_account("first", &[]);
    sb.stop();
    // The data dir moves onto a tiny tmpfs with what it held, which is then filled.
    let kept: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&sb.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read")))
        .collect();
    let _mount = Mount::new(
        &["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"],
        &sb.data_dir,
    )
    .expect("mount tmpfs (needs CAP_SYS_ADMIN)");
    for (path, bytes) in &kept {
        std::fs::write(path, bytes).expect("copy onto tmpfs");
    }
    let filler = sb.data_dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    sb.start();
    let error = state_error(&sb).expect("status must say the state cannot be written");
    assert!(
        error.contains("No space left on device") && error.contains("read-only"),
        "{error}"
    );
    // Serving: the account is there; a change is refused and rolled back.
    assert_eq!(accounts(&sb).len(), 1);
    assert!(!add(&sb, "second").status.success());
    assert!(!accounts(&sb).contains_key("second"));
    // Space again: the next change is saved and the warning is gone.
    std::fs::remove_file(&filler).expect("free space");
    assert!(add(&sb, "second").status.success());
    assert_eq!(state_error(&sb), None);
}

#[test]
fn read_only_data_dir_keeps_old_state_and_serving() {
    if !can_mount() {
        return;
    }
    unwritable_data_dir(|sb| {
        let dir = sb.data_dir.to_str().expect("utf-8 path").to_owned();
        let bind = Mount::new(&["--bind", &dir], &sb.data_dir).expect("bind mount");
        let ok = Command::new("mount")
            .args(["-o", "remount,bind,ro", &dir])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount read-only");
        (Box::new(move || drop(bind)), None)
    });
}

#[test]
fn unreadable_credentials_file_is_a_file_error_not_a_crash() {
    if !need_root("running the daemon as another uid") {
        return;
    }
    // As root, mode 000 is still readable: run the whole sandbox as nobody.
    let mut sb = Sandbox::with_profile("TOKEN-UNREADABLE-ONE");
    set_mode(&sb.root, 0o755);
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(&sb.root)
        .status()
        .expect("chown");
    assert!(status.success());
    sb.run_as = Some(NOBODY);
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    set_mode(&sb.credentials(), 0o000);
    let event = watch.wait_type("file_error");
    assert!(event.to_string().contains("credentials"), "{event}");
    assert!(sb.ctl(&["status"]).status.success());
    // The last good view is kept.
    assert_eq!(sb.account("acme")["state"], "ok");
    set_mode(&sb.credentials(), 0o600);
    watch.wait_type("file_recovered");
    assert_eq!(sb.account("acme")["state"], "ok");
}

#[test]
fn inotify_queue_overflow_triggers_a_rescan() {
    if !need_root("lowering fs.inotify.max_queued_events") {
        return;
    }
    let _one = SYSCTL.lock().unwrap_or_else(|e| e.into_inner());
    let mut sb = Sandbox::with_profile("TOKEN-OVERFLOW-0");
    {
        // Only inotify instances created while it is low get the tiny queue: the daemon's.
        let Some(_low) = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "8") else {
            return skip("/proc/sys/fs/inotify/max_queued_events is not writable here");
        };
        sb.start();
        sb.wait_until("watches set up", || sb.log_text().contains("watching"));
    }
    let overflowed = || sb.log_text().contains("event queue overflow");
    let mut storms = 0;
    let mut round = 0;
    while !overflowed() && storms < 5 {
        storms += 1;
        for i in 0..2000 {
            let junk = sb.aws.join(format!("junk{i}"));
            let _ = std::fs::write(&junk, "x");
            let _ = std::fs::remove_file(&junk);
            if i % 500 == 0 {
                round += 1;
                sb.write_credentials(&creds("acme", &format!("TOKEN-OVERFLOW-{round}")));
            }
        }
        // The daemon logs the overflow once it reads its queue: a while before another storm.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !overflowed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    assert!(overflowed(), "no overflow after {storms} storms");
    let want = fresh_fingerprints(&sb);
    sb.wait_until("the final view after overflow", || {
        daemon_fingerprints(&sb) == want
    });
    eprintln!("figure: inotify overflow storms: {storms}, final view right");
}

#[test]
fn inotify_watch_limit_falls_back_to_polling() {
    let userns = Command::new("unshare")
        .args(["--user", "--map-root-user", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !userns {
        return skip("cannot create a user namespace for a private inotify watch limit");
    }
    // The credentials file is a symlink into ~/dotfiles (stow, chezmoi): the daemon needs
    // watches on ~/.aws and ~/dotfiles.
    let mut sb = Sandbox::new();
    let dotfiles = sb.home.join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("dotfiles");
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        dotfiles.join("credentials"),
        creds("acme", "TOKEN-LIMIT-ONE"),
    )
    .expect("write");
    std::os::unix::fs::symlink("../dotfiles/credentials", sb.credentials()).expect("symlink");
    // A user namespace of its own with a limit of one inotify watch: ~/dotfiles cannot be
    // watched. Nothing outside the namespace is affected.
    sb.daemon_wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 1 > /proc/sys/user/max_inotify_watches && exec \"$0\"",
    ]
    .map(str::to_owned)
    .to_vec();
    sb.start();
    sb.wait_until("the fallback", || {
        sb.log_text().contains("falling back to periodic rescans")
    });
    // `status` says so: the directory it rescans instead of watching.
    let status = sb.json(&["status"]);
    let polled: Vec<&Value> = status["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["kind"] == "watch")
        .collect();
    assert_eq!(polled.len(), 1, "{status}");
    assert_eq!(
        polled[0]["path"],
        dotfiles.display().to_string(),
        "{status}"
    );
    assert!(
        polled[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("falling back to rescans every 2 s")),
        "{status}"
    );
    for round in 2..5 {
        // Written into the unwatched directory: only the rescans can see it.
        std::fs::write(
            dotfiles.join("credentials"),
            creds("acme", &format!("TOKEN-LIMIT-{round}")),
        )
        .expect("write");
        let want = fresh_fingerprints(&sb);
        sb.wait_until("the view after a change in an unwatched dir", || {
            daemon_fingerprints(&sb) == want
        });
    }
}

/// Starts `cmdrctl ARGS` quietly, kills the daemon with SIGKILL after `delay`, and says
/// whether the command still reported success.
fn ctl_then_kill9(sb: &mut Sandbox, args: &[&str], delay: Duration) -> bool {
    let mut child = sb
        .command("cmdrctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Kept: SIGKILL at a random moment during the command is what is under test.
    std::thread::sleep(delay);
    sb.kill9();
    child.wait().expect("wait").success()
}

#[test]
fn an_oversized_journal_is_kept_aside_not_deleted() {
    let mut sb = Sandbox::with_profile("TOKEN-BIG-JOURNAL");
    sb.start();
    sb.add_account("first", &[]);
    sb.stop();
    // Over the 64 MiB it replays (sparse: no disk is spent on it).
    let journal = sb.data_dir.join("state.journal");
    let big = (64 << 20) + 1;
    std::fs::File::create(&journal)
        .and_then(|f| f.set_len(big))
        .expect("big journal");
    sb.start();
    assert!(
        sb.log_text()
            .contains("state journal is too large to replay; kept it aside"),
        "{}",
        sb.log_tail()
    );
    assert!(accounts(&sb).contains_key("first"));
    // Saves go on; the journal that was set aside stays, whole.
    sb.add_account("second", &[]);
    let aside: Vec<_> = std::fs::read_dir(&sb.data_dir)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.journal.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].metadata().expect("stat").len(), big);
}
