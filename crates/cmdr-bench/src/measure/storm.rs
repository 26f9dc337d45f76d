//! Measure 6: a storm of writes in a short time: parses, events, the final view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cmdr_proto::{Request, Response};

use crate::daemon::ProcStats;
use crate::files;
use crate::report::{Row, Section, Verdict, fmt_mib, fmt_ms, ms, ratio};

use super::{Opts, Save, next_token_changed, raw_watcher, save, small_sandbox};

/// 6. Storm: many writes in a short time.
pub async fn storm(opts: &Opts) -> anyhow::Result<Section> {
    let (writes, secs) = if opts.quick {
        (1_000u32, 1u32)
    } else {
        (10_000, 10)
    };
    let mut sb = small_sandbox(opts, "")?;
    sb.start("warn,cmdrd::engine=debug").await?;
    sb.add_account()?;
    let events = Arc::new(AtomicU64::new(0));
    let mut sub = sb.client("bench-storm").await?;
    sub.subscribe().await?;
    let counter = events.clone();
    let listener = tokio::spawn(async move {
        while next_token_changed(&mut sub, Duration::from_secs(3600))
            .await
            .is_ok()
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let raw_events = Arc::new(AtomicU64::new(0));
    let raw_counter = raw_events.clone();
    let _watcher = raw_watcher(&sb.aws, &sb.credentials(), move |_| {
        raw_counter.fetch_add(1, Ordering::Relaxed);
    })?;
    let parses_before = count_parses(&sb.log_text());
    let pid = sb.pid()?;
    let before = ProcStats::read(pid)?;
    let path = sb.credentials();
    let period = Duration::from_secs(u64::from(secs)) / writes;
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, String)> {
        let start = Instant::now();
        let mut last = String::new();
        for i in 0..writes {
            let due = start + period * i;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            last = files::credentials(10, &files::token(&format!("storm{i}")));
            let how = if i % 2 == 0 {
                Save::InPlace
            } else {
                Save::Rename
            };
            save(&path, &last, how)?;
        }
        Ok((start.elapsed(), last))
    });
    let (took, last) = writer.await.context("writer")??;
    let written = Instant::now();
    // The final state must equal the file.
    let expected = cmdr_core::parse_view(cmdr_core::Inputs {
        config: files::config(10).as_bytes(),
        credentials: last.as_bytes(),
        sso_cache: &BTreeMap::new(),
    })
    .map_err(|e| anyhow::anyhow!("final file: {e:?}"))?
    .get("acme")
    .and_then(|p| p.fingerprint.clone());
    let mut client = sb.client("bench-storm-check").await?;
    let mut settled = None;
    while written.elapsed() < Duration::from_secs(15) {
        if let Response::Profiles(profiles) = client.request(Request::Profiles).await? {
            let got = profiles
                .iter()
                .find(|p| p.name == "acme")
                .and_then(|p| p.fingerprint.clone());
            if got.is_some() && got == expected {
                settled = Some(written.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let a pending retry or debounce finish before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = ProcStats::read(pid)?;
    let parses = count_parses(&sb.log_text()).saturating_sub(parses_before);
    let raw = raw_events.load(Ordering::Relaxed);
    sb.stop();
    listener.abort();
    let cpu = after.cpu_secs - before.cpu_secs;
    Ok(Section {
        title: format!(
            "6. Storm ({writes} writes in {secs} s, alternating in-place and rename saves, 10 profiles)"
        ),
        rows: vec![
            Row::info(
                "writes done",
                format!("{writes} in {:.2} s", took.as_secs_f64()),
            ),
            Row {
                measure: "re-parses".to_owned(),
                cmdr: parses.to_string(),
                baseline: format!("{raw} events (raw notify)"),
                ratio: format!(
                    "1 parse per {} events",
                    ratio(raw as f64, parses.max(1) as f64)
                ),
                target: "—".to_owned(),
                verdict: Verdict::Info,
            },
            Row::info(
                "`token_changed` events delivered",
                events.load(Ordering::Relaxed).to_string(),
            ),
            Row::info("daemon CPU during the storm", format!("{cpu:.2} s")),
            Row::info("daemon peak RSS (VmHWM)", fmt_mib(after.hwm_kib)),
            Row::check(
                "final state equals the file",
                match settled {
                    Some(t) => format!("yes, {} after the last write", fmt_ms(ms(t))),
                    None => "no (after 15 s)".to_owned(),
                },
                "equal",
                settled
                    .is_none()
                    .then(|| "state differs from the file".to_owned()),
            ),
        ],
        notes: Vec::new(),
    })
}

fn count_parses(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("parsing snapshot"))
        .count()
}
