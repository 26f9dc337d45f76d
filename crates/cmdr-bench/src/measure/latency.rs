//! Measure 1: write → subscriber latency per save pattern, against a raw `notify` watcher
//! on the same directory.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::files;
use crate::report::{Row, Section, Verdict, fmt_ms, median, ms, percentile};

use super::{Opts, Save, next_event, next_token_changed, raw_watcher, save, small_sandbox};

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
        // A rename puts a whole file in place: read at once. An in-place write waits out
        // the debounce (it may be half-written).
        let allowance = match how {
            Save::Rename => 10.0,
            Save::InPlace => opts.debounce_ms + 10.0,
        };
        for p in [50.0, 99.0] {
            let (c, r) = (percentile(&cmdr, p), percentile(&raw, p));
            let limit = r + allowance;
            let is_p99 = p > 50.0;
            section.rows.push(Row {
                measure: format!("{} → `token_changed`, p{p:.0}", how.label()),
                cmdr: fmt_ms(c),
                baseline: format!("{} (raw notify)", fmt_ms(r)),
                ratio: format!("+{}", fmt_ms(c - r)),
                target: if is_p99 {
                    format!("≤ raw + {allowance} ms")
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
    // An in-place write that leaves the file shorter (a profile deleted with an editor that
    // writes in place) may be a writer's half-written state: it is read again once the
    // writer has been quiet for 1 s before it is believed.
    let rounds = if opts.quick { 3 } else { 20 };
    let (mut raw, mut cmdr) = (Vec::new(), Vec::new());
    let whole = files::credentials(10, &files::token("shorter"));
    let cut = whole
        .rfind("\n[p")
        .map_or(whole.as_str(), |at| &whole[..=at]);
    let pause = Duration::from_secs_f64((opts.debounce_ms + 10.0) / 1e3);
    save(&credentials, &whole, Save::Rename)?;
    next_token_changed(&mut sub, Duration::from_secs(10)).await?;
    for round in 0..rounds {
        if round > 0 {
            save(&credentials, &whole, Save::Rename)?;
            next_event(&mut sub, Duration::from_secs(10), "profile_changed").await?;
        }
        tokio::time::sleep(pause).await;
        while raw_rx.try_recv().is_ok() {}
        let written = Instant::now();
        save(&credentials, cut, Save::InPlace)?;
        let got = next_event(&mut sub, Duration::from_secs(10), "profile_changed").await?;
        let first_raw = tokio::time::timeout(Duration::from_secs(5), raw_rx.recv())
            .await
            .context("the raw watcher saw nothing")?
            .context("raw watcher gone")?;
        raw.push(ms(first_raw.saturating_duration_since(written)));
        cmdr.push(ms(got.saturating_duration_since(written)));
    }
    let (c, r) = (median(&cmdr), median(&raw));
    section.rows.push(Row {
        measure: format!(
            "in-place write leaving the file shorter → `profile_changed`, median of {rounds}"
        ),
        cmdr: fmt_ms(c),
        baseline: format!("{} (raw notify)", fmt_ms(r)),
        ratio: format!("+{}", fmt_ms(c - r)),
        target: "—".to_owned(),
        verdict: Verdict::Info,
    });
    section.notes.push(format!(
        "Saves are {} ms apart, one at a time: a rename onto the file, or an in-place write \
         closed after writing, is read after 3 ms, at most once per debounce period; other \
         in-place writes wait out the debounce. An in-place \
         write that leaves a file shorter than before may be half-written (truncated, not yet \
         rewritten): it is read again 1 s after the writer's last event and believed then.",
        opts.debounce_ms + 10.0
    ));
    sb.stop();
    Ok(section)
}
