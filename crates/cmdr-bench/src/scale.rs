//! Account operations as the number of accounts grows: `accounts add` over the socket
//! from the first account to the 10,000th (1,000 in the quick run), and the real
//! `cmdrctl accounts add` at both ends. Each add is one journal append; the state file is
//! rewritten once per as many adds as there are accounts, so the cost per add stays flat.

use std::time::Instant;

use anyhow::{Context as _, bail};
use cmdr_proto::{AccountSpec, OnChange, Request, TargetKind, TargetSpec};

use crate::daemon::Sandbox;
use crate::measure::Opts;
use crate::report::{Row, Section, Verdict, fmt_ms, median, ms, percentile, ratio};

fn spec(name: String) -> AccountSpec {
    AccountSpec {
        name,
        profile: "acme".into(),
        region: None,
        target: TargetSpec {
            target: TargetKind::Aws,
            endpoint: None,
        },
        on_change: OnChange::Ask,
        portal: None,
    }
}

/// Times `cmdrctl accounts add` for `names`, in ms.
fn cli_adds(sb: &Sandbox, names: impl Iterator<Item = String>) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for name in names {
        let started = Instant::now();
        let out = sb
            .ctl()
            .args(["accounts", "add", &name, "--profile", "acme"])
            .output()
            .context("cmdrctl accounts add")?;
        times.push(ms(started.elapsed()));
        if !out.status.success() {
            bail!(
                "cmdrctl accounts add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(times)
}

pub async fn scale(opts: &Opts) -> anyhow::Result<Section> {
    let total: usize = if opts.quick { 1_000 } else { 10_000 };
    let window = total / 20;
    let cli = if opts.quick { 10 } else { 50 };
    let mut sb = Sandbox::new(
        &opts.bins,
        &crate::files::config(10),
        &crate::files::credentials(10, &crate::files::token("start")),
        "",
    )?;
    sb.start("warn").await.context("start cmdrd")?;
    let cli_first = cli_adds(&sb, (0..cli).map(|i| format!("first-{i}")))?;
    let mut client = sb.client("cmdr-bench").await?;
    let mut socket = Vec::with_capacity(total);
    for i in cli..total - cli {
        let started = Instant::now();
        client
            .request(Request::AddAccount(spec(format!("a-{i:05}"))))
            .await
            .with_context(|| format!("add account {i} over the socket"))?;
        socket.push(ms(started.elapsed()));
    }
    let cli_last = cli_adds(&sb, (0..cli).map(|i| format!("last-{i}")))?;
    let started = Instant::now();
    client.request(Request::ListAccounts).await?;
    let list = started.elapsed();
    drop(client);
    sb.stop();
    let restart = Instant::now();
    sb.start("warn").await?;
    let restart = restart.elapsed();
    sb.stop();

    let (first, last) = (&socket[..window], &socket[socket.len() - window..]);
    let row = |measure: String, early: &[f64], late: &[f64]| {
        let (a, b) = (median(early), median(late));
        Row {
            measure,
            cmdr: format!("{} (p90 {})", fmt_ms(b), fmt_ms(percentile(late, 90.0))),
            baseline: format!("{} (p90 {})", fmt_ms(a), fmt_ms(percentile(early, 90.0))),
            ratio: ratio(b, a),
            target: "≤ 2× the first".to_owned(),
            verdict: if b <= 2.0 * a {
                Verdict::Met
            } else {
                Verdict::Missed(format!("{:.1}×", b / a))
            },
        }
    };
    Ok(Section {
        title: format!("Accounts at scale: adding {total} accounts"),
        rows: vec![
            row(
                format!("`accounts add` over the socket, p50 of the last {window} (baseline: the first {window})"),
                first,
                last,
            ),
            row(
                format!("`cmdrctl accounts add`, p50 of {cli} at {total} accounts (baseline: {cli} at 0)"),
                &cli_first,
                &cli_last,
            ),
            Row::info(format!("`accounts list` of {total}"), fmt_ms(ms(list))),
            Row::info(format!("start with {total} accounts (ready)"), fmt_ms(ms(restart))),
        ],
        notes: vec![
            "Each add is one fsynced journal line (`state.journal`); the journal is folded into `state.json` once it holds as many entries as there are accounts (at least 256), so the rewrite is paid once per that many adds.".to_owned(),
        ],
    })
}
