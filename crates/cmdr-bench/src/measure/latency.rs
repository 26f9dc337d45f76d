//! Measure 1: write → subscriber latency per save pattern, against a raw `notify` watcher
//! on the same directory.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::files;
use crate::report::{Row, Section, Verdict, fmt_ms, ms, percentile};

use super::{Opts, Save, next_token_changed, raw_watcher, save, small_sandbox};

/// 1. Write → subscriber latency, against a raw watcher on the same directory.
pub async fn latency(opts: &Opts) -> anyhow::Result<Section> {
    let n = if opts.quick { 20 } else { 200 };
    let mut sb = small_sandbox(opts, "")?;
    sb.start("warn").await?;
    sb.add_account()?;
    let mut sub = sb.client("bench-latency").await?;
    sub.subscribe().await?;
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let credentials = sb.credentials();
    let _watcher = raw_watcher(&sb.aws, &credentials, move |at| {
        let _ = raw_tx.send(at);
    })?;
    let mut section = Section {
        title: format!(
            "1. Write → subscriber latency ({n} writes per save pattern, 10 profiles, debounce {} ms)",
            opts.debounce_ms
        ),
        ..Section::default()
    };
    for how in [Save::Rename, Save::InPlace] {
        let (mut raw, mut cmdr) = (Vec::new(), Vec::new());
        for i in 0..n {
            while raw_rx.try_recv().is_ok() {}
            let text = files::credentials(10, &files::token(&format!("{}{i}", how.label())));
            let written = Instant::now();
            save(&credentials, &text, how)?;
            let got = next_token_changed(&mut sub, Duration::from_secs(10)).await?;
            let first_raw = tokio::time::timeout(Duration::from_secs(5), raw_rx.recv())
                .await
                .context("the raw watcher saw nothing")?
                .context("raw watcher gone")?;
            raw.push(ms(first_raw.saturating_duration_since(written)));
            cmdr.push(ms(got.saturating_duration_since(written)));
            // One save at a time, as a person makes them: the next comes after the debounce
            // (a rename is read at once only once per debounce period; section 6 is the
            // storm).
            tokio::time::sleep(Duration::from_secs_f64((opts.debounce_ms + 10.0) / 1e3)).await;
        }
        for p in [50.0, 99.0] {
            let (c, r) = (percentile(&cmdr, p), percentile(&raw, p));
            let limit = r + opts.debounce_ms + 10.0;
            let is_p99 = p > 50.0;
            section.rows.push(Row {
                measure: format!("{} → `token_changed`, p{p:.0}", how.label()),
                cmdr: fmt_ms(c),
                baseline: format!("{} (raw notify)", fmt_ms(r)),
                ratio: format!("+{}", fmt_ms(c - r)),
                target: if is_p99 {
                    format!("≤ raw + {} ms", opts.debounce_ms + 10.0)
                } else {
                    "—".to_owned()
                },
                verdict: match (is_p99, c <= limit) {
                    (false, _) => Verdict::Info,
                    (true, true) => Verdict::Met,
                    (true, false) => Verdict::Missed(format!("by {}", fmt_ms(c - limit))),
                },
            });
        }
    }
    section.notes.push(format!(
        "Saves are {} ms apart, one at a time: a rename onto the file is read after 3 ms, at \
         most once per debounce period; an in-place write waits out the debounce.",
        opts.debounce_ms + 10.0
    ));
    sb.stop();
    Ok(section)
}
