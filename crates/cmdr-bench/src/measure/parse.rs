//! Measure 3: parse + diff of 5,000 profiles, against botocore and the SDK's parser alone
//! (`cmdr_oracle::load`), and whether the two parsers agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::files;
use crate::report::{Row, Section, Verdict, fmt_ms, median, ms, ratio};

use super::Opts;

/// The SDK's parser alone on both files, merged (what one `aws_config` load costs).
fn sdk_load(config: &str, credentials: &str) -> anyhow::Result<usize> {
    match cmdr_oracle::load(Some(config), Some(credentials)) {
        Ok(set) => Ok(set.profiles().count()),
        Err(err) => bail!("sdk parse: {err}"),
    }
}

fn time_once(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let started = Instant::now();
    f()?;
    Ok(ms(started.elapsed()))
}

const BOTOCORE: &str = r#"
import statistics, sys, time
from botocore.configloader import load_config, raw_config_parse
config, credentials, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(k):
    t = time.perf_counter()
    c = load_config(config)            # config file: raw parse + profile map
    r = raw_config_parse(credentials)  # what SharedCredentialProvider parses
    times.append(time.perf_counter() - t)
    assert len(c["profiles"]) >= 5000 and len(r) >= 5000
print(statistics.median(times) * 1000.0)
"#;

/// botocore's parser on the same files: median ms, or why it could not run.
fn botocore(config: &Path, credentials: &Path, k: usize) -> Result<f64, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(BOTOCORE)
        .arg(config)
        .arg(credentials)
        .arg(k.to_string())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("botocore output: {e}"))
}

/// 3. Parse + diff of 5,000 profiles.
pub fn parse(opts: &Opts) -> anyhow::Result<Section> {
    let n = 5000;
    let k = if opts.quick { 3 } else { 15 };
    let config = files::config(n);
    let credentials = files::credentials(n, &files::token("start"));
    // A one-line change: acme's session token.
    let changed = files::credentials(n, &files::token("changed"));
    let dir = tempfile::tempdir().context("temp dir")?;
    let (config_path, credentials_path) =
        (dir.path().join("config"), dir.path().join("credentials"));
    std::fs::write(&config_path, &config).context("write config")?;
    std::fs::write(&credentials_path, &credentials).context("write credentials")?;
    let cache = BTreeMap::new();
    let view = |credentials: &str| {
        cmdr_core::parse_view(cmdr_core::Inputs {
            config: config.as_bytes(),
            credentials: credentials.as_bytes(),
            sso_cache: &cache,
        })
        .map_err(|e| anyhow::anyhow!("parse_view failed: {e:?}"))
    };
    let empty = cmdr_core::ProfileView::default();
    // The measures take turns, round by round, so that a burst of load on this shared
    // machine hits them alike.
    let mut rounds: [Vec<f64>; 5] = Default::default();
    // The daemon's view: property digests instead of copies, secrets only of the profiles
    // accounts are bound to (here one, `acme`).
    let bound = std::collections::BTreeSet::from(["acme".to_owned()]);
    let lean = cmdr_core::Detail {
        properties: false,
        secrets_for: Some(&bound),
        previous: None,
    };
    let lean_view = |credentials: &str| {
        cmdr_core::parse_view_with(
            cmdr_core::Inputs {
                config: config.as_bytes(),
                credentials: credentials.as_bytes(),
                sso_cache: &cache,
            },
            lean,
        )
        .map_err(|e| anyhow::anyhow!("parse_view_with failed: {e:?}"))
    };
    let lean_first = lean_view(&credentials)?;
    if lean_first.profiles.len() != n {
        bail!("expected {n} profiles, got {}", lean_first.profiles.len());
    }
    // Each measure runs k times in a row, warm, as botocore does in its own process.
    let mut repeat = |index: usize, f: &mut dyn FnMut() -> anyhow::Result<()>| {
        for _ in 0..k {
            rounds[index].push(time_once(&mut *f)?);
        }
        anyhow::Ok(())
    };
    repeat(0, &mut || sdk_load(&config, &credentials).map(drop))?;
    repeat(1, &mut || {
        let v = lean_view(&credentials)?;
        std::hint::black_box(cmdr_core::diff(&empty, &v));
        Ok(())
    })?;
    repeat(2, &mut || {
        let v = lean_view(&changed)?;
        let changes = cmdr_core::diff(&lean_first, &v);
        if changes.len() != 1 {
            bail!("expected one change, got {}", changes.len());
        }
        Ok(())
    })?;
    // Everything the engine does per change: the parse, the redacted copy it keeps of the
    // file, the diff.
    repeat(3, &mut || {
        let v = lean_view(&changed)?;
        let kept = cmdr_core::profile::redact_secrets(changed.as_bytes());
        std::hint::black_box((cmdr_core::diff(&lean_first, &v), kept));
        Ok(())
    })?;
    repeat(4, &mut || {
        let v = view(&credentials)?;
        std::hint::black_box(cmdr_core::diff(&empty, &v));
        Ok(())
    })?;
    let [sdk, full, reparse, daemon, doctor] = rounds.map(|times| median(&times));
    let agrees = cmdr_oracle::disagreement(&config, &credentials);
    let boto = botocore(&config_path, &credentials_path, k);
    let mb = (config.len() + credentials.len()) as f64 / 1e6;
    let vs_boto = |cmdr: f64, measure: &str, target: bool| -> Row {
        match &boto {
            Ok(b) => Row {
                measure: measure.to_owned(),
                cmdr: fmt_ms(cmdr),
                baseline: format!("{} (botocore)", fmt_ms(*b)),
                ratio: format!("{} faster", ratio(*b, cmdr)),
                target: if target { "≥ 20× faster" } else { "—" }.to_owned(),
                verdict: match (target, b / cmdr >= 20.0) {
                    (false, _) => Verdict::Info,
                    (true, true) => Verdict::Met,
                    (true, false) => Verdict::Missed(format!(
                        "{:.1}× instead of 20×; needs ≤ {}",
                        b / cmdr,
                        fmt_ms(b / 20.0)
                    )),
                },
            },
            Err(why) => Row {
                baseline: format!("botocore unavailable: {why}"),
                ..Row::info(measure, fmt_ms(cmdr))
            },
        }
    };
    Ok(Section {
        title: format!(
            "3. Parse + diff ({n} profiles, {mb:.1} MB of config + credentials, median of {k})"
        ),
        rows: vec![
            vs_boto(
                full,
                "full parse + diff, the daemon's view (`parse_view_with`, lean)",
                true,
            ),
            vs_boto(
                daemon,
                "daemon's work per change (parse, redacted copy, `diff`)",
                true,
            ),
            Row {
                measure: "re-parse + diff after a one-line change".to_owned(),
                cmdr: fmt_ms(reparse),
                baseline: format!("{} (full parse)", fmt_ms(full)),
                ratio: ratio(reparse, full),
                target: "≤ full parse".to_owned(),
                // Medians of a noisy machine: 5 % is the same thing.
                verdict: if reparse <= full * 1.05 {
                    Verdict::Met
                } else {
                    Verdict::Missed(format!("by {}", fmt_ms(reparse - full)))
                },
            },
            vs_boto(
                doctor,
                "parse + diff keeping every property and secret (`parse_view`, as `doctor`)",
                false,
            ),
            Row {
                measure: "full parse + diff vs the SDK's parser alone \
                          (`aws_config::profile::load`, both files, no view)"
                    .to_owned(),
                cmdr: fmt_ms(full),
                baseline: format!("{} (SDK parser)", fmt_ms(sdk)),
                ratio: format!("{} faster", ratio(sdk, full)),
                target: "—".to_owned(),
                verdict: Verdict::Info,
            },
            Row::check(
                "cmdr's parser and the SDK's read these files alike \
                 (`cmdr_oracle::disagreement`)",
                match &agrees {
                    None => "yes".to_owned(),
                    Some(why) => format!("no: {why}"),
                },
                "yes",
                agrees.is_some().then(|| "they disagree".to_owned()),
            ),
        ],
        notes: vec![format!(
            "botocore: `load_config(config)` + `raw_config_parse(credentials)` in one Python \
             process, median of {k} (interpreter start-up and imports excluded; it reads the files \
             from the page cache, cmdr parses bytes already in memory)."
        )],
    })
}
