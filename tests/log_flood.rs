//! The log stays bounded (issue 23, item 8): 1,000 accounts and a credentials file
//! rewritten every 10 ms made 179 MiB of log in a minute. Repeated lines are now coalesced
//! into a count per interval and the bytes per interval capped (`crates/cmdrd/src/log.rs`).
//! `CMDR_LONG_TESTS=1` floods for a minute instead of 5 s.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::sandbox::Sandbox;

const ACCOUNTS: usize = 1000;
/// `cmdrd::log::WINDOW` and `BYTES_PER_WINDOW`.
const WINDOW: Duration = Duration::from_secs(10);
const BYTES_PER_WINDOW: usize = 64 * 1024;
/// Room for one summary line per window.
const SUMMARY_ROOM: usize = 4096;

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("figure: {name}: {value}");
}

fn credentials(round: usize) -> String {
    let mut text = String::new();
    for p in 0..ACCOUNTS {
        text.push_str(&format!(
            "[p{p:04}]\naws_access_key_id = ASIAFLOODEXAMPLE{p:04}\naws_secret_access_key = wJalrXUtnFEMI-SECRET-p{p:04}\naws_session_token = TOKEN-{round}-{p:04}\n"
        ));
    }
    text
}

#[test]
fn a_file_rewritten_every_10_ms_with_1000_accounts_keeps_the_log_bounded() {
    let flood = if std::env::var_os("CMDR_LONG_TESTS").is_some() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    };
    let mut sb = Sandbox::new();
    // What a service runs with: the default level.
    sb.set_env("RUST_LOG", "info");
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&credentials(0));
    let stored: Vec<_> = (0..ACCOUNTS)
        .map(|a| {
            json!({
                "name": format!("a{a:04}"),
                "profile": format!("p{a:04}"),
                "region": null,
                "target": {"kind": "aws"},
                "on_change": "ask",
                "accepted_fingerprint": null,
                "accepted_at": null,
            })
        })
        .collect();
    std::fs::create_dir_all(sb.state_file().parent().expect("data")).expect("data dir");
    let state = json!({"version": 1, "accounts": stored, "seen": {}});
    std::fs::write(sb.state_file(), state.to_string()).expect("state");
    sb.start();
    let before = sb.log_text().len();

    let start = Instant::now();
    let tmp = sb.aws.join(".credentials.tmp");
    let mut round = 0;
    while start.elapsed() < flood {
        round += 1;
        let text = credentials(round);
        // Alternately in place and by rename, 10 ms apart (kept: the flood's pace is the
        // load under test).
        if round % 2 == 0 {
            std::fs::write(sb.credentials(), &text).expect("write");
        } else {
            std::fs::write(&tmp, &text).expect("write");
            std::fs::rename(&tmp, sb.credentials()).expect("rename");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    sb.remember_secrets(&credentials(round));
    // The positive marker: the last round reached the view.
    let last = cmdr_core::profile::keys_fingerprint(
        "ASIAFLOODEXAMPLE0000",
        "wJalrXUtnFEMI-SECRET-p0000",
        Some(&format!("TOKEN-{round}-0000")),
    );
    sb.wait_until("the last round in the view", || {
        sb.json(&["accounts", "show", "a0000"])["fingerprint"] == json!(last)
    });
    let flood_end = start.elapsed();
    // And the summary of what was left out, once its window ends.
    sb.wait_until("the summary of coalesced lines", || {
        sb.log_text().contains("repeated log lines left out")
    });
    let log = sb.log_text();
    let written = &log[before..];
    let windows = (flood_end.as_secs_f64() / WINDOW.as_secs_f64()).ceil() as usize + 1;
    let bound = windows * (BYTES_PER_WINDOW + SUMMARY_ROOM);
    let left_out: u64 = written
        .lines()
        .filter(|l| l.contains("repeated log lines left out"))
        .filter_map(|l| Some(l.split_once(" s: ")?.1.split("; ").next()?.to_owned()))
        .flat_map(|l| l.split(", ").map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|part| part.split(" × ").next()?.trim().parse::<u64>().ok())
        .sum();
    figure(
        "rounds written",
        format!("{round} in {:.1} s", took.as_secs_f64()),
    );
    figure("log bytes during the flood", written.len());
    figure("log lines during the flood", written.lines().count());
    figure("lines left out (counted in summaries)", left_out);
    figure(
        "log bytes per minute (extrapolated)",
        (written.len() as f64 * 60.0 / flood_end.as_secs_f64()) as u64,
    );
    if let Some(summary) = written
        .lines()
        .find(|l| l.contains("repeated log lines left out"))
    {
        figure("first summary", summary);
    }
    assert!(left_out > 0, "nothing was coalesced:\n{}", sb.log_tail());
    assert!(
        written.len() <= bound,
        "{} bytes of log in {:.1} s (bound {bound})",
        written.len(),
        flood_end.as_secs_f64()
    );
}

/// `cmdrd --log-file FILE` (what the launchd agent runs): the log goes to FILE, not stderr.
#[test]
fn log_file_takes_the_log() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    let file = sb.root.join("own.log");
    sb.set_env("RUST_LOG", "info");
    sb.daemon_wrapper = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!("exec \"$0\" --log-file '{}'", file.display()),
    ];
    sb.start();
    sb.add_account("acme", &[]);
    sb.wait_until("the account_added line in the log file", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("account_added"))
    });
    assert!(
        !sb.log_text().contains("account_added"),
        "{}",
        sb.log_tail()
    );
    assert_eq!(crate::sandbox::mode(&file), 0o600);
}
