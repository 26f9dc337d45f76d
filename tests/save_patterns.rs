//! Every save pattern from PRODUCT.md "What it must do" 1 reaches subscribers.

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, Watch, creds};

/// Starts a daemon with account `acme` (ask) and a subscriber.
fn setup() -> (Sandbox, Watch) {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let watch = sb.watch();
    (sb, watch)
}

fn expect_token_change(sb: &Sandbox, watch: &mut Watch, token: &str) {
    let event = watch.wait_type("token_changed");
    assert_eq!(event["account"], "acme");
    assert_eq!(event["profile"], "acme");
    assert_ne!(event["old_fingerprint"], event["new_fingerprint"]);
    let account = sb.account("acme");
    assert_eq!(account["state"], "changed", "{account}");
    assert_eq!(account["fingerprint"], event["new_fingerprint"]);
    let _ = token;
}

#[test]
fn in_place_write() {
    let (sb, mut watch) = setup();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(sb.credentials())
        .expect("open");
    // Same length, new token, no truncation: an in-place overwrite.
    file.write_all(creds("acme", "TOKEN-TWO").as_bytes())
        .expect("write");
    drop(file);
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");
}

#[test]
fn truncate_then_rewrite_in_two_steps() {
    let (sb, mut watch) = setup();
    let mut file = std::fs::File::create(sb.credentials()).expect("truncate");
    file.flush().expect("flush");
    // Kept: the writer's pause between truncate and write is what is under test.
    std::thread::sleep(Duration::from_millis(10));
    file.write_all(creds("acme", "TOKEN-TWO").as_bytes())
        .expect("write");
    drop(file);
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");
    // The empty moment must not have been published as "profile removed".
    assert!(
        !watch.seen.iter().any(|e| e["type"] == "profile_removed"),
        "{:?}",
        watch.seen
    );
}

#[test]
fn rename_save_like_vim() {
    let (sb, mut watch) = setup();
    let tmp = sb.aws.join(".credentials.swp");
    std::fs::write(&tmp, creds("acme", "TOKEN-TWO")).expect("write");
    std::fs::rename(&tmp, sb.credentials()).expect("rename");
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");
    // The watch survives the rename: a second save is seen too.
    let tmp = sb.aws.join("credentials~");
    std::fs::write(&tmp, creds("acme", "TOKEN-THREE")).expect("write");
    std::fs::rename(&tmp, sb.credentials()).expect("rename");
    expect_token_change(&sb, &mut watch, "TOKEN-THREE");
}

/// A rename puts a complete file in place, so it is read without waiting out the debounce
/// (which is for writers that truncate first); an in-place write still waits for it.
#[test]
fn a_rename_save_does_not_wait_for_the_debounce() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\ndebounce_ms = 10000\n");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    let tmp = sb.aws.join(".credentials.swp");
    let saved = Instant::now();
    std::fs::write(&tmp, creds("acme", "TOKEN-TWO")).expect("write");
    std::fs::rename(&tmp, sb.credentials()).expect("rename");
    watch.wait_type("token_changed");
    let took = saved.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a rename save waited for the debounce: {took:?}"
    );

    // The in-place write's change arrives, and not before the 10 s debounce has passed
    // since the write (the daemon's timer starts at its event, after the write).
    let written = Instant::now();
    std::fs::write(sb.credentials(), creds("acme", "TOKEN-THREE")).expect("write");
    watch.wait_for_within("the in-place write", Duration::from_secs(30), |e| {
        e["type"] == "token_changed"
    });
    let took = written.elapsed();
    assert!(
        took >= Duration::from_millis(9_900),
        "an in-place write was read before its debounce: after {took:?}"
    );
}

#[test]
fn delete_and_recreate() {
    let (sb, mut watch) = setup();
    std::fs::remove_file(sb.credentials()).expect("rm");
    watch.wait_type("profile_removed");
    assert_eq!(sb.account("acme")["state"], "missing");
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");
}

#[test]
fn symlinked_file_target_edited_and_link_swapped() {
    let mut sb = Sandbox::new();
    let dotfiles = sb.home.join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("dotfiles");
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(dotfiles.join("credentials"), creds("acme", "TOKEN-ONE")).expect("write");
    std::os::unix::fs::symlink(dotfiles.join("credentials"), sb.credentials()).expect("link");
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();

    // chezmoi/stow-style: the target changes, the link does not.
    let tmp = dotfiles.join(".credentials.new");
    std::fs::write(&tmp, creds("acme", "TOKEN-TWO")).expect("write");
    std::fs::rename(&tmp, dotfiles.join("credentials")).expect("rename");
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");
    let accepted = sb.ctl(&["accept", "acme"]);
    assert!(accepted.status.success());

    // The link itself is swapped to a file elsewhere.
    let other = sb.home.join("other");
    std::fs::create_dir_all(&other).expect("other");
    std::fs::write(other.join("credentials"), creds("acme", "TOKEN-THREE")).expect("write");
    let link_tmp = sb.aws.join("credentials.link");
    std::os::unix::fs::symlink(other.join("credentials"), &link_tmp).expect("link");
    std::fs::rename(&link_tmp, sb.credentials()).expect("swap");
    expect_token_change(&sb, &mut watch, "TOKEN-THREE");

    // And the new target is watched from now on.
    std::fs::write(other.join("credentials"), creds("acme", "TOKEN-FOUR")).expect("write");
    expect_token_change(&sb, &mut watch, "TOKEN-FOUR");
}

#[test]
fn aws_dir_created_after_start_then_removed_and_recreated() {
    let mut sb = Sandbox::new();
    sb.start();
    let mut watch = sb.watch();
    std::fs::create_dir_all(&sb.aws).expect("mkdir");
    sb.write_credentials(&creds("acme", "TOKEN-ONE"));
    let added = watch.wait_type("profile_added");
    assert_eq!(added["profile"], "acme");
    sb.add_account("acme", &[]);

    std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
    watch.wait_type("profile_removed");
    assert_eq!(sb.account("acme")["state"], "missing");

    std::fs::create_dir_all(&sb.aws).expect("mkdir");
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    expect_token_change(&sb, &mut watch, "TOKEN-TWO");

    // Same token as accepted coming back is not a change.
    std::fs::remove_dir_all(&sb.aws).expect("rm -rf");
    watch.wait_type("profile_removed");
    std::fs::create_dir_all(&sb.aws).expect("mkdir");
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    watch.wait_type("profile_added");
    assert_eq!(sb.account("acme")["state"], "changed");
}

#[test]
fn burst_of_writes_is_coalesced_and_ends_right() {
    // What a fresh daemon reads from the final content.
    let expected = {
        let mut fresh = Sandbox::with_profile("TOKEN-BURST-299");
        fresh.start();
        fresh.json(&["profiles"])[0]["fingerprint"].clone()
    };
    let (sb, mut watch) = setup();
    for i in 0..300 {
        sb.write_credentials(&creds("acme", &format!("TOKEN-BURST-{i}")));
    }
    let last = watch.wait_for("final token", |e| {
        e["type"] == "token_changed" && e["new_fingerprint"] == expected
    });
    assert_eq!(last["account"], "acme");
    assert_eq!(sb.json(&["profiles"])[0]["fingerprint"], expected);
    // Nothing else arrives after the final state: a config change read after the burst
    // (the same watcher, in order) is the marker.
    std::fs::write(sb.config(), "[profile acme]\nregion = eu-central-1\n").expect("write");
    let late = watch.until("the marker's profile_changed", |e| {
        e["type"] == "profile_changed"
    });
    assert!(
        late.iter().all(|e| e["type"] != "token_changed"),
        "{late:?}"
    );
    let changes = watch
        .seen
        .iter()
        .filter(|e| e["type"] == "token_changed")
        .count();
    assert!(
        changes < 300,
        "writes were not coalesced: {changes} token_changed events"
    );
}

#[test]
fn config_file_changes_are_seen_too() {
    let (sb, mut watch) = setup();
    std::fs::write(sb.config(), "[profile acme]\nregion = eu-central-1\n").expect("write");
    let event = watch.wait_type("profile_changed");
    assert_eq!(event["profile"], "acme");
    let profiles = sb.json(&["profiles"]);
    assert_eq!(profiles[0]["region"], "eu-central-1");
    assert_eq!(
        profiles[0]["sources"],
        serde_json::json!(["config", "credentials"])
    );
    // A region change is not a token change.
    assert_eq!(sb.account("acme")["state"], "ok");
}
