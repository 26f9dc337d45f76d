//! Measure 2: fan-out, one event to 1,000 subscribers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::files;
use crate::report::{Row, Section, Verdict, fmt_ms, median, ms, percentile};

use super::{Opts, Save, next_token_changed, save, small_sandbox};

/// 2. Fan-out: one event to 1,000 subscribers.
pub async fn fanout(opts: &Opts) -> anyhow::Result<Section> {
    let subscribers = 1000;
    let rounds = if opts.quick { 3 } else { 15 };
    let mut sb = small_sandbox(opts, "max_connections = 1100\n")?;
    sb.start("warn").await?;
    sb.add_account()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..subscribers {
        let mut client = sb.client("bench-fanout").await?;
        client.subscribe().await?;
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Ok(at) = next_token_changed(&mut client, Duration::from_secs(3600)).await {
                if tx.send(at).is_err() {
                    break;
                }
            }
        });
    }
    let (mut spread, mut first, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let text = files::credentials(10, &files::token(&format!("fanout{round}")));
        let written = Instant::now();
        save(&sb.credentials(), &text, Save::Rename)?;
        let mut arrivals = Vec::with_capacity(subscribers);
        while arrivals.len() < subscribers {
            let at = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .with_context(|| {
                    format!(
                        "only {} of {subscribers} subscribers got the event",
                        arrivals.len()
                    )
                })?
                .context("subscribers gone")?;
            arrivals.push(at);
        }
        let (Some(min), Some(max)) = (arrivals.iter().min(), arrivals.iter().max()) else {
            bail!("no arrivals");
        };
        spread.push(ms(*max - *min));
        first.push(ms(min.saturating_duration_since(written)));
        last.push(ms(max.saturating_duration_since(written)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks.abort_all();
    sb.stop();
    let s = median(&spread);
    Ok(Section {
        title: format!("2. Fan-out ({subscribers} subscribers, median of {rounds} events)"),
        rows: vec![
            Row {
                measure: "first → last subscriber receives the event".to_owned(),
                cmdr: fmt_ms(s),
                baseline: "—".to_owned(),
                ratio: "—".to_owned(),
                target: "< 50 ms".to_owned(),
                verdict: if s < 50.0 {
                    Verdict::Met
                } else {
                    Verdict::Missed(format!("by {}", fmt_ms(s - 50.0)))
                },
            },
            Row::info(
                "write → first subscriber",
                format!(
                    "{} (p99 of rounds {})",
                    fmt_ms(median(&first)),
                    fmt_ms(percentile(&first, 99.0))
                ),
            ),
            Row::info(
                "write → last subscriber",
                format!(
                    "{} (p99 of rounds {})",
                    fmt_ms(median(&last)),
                    fmt_ms(percentile(&last, 99.0))
                ),
            ),
        ],
        notes: vec![
            "All 1,000 subscribers are `cmdr_client::Client` connections in the bench process \
             (one tokio runtime); the spread includes their own scheduling on this machine's cores."
                .to_owned(),
        ],
    })
}
