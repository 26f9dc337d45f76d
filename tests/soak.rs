//! Randomised soak: random operations mixing every save pattern (in place, truncate and
//! rewrite, rename save, delete and recreate, symlink swaps, directory removal, config
//! edits); at each quiet point the daemon's view must equal a fresh parse of the files.
//! `CMDR_LONG_TESTS=1` runs 2,000 operations; `CMDR_SEED` replays a run.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Instant;

use cmdr_testkit::Rng;

use crate::sandbox::{Sandbox, WAIT, creds, scale};

type View = BTreeMap<String, (Option<String>, Option<String>)>;

/// Name → (fingerprint, region) from a fresh parse of the files on disk.
fn fresh(sb: &Sandbox) -> View {
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap_or_default();
    let (config, credentials) = (read(sb.config()), read(sb.credentials()));
    let cache = BTreeMap::new();
    cmdr_core::parse_view(cmdr_core::Inputs {
        config: &config,
        credentials: &credentials,
        sso_cache: &cache,
    })
    .expect("the soak writes only valid files")
    .profiles
    .into_iter()
    .map(|(name, p)| (name, (p.fingerprint, p.region)))
    .collect()
}

/// The same from the daemon (`cmdrctl profiles --json`).
fn daemon(sb: &Sandbox) -> View {
    sb.json(&["profiles"])
        .as_array()
        .expect("profiles")
        .iter()
        .map(|p| {
            let text = |key: &str| p[key].as_str().map(str::to_owned);
            (
                text("name").unwrap_or_default(),
                (text("fingerprint"), text("region")),
            )
        })
        .collect()
}

fn random_credentials(rng: &mut Rng, op: usize) -> String {
    let mut out = String::new();
    for p in 0..5 {
        if rng.below(3) > 0 {
            let token = format!("TOKEN-SOAK-{op}-{}", rng.next_u64() % 1000);
            out.push_str(&creds(&format!("p{p}"), &token));
        }
    }
    out
}

fn random_config(rng: &mut Rng) -> String {
    let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
    let mut out = String::new();
    for p in 0..5 {
        if rng.below(2) > 0 {
            let region = regions[rng.below(regions.len())];
            out.push_str(&format!("[profile p{p}]\nregion = {region}\n"));
        }
    }
    out
}

/// One random operation; returns its name for the failure message.
fn operate(sb: &Sandbox, rng: &mut Rng, op: usize, remove_dir: bool) -> &'static str {
    let dotfiles = sb.home.join("dotfiles");
    let mut kind = rng.below(8);
    if kind == 6 && !remove_dir {
        kind = 7;
    }
    if kind != 6 {
        std::fs::create_dir_all(&sb.aws).expect("aws");
    }
    let text = random_credentials(rng, op);
    let path = sb.credentials();
    match kind {
        0 => {
            // In place: overwrite from the start, then cut to length.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .expect("open");
            file.write_all(text.as_bytes()).expect("write");
            file.set_len(text.len() as u64).expect("set_len");
            "in place"
        }
        1 => {
            let mut file = std::fs::File::create(&path).expect("truncate");
            file.flush().expect("flush");
            // Kept: a writer pausing between truncate and write is the pattern under test.
            std::thread::sleep(std::time::Duration::from_millis(rng.below(20) as u64));
            file.write_all(text.as_bytes()).expect("write");
            "truncate + rewrite"
        }
        2 => {
            let tmp = sb.aws.join(".credentials.swp");
            std::fs::write(&tmp, &text).expect("write");
            std::fs::rename(&tmp, &path).expect("rename");
            "rename save"
        }
        3 => {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, &text).expect("write");
            "delete + recreate"
        }
        4 | 5 => {
            // A symlink swap (stow, chezmoi): a new target, the link replaced atomically.
            std::fs::create_dir_all(&dotfiles).expect("dotfiles");
            let target = dotfiles.join(format!("credentials-{op}"));
            std::fs::write(&target, &text).expect("write");
            let link = sb.aws.join(".credentials.link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).expect("symlink");
            std::fs::rename(&link, &path).expect("swap");
            "symlink swap"
        }
        6 => {
            let _ = std::fs::remove_dir_all(&sb.aws);
            "remove ~/.aws"
        }
        _ => {
            let tmp = sb.aws.join(".config.tmp");
            std::fs::write(&tmp, random_config(rng)).expect("write");
            std::fs::rename(&tmp, sb.config()).expect("rename");
            "config rename save"
        }
    }
}

#[test]
fn random_operations_agree_with_a_fresh_parse() {
    let mut rng = Rng::seeded();
    let mut sb = Sandbox::with_profile("TOKEN-SOAK-START");
    sb.start();
    let ops = std::env::var("CMDR_SOAK_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| scale(40, 2_000));
    // `CMDR_SOAK_REMOVE_DIR=0` leaves out the removal of ~/.aws (to tell watch problems
    // apart; it once left the view stale until the 60 s safety rescan, see
    // docs/reliability.md).
    let remove_dir = std::env::var("CMDR_SOAK_REMOVE_DIR").map_or(true, |v| v != "0");
    let mut quiet_points = 0;
    let mut agreed = 0;
    let mut op = 0;
    let mut slowest = std::time::Duration::ZERO;
    while op < ops {
        // A burst of one to three operations, then a quiet point.
        let mut done = Vec::new();
        for _ in 0..=rng.below(3) {
            let name = operate(&sb, &mut rng, op, remove_dir);
            eprintln!("op {op}: {name}");
            done.push(name);
            op += 1;
        }
        let want = fresh(&sb);
        let start = Instant::now();
        let mut got = daemon(&sb);
        while got != want && start.elapsed() < WAIT * 5 {
            std::thread::sleep(std::time::Duration::from_millis(25));
            got = daemon(&sb);
        }
        quiet_points += 1;
        slowest = slowest.max(start.elapsed());
        if start.elapsed() > WAIT {
            eprintln!(
                "SLOW CONVERGENCE {} ms converged={}",
                start.elapsed().as_millis(),
                got == want
            );
        }
        if got != want {
            let log = sb.log_text();
            // The watcher's and engine's side of the story, without the client traffic.
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("cmdrd::watch")
                        || l.contains("cmdrd::engine")
                        || l.contains("adding inotify")
                        || l.contains("WARN")
                })
                .collect();
            eprintln!("{}", lines[lines.len().saturating_sub(60)..].join("\n"));
        }
        assert_eq!(
            got, want,
            "after op {op} ({done:?}) the daemon's view differs from the files"
        );
        agreed += 1;
    }
    // A fresh daemon reads the same view.
    let last = daemon(&sb);
    sb.stop();
    sb.start();
    assert_eq!(daemon(&sb), last, "a fresh daemon sees another view");
    eprintln!(
        "figure: soak: {op} operations, {agreed}/{quiet_points} quiet points agreed (100%), slowest convergence {} ms",
        slowest.as_millis()
    );
}
