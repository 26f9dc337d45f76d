//! Measure 10: the daemon's log under a flood of changes (issue 23: 1,000 accounts and a
//! file rewritten every 10 ms once wrote 179 MiB of log a minute). The baseline is what the
//! same run would have written line for line: the lines written plus those the summaries
//! count as left out.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use crate::daemon::Sandbox;
use crate::files;
use crate::report::{Row, Section, Verdict, ratio};

use super::{Opts, Save, save};

const ACCOUNTS: usize = 1000;
/// cmdrd's coalescing interval and byte cap per interval (`crates/cmdrd/src/log.rs`), and
/// room for its summary line.
const WINDOW: Duration = Duration::from_secs(10);
const CAP: usize = 64 * 1024 + 4096;

/// Every profile's token changes in every round.
fn credentials(round: usize) -> String {
    let mut out = String::with_capacity(ACCOUNTS * 820);
    for p in 0..ACCOUNTS {
        let _ = write!(
            out,
            "[p{p:04}]\naws_access_key_id = ASIAIOSFODNN7EXAMPLE\n\
             aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
             aws_session_token = {}\n\n",
            files::token(&format!("{p}-{round}"))
        );
    }
    out
}

/// 10. The log while a file with 1,000 bound profiles is rewritten every 10 ms.
pub async fn log_flood(opts: &Opts) -> anyhow::Result<Section> {
    let flood = Duration::from_secs(if opts.quick { 5 } else { 60 });
    let mut sb = Sandbox::new(&opts.bins, "", &credentials(0), "")?;
    let accounts: Vec<_> = (0..ACCOUNTS)
        .map(|a| {
            json!({"name": format!("a{a:04}"), "profile": format!("p{a:04}"), "region": null,
                   "target": {"kind": "aws"}, "on_change": "ask",
                   "accepted_fingerprint": null, "accepted_at": null})
        })
        .collect();
    let state = sb.state_file();
    std::fs::create_dir_all(state.parent().context("data dir")?).context("data dir")?;
    std::fs::write(
        &state,
        json!({"version": 1, "accounts": accounts, "seen": {}}).to_string(),
    )
    .context("state file")?;
    // What a service runs with.
    sb.start("info").await?;
    let before = sb.log_text().len();
    let path = sb.credentials();
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let start = Instant::now();
        let mut round = 0;
        while start.elapsed() < flood {
            round += 1;
            let how = if round % 2 == 0 {
                Save::InPlace
            } else {
                Save::Rename
            };
            save(&path, &credentials(round), how)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(round)
    });
    let rounds = writer.await.context("writer")??;
    // The summary of the last window comes when it ends.
    tokio::time::sleep(WINDOW + Duration::from_secs(1)).await;
    let log = sb.log_text();
    sb.stop();
    let written = &log[before.min(log.len())..];
    let lines = written.lines().count();
    let left_out: u64 = written
        .lines()
        .filter_map(|l| l.split_once("repeated log lines left out in the last 10 s: "))
        .filter_map(|(_, rest)| rest.split("; ").next())
        .flat_map(|kinds| kinds.split(", "))
        .filter_map(|kind| kind.split(" × ").next()?.trim().parse::<u64>().ok())
        .sum();
    let per_minute = written.len() as f64 * 60.0 / flood.as_secs_f64();
    let mean_line = written.len() as f64 / lines.max(1) as f64;
    let uncoalesced = (lines as f64 + left_out as f64) * mean_line * 60.0 / flood.as_secs_f64();
    let bound = CAP as f64 * 60.0 / WINDOW.as_secs_f64();
    let kib = |b: f64| format!("{:.1} KiB", b / 1024.0);
    Ok(Section {
        title: format!(
            "10. Log under a flood ({ACCOUNTS} bound profiles, the credentials file rewritten every 10 ms for {} s, RUST_LOG=info)",
            flood.as_secs()
        ),
        rows: vec![
            Row::info(
                "rounds written",
                format!("{rounds} in {} s", flood.as_secs()),
            ),
            Row {
                measure: "log bytes per minute".to_owned(),
                cmdr: kib(per_minute),
                baseline: format!(
                    "{} (every line written: {} lines + {left_out} counted, × {mean_line:.0} B)",
                    kib(uncoalesced),
                    lines
                ),
                ratio: format!("{} smaller", ratio(uncoalesced, per_minute.max(1.0))),
                target: format!("≤ {} (6 × (64 KiB cap + summary))", kib(bound)),
                verdict: if per_minute <= bound {
                    Verdict::Met
                } else {
                    Verdict::Missed(format!("by {}", kib(per_minute - bound)))
                },
            },
            Row::info("log lines per minute", format!("{:.0}", lines as f64 * 60.0 / flood.as_secs_f64())),
        ],
        notes: vec![
            "The baseline multiplies the lines the summaries count as left out by the mean length of the \
             lines written; before coalescing, the same flood wrote 179 MiB in a minute (issue 23)."
                .to_owned(),
        ],
    })
}
