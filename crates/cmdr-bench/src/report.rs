//! Results: rows of cmdr against its baseline, statistics, and the markdown page.

use std::fmt::Write as _;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Verdict {
    Met,
    Missed(String),
    /// No target: context only.
    Info,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub cmdr: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn info(measure: impl Into<String>, cmdr: impl Into<String>) -> Row {
        Row {
            measure: measure.into(),
            cmdr: cmdr.into(),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: "—".to_owned(),
            verdict: Verdict::Info,
        }
    }

    /// A yes/no check against `target`: met unless `failure` says how it missed.
    pub fn check(
        measure: impl Into<String>,
        cmdr: impl Into<String>,
        target: impl Into<String>,
        failure: Option<String>,
    ) -> Row {
        Row {
            measure: measure.into(),
            cmdr: cmdr.into(),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: target.into(),
            verdict: failure.map_or(Verdict::Met, Verdict::Missed),
        }
    }
}

/// One section of the page: a heading, its rows, and notes measured alongside.
#[derive(Debug, Default)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Nearest-rank percentile; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `a / b` as "12.3×" (how many times `a` is `b`).
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "—".to_owned();
    }
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

pub fn table(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        let _ = writeln!(out, "\n### {}\n", section.title);
        out.push_str("| measure | cmdr | baseline | ratio | target | verdict |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for row in &section.rows {
            let verdict = match &row.verdict {
                Verdict::Met => "met".to_owned(),
                Verdict::Missed(by) => format!("**missed** ({by})"),
                Verdict::Info => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.measure, row.cmdr, row.baseline, row.ratio, row.target, verdict
            );
        }
        for note in &section.notes {
            let _ = writeln!(out, "\n{note}");
        }
    }
    out
}
