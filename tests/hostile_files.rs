//! Hostile files against the real daemon, doctor and paste: FIFOs and devices where the AWS
//! files should be, churn beside a watched file, a crowded SSO token cache, garbage and
//! oversized token files.

use std::time::Duration;

use crate::hostile::{
    HUNG, bounded, ctl_bounded, figure, file_error, mkfifo, paste_bounded, profile_names,
    rss_did_not_grow, rss_kib, status_answers,
};
use crate::sandbox::{Sandbox, creds, scale};

#[test]
fn fifos_never_hang_the_daemon_doctor_or_paste() {
    // At start: both AWS files are FIFOs with no writer.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    mkfifo(&sb.credentials());
    mkfifo(&sb.config());
    sb.start();
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("not a regular file")
    );
    assert_eq!(
        file_error(&sb, "config").as_deref(),
        Some("not a regular file")
    );
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(!doctor.status.success());
    assert!(
        crate::sandbox::stdout(&doctor).contains("not a regular file"),
        "{}",
        crate::sandbox::stdout(&doctor)
    );
    let paste = paste_bounded(&sb);
    assert!(!paste.status.success());
    assert!(
        crate::sandbox::stderr(&paste).contains("not a regular file"),
        "{}",
        crate::sandbox::stderr(&paste)
    );
    assert_eq!(sb.stop(), Some(0));

    // While running: a good file replaced by a FIFO keeps the last good view, reports
    // the error, and the watcher still sees the other file and shuts down on SIGTERM.
    let mut sb = Sandbox::with_profile("TOKEN-FIFO-ONE");
    sb.start();
    let mut watch = sb.watch();
    mkfifo(&sb.credentials());
    let event = watch.wait_type("file_error");
    assert_eq!(event["message"], "not a regular file", "{event}");
    assert_eq!(profile_names(&sb), ["acme"]);
    std::fs::write(sb.config(), "[profile other]\nregion = eu-west-1\n").expect("config");
    watch.wait_for("the config still watched", |e| {
        e["type"] == "profile_added" && e["profile"] == "other"
    });
    // Binding a profile reads the files in the engine: that must not hang either.
    let add = ctl_bounded(&sb, &["accounts", "add", "o", "--profile", "other"]);
    assert!(add.status.success(), "{}", crate::sandbox::stderr(&add));
    assert!(status_answers(&sb) < HUNG);
    // (Writing into the FIFO would block this test: replace it.)
    std::fs::remove_file(sb.credentials()).expect("rm fifo");
    sb.write_credentials(&creds("acme", "TOKEN-FIFO-TWO"));
    watch.wait_type("file_recovered");
    drop(watch);
    assert_eq!(sb.stop(), Some(0));

    // A FIFO at state.json: cmdrd says so and exits instead of never becoming ready.
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.data_dir).expect("data");
    mkfifo(&sb.state_file());
    let out = bounded(sb.command("cmdrd"), "cmdrd with a FIFO state file");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        crate::sandbox::stdout(&out),
        crate::sandbox::stderr(&out)
    );
    assert!(text.contains("not a regular file"), "{text}");
    // (The sandbox reads the state file when dropped.)
    std::fs::remove_file(sb.state_file()).expect("rm fifo");
    figure("FIFO cases that returned", 6);
}

/// Every line of the daemon's log that says it read the watched files.
fn reads_logged(sb: &Sandbox) -> usize {
    sb.log_text().matches("reading the watched files").count()
}

#[test]
fn devices_are_refused_and_churn_beside_a_target_is_not_reread() {
    // `credentials -> /dev/zero`: refused at once, memory stays put.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::os::unix::fs::symlink("/dev/zero", sb.credentials()).expect("symlink");
    sb.start();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("not a regular file")
    );
    // `/dev` is watched now; closing /dev/null after writing wakes the watcher each time.
    let reads = reads_logged(&sb);
    for _ in 0..scale(200, 2_000) {
        std::fs::write("/dev/null", b"x").expect("/dev/null");
    }
    assert!(status_answers(&sb) < HUNG);
    let after = rss_kib(pid);
    rss_did_not_grow(before, after);
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(crate::sandbox::stdout(&doctor).contains("not a regular file"));
    // Oversized regular files: refused while reading, by doctor and paste as well.
    drop(sb);
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let big = std::fs::File::create(sb.credentials()).expect("create");
    big.set_len(2 << 30).expect("sparse 2 GiB");
    sb.start();
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("file is larger than 64 MiB")
    );
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(crate::sandbox::stdout(&doctor).contains("file is larger than 64 MiB"));
    let paste = paste_bounded(&sb);
    assert!(!paste.status.success());
    assert!(crate::sandbox::stderr(&paste).contains("file is larger than 64 MiB"));
    drop(sb);

    // A symlink into a busy directory: churn there is not turned into re-reads.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let busy = sb.home.join("busy");
    std::fs::create_dir_all(&busy).expect("busy");
    std::fs::write(busy.join("credentials"), creds("acme", "TOKEN-BUSY-ONE")).expect("write");
    sb.remember_secrets(&creds("acme", "TOKEN-BUSY-ONE"));
    std::os::unix::fs::symlink(busy.join("credentials"), sb.credentials()).expect("symlink");
    sb.start();
    // Kept: the clock must pass the file's change time by the daemon's 1 s timestamp grain
    // before a read counts as settled (watch/read.rs `Stamp`); no event says so.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(busy.join("nudge"), b"x").expect("nudge");
    let mut watch = sb.watch();
    let churn = scale(300, 3_000);
    let start_reads = reads_logged(&sb);
    for i in 0..churn {
        let other = busy.join(format!("other-{i}"));
        std::fs::write(&other, b"x").expect("churn");
        std::fs::remove_file(&other).expect("churn");
    }
    // A real change is still seen, through the link.
    let text = creds("acme", "TOKEN-BUSY-TWO");
    sb.remember_secrets(&text);
    std::fs::write(busy.join("credentials"), text).expect("write");
    watch.wait_type("profile_changed");
    let churn_reads = reads_logged(&sb) - start_reads;
    figure(
        "/dev/null closes, reads of the files",
        reads_logged(&sb) - reads,
    );
    figure("churn events beside the target, reads", churn_reads);
    assert!(
        churn_reads <= 3,
        "{churn_reads} reads for {churn} churn events"
    );
}

/// Profile `s` on SSO session `corp` in the config; the name of its token's cache file.
fn sso_profile(sb: &Sandbox) -> String {
    std::fs::write(
        sb.config(),
        "[profile s]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = R\n\
         [sso-session corp]\nsso_start_url = https://corp.example/start\nsso_region = eu-west-1\n",
    )
    .expect("config");
    let name = std::process::Command::new("sh")
        .args(["-c", "printf corp | sha1sum | cut -d' ' -f1"])
        .output()
        .expect("sha1sum");
    format!("{}.json", String::from_utf8_lossy(&name.stdout).trim())
}

#[test]
fn sso_tokens_the_config_names_are_read_however_crowded_the_cache() {
    let mut sb = Sandbox::new();
    let cache = sb.aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("cache");
    for i in 0..1_000 {
        std::fs::write(cache.join(format!("{i:05}.json")), "{}").expect("junk");
    }
    let name = sso_profile(&sb);
    std::fs::write(
        cache.join(&name),
        r#"{"accessToken": "SSO-ACCESS-TOKEN-VALUE", "expiresAt": "2099-01-01T00:00:00Z"}"#,
    )
    .expect("token");
    sb.start();
    let profiles = sb.json(&["profiles"]);
    let s = profiles
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "s"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(s["expiry_source"], "sso_cache", "{s}");
    assert!(!sb.log_text().contains("SSO-ACCESS-TOKEN-VALUE"));
}

/// The watcher does not parse the files: with more cache files than it reads, it looks up
/// first the token files the engine's last parse named. A config that comes to name a
/// token file past the bound, while the daemon runs, makes the engine ask for a read that
/// looks it up: the profile arrives with its token (the read without it is laid aside,
/// so no event ever shows it without), an account on it works, and a change to the token
/// file is seen.
#[test]
fn a_token_file_past_the_cache_bound_is_read_once_the_config_names_it() {
    let mut sb = Sandbox::new();
    let cache = sb.aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("cache");
    // `-` sorts before every hex digit: these fill the 1000 files read in sorted order.
    for i in 0..1_100 {
        std::fs::write(cache.join(format!("-junk-{i:05}.json")), "{}").expect("junk");
    }
    std::fs::write(sb.config(), "[profile other]\nregion = eu-west-1\n").expect("config");
    let name = {
        use sha1::Digest as _;
        format!("{}.json", hex::encode(sha1::Sha1::digest(b"corp")))
    };
    let token = |access: &str, expires: &str| {
        format!(r#"{{"accessToken": "{access}", "expiresAt": "{expires}"}}"#)
    };
    std::fs::write(
        cache.join(&name),
        token("SSO-PAST-BOUND-TOKEN-1", "2098-01-01T00:00:00Z"),
    )
    .expect("token");
    sb.start();

    let mut watch = sb.watch();
    assert_eq!(sso_profile(&sb), name);
    let added = watch.wait_for("profile_added s", |e| {
        e["type"] == "profile_added" && e["profile"] == "s"
    });
    let s = sb
        .json(&["profiles"])
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "s"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(s["expiry_source"], "sso_cache", "{s}\n{added}");
    assert!(
        s["expires_at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2098-01-01")),
        "{s}"
    );

    let out = sb.ctl(&["accounts", "add", "acme", "--profile", "s"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let acme = sb.json(&["accounts", "show", "acme"]);
    assert_eq!(acme["state"], "ok", "{acme}");
    assert!(
        acme["expires_at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2098-01-01")),
        "{acme}"
    );

    // A new sign-in's token in the same file: a token change of the account.
    std::fs::write(
        cache.join(&name),
        token("SSO-PAST-BOUND-TOKEN-2", "2099-01-01T00:00:00Z"),
    )
    .expect("token");
    let changed = watch.wait_for("token_changed acme", |e| {
        e["type"] == "token_changed" && e["account"] == "acme"
    });
    assert!(
        changed["expires_at"]
            .as_str()
            .is_some_and(|at| at.starts_with("2099-01-01")),
        "{changed}"
    );
    let text = serde_json::to_string(&watch.seen).expect("events");
    assert!(!text.contains("SSO-PAST-BOUND-TOKEN"));
    assert!(!sb.log_text().contains("SSO-PAST-BOUND-TOKEN"));
}

/// A token file the config names that is garbage, or larger than any real token, is a
/// `file_error` naming that file (and `status` says so), never silence; a good one again
/// is `file_recovered`. The file's contents never reach the message.
#[test]
fn a_bad_or_oversized_sso_token_file_is_a_file_error() {
    let mut sb = Sandbox::new();
    let cache = sb.aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("cache");
    let name = sso_profile(&sb);
    let token = cache.join(&name);
    std::fs::write(&token, "GARBAGE-SSO-CONTENT").expect("garbage");
    sb.start();
    let status = sb.json(&["status"]);
    let sso = status["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "sso_cache"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(sso["health"], "error", "{sso}");
    assert!(
        sso["error"]
            .as_str()
            .is_some_and(|e| e.contains(&name) && e.contains("not valid JSON")),
        "{sso}"
    );

    let mut watch = sb.watch();
    std::fs::write(
        &token,
        r#"{"accessToken": "SSO-TOKEN-VALUE", "expiresAt": "2099-01-01T00:00:00Z"}"#,
    )
    .expect("good");
    let recovered = watch.wait_type("file_recovered");
    assert!(
        recovered["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(&name)),
        "{recovered}"
    );

    // Larger than any token: refused while reading, reported with its path.
    let mut big = vec![b' '; 2 << 20];
    big[0] = b'{';
    std::fs::write(&token, &big).expect("big");
    let error = watch.wait_type("file_error");
    assert!(
        error["path"].as_str().is_some_and(|p| p.ends_with(&name)),
        "{error}"
    );
    let text = serde_json::to_string(&watch.seen).expect("events");
    assert!(!text.contains("GARBAGE-SSO-CONTENT") && !text.contains("SSO-TOKEN-VALUE"));
    assert!(!sb.log_text().contains("GARBAGE-SSO-CONTENT"));
}
