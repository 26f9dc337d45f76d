//! The benchmark run: arguments, the machine line, every section, the page.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::measure::Opts;
use crate::report::{Section, Verdict};
use crate::{daemon, measure, report};

/// Hand-written analysis appended to the full page (kept next to the code it explains).
const ANALYSIS: &str = include_str!("../ANALYSIS.md");

struct Args {
    quick: bool,
    /// Run only the sections whose names contain this (e.g. `parse`), for profiling.
    only: Option<String>,
    build_time: bool,
    bins: PathBuf,
    out: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        only: None,
        build_time: false,
        bins: PathBuf::from("target/release"),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--build-time" => args.build_time = true,
            "--bins" => args.bins = it.next().context("--bins needs a directory")?.into(),
            "--only" => args.only = Some(it.next().context("--only needs a name")?),
            "--out" => args.out = Some(it.next().context("--out needs a path")?.into()),
            other => bail!(
                "unknown argument `{other}`; usage: cmdr-bench [--quick] [--build-time] [--only NAME] [--bins DIR] [--out PATH]"
            ),
        }
    }
    Ok(args)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The machine: CPU, cores, memory, kernel, toolchain, load.
fn machine() -> String {
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    let kernel = read("/proc/sys/kernel/osrelease");
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let python = Command::new("python3")
        .args([
            "-c",
            "import sys, botocore; print(sys.version.split()[0], 'botocore', botocore.__version__)",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores available, {mem} RAM, Linux {}, {rustc}, Python {}",
        kernel.trim(),
        if python.is_empty() {
            "without botocore"
        } else {
            &python
        }
    )
}

fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn main() -> anyhow::Result<()> {
    // `--maxrss PROGRAM ARGS…`: run one command and print its peak RSS. The bench re-executes
    // itself for this because a child's `ru_maxrss` starts at its parent's high-water mark
    // (Linux carries it across fork and exec), and this fresh process is small.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--maxrss") {
        let program = argv.get(2).context("--maxrss needs a program")?;
        let (_, kib, ok) = daemon::run_measured(Command::new(program).args(&argv[3..]))?;
        if !ok {
            bail!("{program} failed");
        }
        println!("{kib}");
        return Ok(());
    }
    tokio::runtime::Runtime::new()
        .context("tokio runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = args()?;
    raise_fd_limit();
    let opts = Opts {
        quick: args.quick,
        bins: args.bins.clone(),
        debounce_ms: 50.0,
    };
    for bin in ["cmdrd", "cmdrctl"] {
        if !opts.bins.join(bin).exists() {
            bail!(
                "{} is missing: build it with `cargo build --release --bins`",
                opts.bins.join(bin).display()
            );
        }
    }
    let machine = machine();
    let load_before = load();
    let mode = if args.quick { "quick" } else { "full" };
    eprintln!("cmdr-bench ({mode} run) on {machine}; load average {load_before}");
    let mut sections: Vec<Section> = Vec::new();
    let wanted = |name: &str| args.only.as_ref().is_none_or(|o| name.contains(o.as_str()));
    macro_rules! run {
        ($name:literal, $e:expr) => {{
            if wanted($name) {
                eprintln!("running {} …", $name);
                let section = $e.with_context(|| format!("benchmark `{}`", $name))?;
                println!("{}", report::table(std::slice::from_ref(&section)));
                sections.push(section);
            }
        }};
    }
    run!("latency", measure::latency(&opts).await);
    run!("fan-out", measure::fanout(&opts).await);
    run!("parse", measure::parse(&opts));
    run!("round trip", measure::round_trip(&opts).await);
    run!("footprint", measure::footprint(&opts).await);
    run!("storm", measure::storm(&opts).await);
    run!("scale", crate::scale::scale(&opts).await);
    run!("log flood", measure::log_flood(&opts).await);
    run!("import", measure::import(&opts).await);
    // Sign-in and renewal (issue 25); `--only portals` runs the four.
    run!(
        "portals: login",
        crate::portals::login_to_credentials(&opts).await
    );
    run!(
        "portals: renewal",
        crate::portals::renewal_to_loops(&opts).await
    );
    run!("portals: idle", crate::portals::idle_portals(&opts).await);
    run!(
        "portals: refresh",
        crate::portals::one_portal_refreshes(&opts).await
    );
    // Minutes of real SDK clients and a moto server: the full run only.
    if !opts.quick {
        run!("propagation", crate::propagation::propagation(&opts).await);
    }
    run!("binaries", measure::binaries(&opts, args.build_time));
    let load_after = load();

    let missed: Vec<String> = sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter_map(|r| match &r.verdict {
            Verdict::Missed(by) => Some(format!("{}: {by}", r.measure)),
            _ => None,
        })
        .collect();
    let met = sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| matches!(r.verdict, Verdict::Met))
        .count();
    eprintln!("targets met: {met}, missed: {}", missed.len());
    for m in &missed {
        eprintln!("  missed: {m}");
    }

    // The page lists the sections by number, whatever order they ran in.
    sections.sort_by_key(|s| section_number(&s.title));
    if let Some(out) = &args.out {
        let page = if let Some(only) = args.only.as_deref().filter(|_| out.exists()) {
            // One benchmark run alone: put its sections into the page of the last full run,
            // keeping every other section's figures.
            let old =
                std::fs::read_to_string(out).with_context(|| format!("read {}", out.display()))?;
            let numbers: Vec<String> = sections
                .iter()
                .map(|s| section_number(&s.title).to_string())
                .collect();
            let note = format!(
                "- Section {} re-run alone (`cmdr-bench --only {only}`) on {}: load average {load_before} before, {load_after} after; its targets met: {met}, missed: {}",
                numbers.join(", "),
                chrono::Utc::now().format("%Y-%m-%d"),
                missed.len()
            );
            splice(&old, &sections, &note, (!args.quick).then_some(ANALYSIS))
        } else {
            let mut page = String::new();
            page.push_str("# Benchmarks\n\n");
            page.push_str(
                "Generated by `scripts/bench` (crate `crates/cmdr-bench`); do not edit by hand, \
                 except `crates/cmdr-bench/ANALYSIS.md`, which is appended below.\n\
                 Every measure runs against its baseline **in the same run** on a shared, noisy \
                 machine: compare the ratios and medians, not single absolute times.\n\n",
            );
            let _ = writeln!(page, "- Machine: {machine}");
            let _ = writeln!(
                page,
                "- Load average (1/5/15 min): {load_before} before, {load_after} after"
            );
            let _ = writeln!(
                page,
                "- Run: {mode}{}; targets met: {met}, missed: {}",
                if args.build_time {
                    ", with build time"
                } else {
                    ""
                },
                missed.len()
            );
            page.push_str(&report::table(&sections));
            if !args.quick {
                page.push('\n');
                page.push_str(ANALYSIS);
            }
            page
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).ok();
        }
        std::fs::write(out, page).with_context(|| format!("write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The number a section's title starts with ("8. Running…" → 8; none: last).
fn section_number(title: &str) -> u32 {
    title
        .split_once('.')
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// `old` (a page written by a full run) with `sections` in place of the sections of the
/// same numbers (or added in number order), `note` as a line of the header (replacing an
/// earlier note about the same sections), and the analysis replaced by `analysis`.
fn splice(old: &str, sections: &[Section], note: &str, analysis: Option<&str>) -> String {
    let first = old.find("\n### ").unwrap_or(old.len());
    let (head, rest) = old.split_at(first);
    let tail_at = rest.find("\n## ").unwrap_or(rest.len());
    let (body, tail) = rest.split_at(tail_at);
    let mut chunks: Vec<(u32, String)> = body
        .split("\n### ")
        .filter(|c| !c.trim().is_empty())
        .map(|c| (section_number(c), format!("\n### {c}")))
        .collect();
    for section in sections {
        let n = section_number(&section.title);
        let text = report::table(std::slice::from_ref(section));
        match chunks.iter_mut().find(|(m, _)| *m == n) {
            Some(chunk) => chunk.1 = text,
            None => chunks.push((n, text)),
        }
    }
    chunks.sort_by_key(|(n, _)| *n);
    let prefix = note.split(" re-run alone").next().unwrap_or(note);
    let mut page: String = head
        .lines()
        .filter(|l| !l.starts_with(prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    while page.ends_with("\n\n") {
        page.pop();
    }
    page.push_str(note);
    page.push('\n');
    for (_, chunk) in chunks {
        page.push_str(&chunk);
    }
    match analysis {
        Some(text) => {
            page.push('\n');
            page.push_str(text);
        }
        None => page.push_str(tail),
    }
    page
}

/// 1,000 subscribers need more than the usual 1,024 descriptors on both ends (the daemon
/// inherits our limit).
fn raise_fd_limit() {
    cmdr_testkit::sys::raise_nofile(65536);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Row;

    fn section(title: &str, value: &str) -> Section {
        Section {
            title: title.to_owned(),
            rows: vec![Row::info("m", value)],
            notes: vec!["a note".to_owned()],
        }
    }

    #[test]
    fn splice_replaces_only_the_sections_run() {
        let full = [
            section("1. One", "first"),
            section("7. Seven", "seventh"),
            section("8. Eight", "old eighth"),
        ];
        let old = format!(
            "# Benchmarks\n\n- Run: full\n{}\n## Analysis\n\nold analysis\n",
            report::table(&full)
        );
        let new = splice(
            &old,
            &[section("8. Eight", "new eighth")],
            "- Section 8 re-run alone (`x`) on today",
            Some("## Analysis\n\nnew analysis\n"),
        );
        assert!(new.contains("| m | first |"));
        assert!(new.contains("| m | seventh |"));
        assert!(new.contains("| m | new eighth |"));
        assert!(!new.contains("old eighth"));
        assert!(new.contains("- Run: full\n- Section 8 re-run alone (`x`) on today\n\n### 1."));
        assert!(new.ends_with("## Analysis\n\nnew analysis\n"));
        assert!(new.find("### 7.") < new.find("### 8."));
        // Again: the note is replaced, not repeated; a new section goes in by number.
        let again = splice(
            &new,
            &[section("5. Five", "fifth")],
            "- Section 5 re-run alone (`y`) on today",
            None,
        );
        assert_eq!(again.matches("re-run alone").count(), 2);
        let again = splice(&again, &[], "- Section 8 re-run alone (`z`) on today", None);
        assert_eq!(again.matches("Section 8 re-run alone").count(), 1);
        assert!(again.find("### 1.") < again.find("### 5."));
        assert!(again.find("### 5.") < again.find("### 7."));
        assert!(again.ends_with("new analysis\n"));
    }
}
