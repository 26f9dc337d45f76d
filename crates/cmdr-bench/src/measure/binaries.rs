//! Measure 7: binary sizes and (unless quick) the build time of both binaries from scratch.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::report::{Row, Section, Verdict, ratio};

use super::{Opts, dir_size};

/// Installed size of the AWS CLI v1 (awscli + botocore packages).
fn aws_cli_size() -> Option<u64> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, awscli, botocore; print(os.path.dirname(awscli.__file__)); print(os.path.dirname(botocore.__file__))",
        ])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| dir_size(Path::new(l.trim())))
            .sum()
    })
}

/// 7. Binary size, and (unless quick) the build time of both binaries from scratch.
pub fn binaries(opts: &Opts, build_time: bool) -> anyhow::Result<Section> {
    let size = |name: &str| -> anyhow::Result<u64> {
        let path = opts.bins.join(name);
        Ok(std::fs::metadata(&path)
            .with_context(|| format!("{} (build with `cargo build --release`)", path.display()))?
            .len())
    };
    let (daemon, ctl) = (size("cmdrd")?, size("cmdrctl")?);
    let aws = aws_cli_size();
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let mut rows = vec![Row {
        measure: "release binaries (`cmdrd` + `cmdrctl`, stripped)".to_owned(),
        cmdr: format!("{} + {} = {}", mb(daemon), mb(ctl), mb(daemon + ctl)),
        baseline: aws.map_or("—".to_owned(), |a| {
            format!("{} (awscli + botocore packages)", mb(a))
        }),
        ratio: aws.map_or("—".to_owned(), |a| {
            format!("{} smaller", ratio(a as f64, (daemon + ctl) as f64))
        }),
        target: "—".to_owned(),
        verdict: Verdict::Info,
    }];
    if build_time {
        let dir = Path::new("target").join("bench-build");
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let status = Command::new("cargo")
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "cmdrd",
                "-p",
                "cmdrctl",
                "--bins",
            ])
            .arg("--target-dir")
            .arg(&dir)
            .status()
            .context("cargo build")?;
        let took = started.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        if !status.success() {
            bail!("cargo build --release failed");
        }
        rows.push(Row::info(
            "release build of both binaries from scratch (fresh target dir, dependencies included)",
            format!("{:.0} s", took.as_secs_f64()),
        ));
    } else {
        let why = if opts.quick {
            "quick mode"
        } else {
            "`--no-build-time`"
        };
        rows.push(Row::info(
            "release build time",
            format!("not measured in this run ({why})"),
        ));
    }
    Ok(Section {
        title: "7. Binary size and build time".to_owned(),
        rows,
        notes: Vec::new(),
    })
}
