//! A file rewritten in place is not a deletion (issue 22, item 3): a read that finds a
//! file empty or shorter while a writer is busy is held back, keys changed in one half are
//! not offered, and a real emptying or deletion still arrives.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::endpoint::{endpoint, get};
use crate::sandbox::{Sandbox, Watch, creds, stderr};

const KEY: &str = "ASIAOLDKEYEXAMPLE0001";
const SECRET: &str = "wJalrXUtnFEMI-SECRET-old-0001";
const TOKEN: &str = "TOKEN-OLD-0001-session";

/// A session profile with its own key, secret and token.
fn session(profile: &str, key: &str, secret: &str, token: &str) -> String {
    format!(
        "[{profile}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\naws_session_token = {token}\n"
    )
}

fn fingerprint(key: &str, secret: &str, token: &str) -> String {
    cmdr_core::profile::keys_fingerprint(key, secret, Some(token))
}

/// A daemon with account `acme` (ask) on `text`, and a subscriber.
fn start(text: &str) -> (Sandbox, Watch) {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_credentials(text);
    sb.start();
    sb.add_account("acme", &[]);
    let watch = sb.watch();
    (sb, watch)
}

/// Events that would mean a profile was taken for gone.
fn assert_nothing_went_missing(watch: &Watch) {
    let gone: Vec<_> = watch
        .seen
        .iter()
        .filter(|e| e["type"] == "profile_removed" || e["type"] == "file_error")
        .collect();
    assert!(gone.is_empty(), "{gone:#?}");
}

/// Asks the endpoint for `acme` and the account's state until `stop`; every answer that is
/// not 200 / a state other than `missing` is returned, with how many probes ran.
fn probe(sb: &Sandbox, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    let (base, token) = endpoint(sb, "acme");
    let url = format!("{base}acme");
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let (mut probes, mut bad) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let (status, body) = get(&url, Some(&token));
            probes += 1;
            if status != 200 {
                bad.push(format!("{status} {body}"));
            }
        }
        (probes, bad)
    })
}

/// Python truncates the file, then writes the new contents 0.3 s later on the same handle.
#[test]
fn python_truncate_then_write_is_not_a_deletion() {
    let (sb, mut watch) = start(&session("acme", KEY, SECRET, TOKEN));
    let (key, secret, token) = (
        "ASIANEWKEYEXAMPLE0002",
        "wJalrXUtnFEMI-SECRET-new-0002",
        "TOKEN-NEW-0002-sess",
    );
    let new = session("acme", key, secret, token);
    sb.remember_secrets(&new);
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(&sb, &stop);
    let script = "import sys, time\n\
                  with open(sys.argv[1], 'r+') as f:\n\
                  \x20   f.truncate(0); f.flush()\n\
                  \x20   time.sleep(0.3)\n\
                  \x20   f.write(sys.stdin.read()); f.flush()\n";
    let mut child = sb
        .external("python3")
        .args(["-c", script])
        .arg(sb.credentials())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(new.as_bytes())
        .expect("feed python");
    assert!(child.wait().expect("python").success());
    // The positive marker: the new token, whole.
    let changed = watch.wait_type("token_changed");
    stop.store(true, Ordering::SeqCst);
    assert_eq!(changed["new_fingerprint"], fingerprint(key, secret, token));
    let (probes, bad) = prober.join().expect("prober");
    assert!(probes > 0, "the endpoint was never asked");
    assert!(
        bad.is_empty(),
        "{} of {probes} answers were refusals: {bad:?}",
        bad.len()
    );
    assert_nothing_went_missing(&watch);
    assert_eq!(sb.account("acme")["state"], "changed");
}

/// Waits until the daemon has held keys changed in one half `n` times in all.
fn wait_held(sb: &Sandbox, n: usize) {
    sb.wait_until("a half-changed pair to be held", || {
        sb.log_text()
            .matches("keys changed in one half only")
            .count()
            >= n
    });
}

/// `aws configure set` run three times: key, secret, token. The two files in between mix
/// new keys with old ones; neither is offered, and `accept` between them changes nothing.
#[test]
fn aws_configure_set_three_times_offers_only_the_whole_pair() {
    if !cmdr_testkit::skip::need("aws", "pip install awscli; scripts/test does") {
        return;
    }
    let (sb, mut watch) = start(&session("acme", KEY, SECRET, TOKEN));
    let accepted = sb.account("acme")["accepted_fingerprint"].clone();
    assert_eq!(accepted, fingerprint(KEY, SECRET, TOKEN));
    let (key, secret, token) = (
        "ASIANEWKEYEXAMPLE0003",
        "wJalrXUtnFEMI-SECRET-new-0003",
        "TOKEN-NEW-0003-sess",
    );
    sb.remember_secrets(&session("acme", key, secret, token));
    let set = |name: &str, value: &str| {
        let out = sb
            .external("aws")
            .args(["configure", "set", name, value, "--profile", "acme"])
            .output()
            .expect("aws");
        assert!(out.status.success(), "{}", stderr(&out));
    };
    for (step, (name, value)) in [
        ("aws_access_key_id", key),
        ("aws_secret_access_key", secret),
    ]
    .into_iter()
    .enumerate()
    {
        set(name, value);
        wait_held(&sb, step + 1);
        let accept = sb.ctl(&["accept", "acme"]);
        let account = sb.account("acme");
        assert_eq!(
            account["accepted_fingerprint"], accepted,
            "after {name}: {accept:?}"
        );
        assert_eq!(account["fingerprint"], accepted, "after {name}");
        assert_eq!(account["state"], "ok", "after {name}");
    }
    set("aws_session_token", token);
    let whole = fingerprint(key, secret, token);
    let changed = watch.wait_type("token_changed");
    assert_eq!(changed["new_fingerprint"], whole);
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    assert_eq!(sb.account("acme")["accepted_fingerprint"], whole);
    let offered: Vec<_> = watch
        .seen
        .iter()
        .filter(|e| e["type"] == "token_changed")
        .collect();
    assert_eq!(offered.len(), 1, "{offered:#?}");
    assert_nothing_went_missing(&watch);
}

/// Keys that stay changed in one half are what the user meant: taken after the settle time.
#[test]
fn keys_changed_in_one_half_are_taken_once_they_settle() {
    let (sb, mut watch) = start(&session("acme", KEY, SECRET, TOKEN));
    let key = "ASIANEWKEYEXAMPLE0004";
    sb.write_credentials(&session("acme", key, SECRET, TOKEN));
    wait_held(&sb, 1);
    assert_eq!(sb.account("acme")["state"], "ok");
    let changed = watch.wait_type("token_changed");
    assert_eq!(changed["new_fingerprint"], fingerprint(key, SECRET, TOKEN));
    assert!(
        sb.log_text().contains("keys changed in one half stayed so"),
        "{}",
        sb.log_tail()
    );
}

/// A file really cut short, then really emptied, in place: each is believed after the
/// settle time.
#[test]
fn a_file_really_cut_or_emptied_in_place_arrives() {
    let both = format!(
        "{}{}",
        creds("acme", "TOKEN-ONE"),
        creds("other", "TOKEN-OTHER")
    );
    let (sb, mut watch) = start(&both);
    // `other` goes: the file is shorter, written in place.
    sb.write_credentials(&creds("acme", "TOKEN-ONE"));
    let removed = watch.wait_type("profile_removed");
    assert_eq!(removed["profile"], "other");
    assert_eq!(sb.account("acme")["state"], "ok");
    // Emptied in place: `: > credentials`.
    std::fs::File::create(sb.credentials()).expect("truncate");
    let removed = watch.wait_type("profile_removed");
    assert_eq!(removed["profile"], "acme");
    assert_eq!(sb.account("acme")["state"], "missing");
    assert!(
        sb.log_text().contains("maybe half-written"),
        "the shorter reads were not held: {}",
        sb.log_tail()
    );
}
