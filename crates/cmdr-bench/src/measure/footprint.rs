//! Measure 5: the idle daemon's footprint with 10 and 5,000 profiles: RSS, wake-ups, CPU.

use std::time::{Duration, Instant};

use crate::daemon::{ProcStats, Sandbox};
use crate::files;
use crate::report::{Row, Section, Verdict, fmt_mib, fmt_ms, ms, ratio};

use super::{Opts, python_botocore_rss, small_sandbox};

/// 5. Footprint: idle RSS with 10 and 5,000 profiles; wake-ups and CPU while idle.
pub async fn footprint(opts: &Opts) -> anyhow::Result<Section> {
    let idle = Duration::from_secs(if opts.quick { 5 } else { 60 });
    let settle = Duration::from_secs(2);
    let mut small = small_sandbox(opts, "")?;
    let mut big = Sandbox::new(
        &opts.bins,
        &files::config(5000),
        &files::credentials(5000, &files::token("start")),
        "",
    )?;
    small.start("warn").await?;
    let started = Instant::now();
    big.start("warn").await?;
    let big_startup = started.elapsed();
    tokio::time::sleep(settle).await;
    let (s0, b0) = (ProcStats::read(small.pid()?)?, ProcStats::read(big.pid()?)?);
    tokio::time::sleep(idle).await;
    let (s1, b1) = (ProcStats::read(small.pid()?)?, ProcStats::read(big.pid()?)?);
    let boto_small = python_botocore_rss(&small);
    let boto_big = python_botocore_rss(&big);
    small.stop();
    big.stop();
    // Idle from `settle` to `settle + idle` after start: the 60 s safety rescan falls in
    // the window only in the full run.
    let rescans = (settle + idle).as_secs() / 60;
    let wake_row = |label: &str, a: &ProcStats, b: &ProcStats| {
        let wakes = b.total_switches().saturating_sub(a.total_switches());
        let cpu = (b.cpu_secs - a.cpu_secs) * 1000.0;
        // A safety rescan wakes a worker and a blocking-pool thread a handful of times.
        let allowed = rescans * 20;
        Row {
            measure: format!("{label}: wake-ups / CPU over {} s idle", idle.as_secs()),
            cmdr: format!("{wakes} context switches / {cpu:.0} ms CPU"),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: format!("none beyond the safety rescan ({rescans} due in the window)"),
            verdict: if wakes <= allowed {
                Verdict::Met
            } else {
                Verdict::Missed(format!("{wakes} > {allowed}"))
            },
        }
    };
    let breakdown = |a: &ProcStats, b: &ProcStats| -> String {
        b.switches
            .iter()
            .filter_map(|(name, n)| {
                let before = a
                    .switches
                    .iter()
                    .find(|(m, _)| m == name)
                    .map_or(0, |x| x.1);
                (*n > before).then(|| format!("`{name}` {}", n - before))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rss_row = |label: &str, stats: &ProcStats, boto_rss: Option<u64>, target: Option<f64>| {
        let mib = stats.rss_kib as f64 / 1024.0;
        Row {
            measure: format!("idle RSS, {label}"),
            cmdr: fmt_mib(stats.rss_kib),
            baseline: boto_rss.map_or("—".to_owned(), |r| {
                format!("{} (python3 + botocore session, same files)", fmt_mib(r))
            }),
            ratio: boto_rss.map_or("—".to_owned(), |r| {
                format!("{} smaller", ratio(r as f64, stats.rss_kib as f64))
            }),
            target: target.map_or("—".to_owned(), |t| format!("< {t} MiB")),
            verdict: match target {
                None => Verdict::Info,
                Some(t) if mib < t => Verdict::Met,
                Some(t) => Verdict::Missed(format!("by {:.1} MiB", mib - t)),
            },
        }
    };
    Ok(Section {
        title: "5. Footprint".to_owned(),
        rows: vec![
            rss_row("10 profiles", &s1, boto_small, None),
            rss_row("5,000 profiles", &b1, boto_big, Some(15.0)),
            Row::info("peak RSS (VmHWM), 5,000 profiles", fmt_mib(b1.hwm_kib)),
            Row::info(
                "start-up to first answer, 5,000 profiles",
                fmt_ms(ms(big_startup)),
            ),
            wake_row("10 profiles", &s0, &s1),
            wake_row("5,000 profiles", &b0, &b1),
        ],
        notes: vec![format!(
            "Context switches by thread over the idle window: 10 profiles: {}; 5,000 profiles: {}. \
             (`/proc/PID/task/*/status`, voluntary + involuntary; none listed means none.)",
            or_none(breakdown(&s0, &s1)),
            or_none(breakdown(&b0, &b1))
        )],
    })
}

fn or_none(s: String) -> String {
    if s.is_empty() { "none".to_owned() } else { s }
}
