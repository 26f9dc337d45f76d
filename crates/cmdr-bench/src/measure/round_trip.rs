//! Measure 4: client round trips as whole processes, against `aws configure list`.

use std::path::PathBuf;

use anyhow::bail;

use crate::daemon::run_measured;
use crate::report::{Row, Section, Verdict, fmt_mib, fmt_ms, median, ms, ratio};

use super::{Opts, peak_rss, small_sandbox, which};

/// 4. Client round trips as whole processes.
pub async fn round_trip(opts: &Opts) -> anyhow::Result<Section> {
    let k = if opts.quick { 15 } else { 200 };
    let aws_k = if opts.quick { 3 } else { 20 };
    let mut sb = small_sandbox(opts, "")?;
    sb.start("warn").await?;
    sb.add_account()?;
    let aws = which("aws");
    let truth = which("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
    let (mut status, mut prompt, mut floor, mut aws_times) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so noise hits every command alike.
    for i in 0..k {
        let (t, _, ok) = run_measured(sb.ctl().args(["status", "--json"]))?;
        if !ok {
            bail!("cmdrctl status --json failed");
        }
        status.push(ms(t));
        let (t, _, ok) = run_measured(sb.ctl().arg("prompt"))?;
        if !ok {
            bail!("cmdrctl prompt failed");
        }
        prompt.push(ms(t));
        floor.push(ms(run_measured(&mut sb.command(&truth))?.0));
        if let Some(aws) = aws.as_ref().filter(|_| i < aws_k) {
            let (t, _, ok) = run_measured(
                sb.command(aws)
                    .args(["configure", "list"])
                    .env("AWS_PROFILE", "acme"),
            )?;
            if !ok {
                bail!("aws configure list failed");
            }
            aws_times.push(ms(t));
        }
    }
    let ctl_rss = peak_rss(Some(&sb), &sb.bins.join("cmdrctl"), &["status", "--json"])?;
    let aws_rss = match &aws {
        Some(aws) => Some(peak_rss(Some(&sb), aws, &["configure", "list"])?),
        None => None,
    };
    sb.stop();
    let aws_median = (!aws_times.is_empty()).then(|| median(&aws_times));
    let row = |measure: &str, values: &[f64], target: f64| {
        let m = median(values);
        Row {
            measure: format!("{measure}, median of {k}"),
            cmdr: fmt_ms(m),
            baseline: aws_median.map_or("aws CLI not installed".to_owned(), |a| {
                format!("{} (`aws configure list`)", fmt_ms(a))
            }),
            ratio: aws_median.map_or("—".to_owned(), |a| format!("{} faster", ratio(a, m))),
            target: format!("< {target} ms"),
            verdict: if m < target {
                Verdict::Met
            } else {
                Verdict::Missed(format!("by {}", fmt_ms(m - target)))
            },
        }
    };
    Ok(Section {
        title: "4. Client round trip (whole processes)".to_owned(),
        rows: vec![
            row("`cmdrctl prompt`", &prompt, 3.0),
            row("`cmdrctl status --json`", &status, 5.0),
            Row::info(
                format!("process spawn floor (`true`), median of {k}"),
                fmt_ms(median(&floor)),
            ),
            Row {
                measure: "peak RSS of one client process".to_owned(),
                cmdr: fmt_mib(ctl_rss),
                baseline: aws_rss.map_or("—".to_owned(), |a| {
                    format!("{} (`aws configure list`)", fmt_mib(a))
                }),
                ratio: aws_rss.map_or("—".to_owned(), |a| {
                    format!("{} smaller", ratio(a as f64, ctl_rss as f64))
                }),
                target: "—".to_owned(),
                verdict: Verdict::Info,
            },
        ],
        notes: vec![format!(
            "`aws configure list` ran {} times (it takes hundreds of ms); wall time from spawn to \
             exit as measured by the bench; peak RSS from `wait4` in a small helper process \
             (median of 3).",
            aws_times.len()
        )],
    })
}
