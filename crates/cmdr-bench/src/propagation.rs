//! Running processes following the accepted token (the credentials endpoint): how long
//! after `accept` each SDK's long-running process calls with the new identity, how often
//! each re-fetches at the lifetime served to it, what one fetch costs against spawning
//! `cmdrctl credential-process`, and the daemon's memory with 100 clients fetching once a
//! second. moto_server on loopback tells which token a call was signed with.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::daemon::{ProcStats, Sandbox};
use crate::measure::Opts;
use crate::report::{Row, Section, Verdict, fmt_mib, fmt_ms, median, ms, percentile, ratio};

/// The test clients (tests/clients): the boto3 and JavaScript loops, the moto user script.
fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

struct Moto(Child, String);

impl Moto {
    fn start() -> anyhow::Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("moto_server (pip install 'moto[server]')")?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("moto_server did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Moto(child, format!("http://127.0.0.1:{port}")))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (ARN, access key id, secret) of new IAM users.
fn users(moto: &Moto, names: &[&str]) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = Command::new("python3")
        .arg(clients_dir().join("moto_users.py"))
        .arg(&moto.1)
        .args(names)
        .output()
        .context("python3 with boto3")?;
    if !out.status.success() {
        bail!("moto_users.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn creds(user: &(String, String, String)) -> String {
    format!(
        "[acme]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        user.1, user.2
    )
}

/// A long-running client: every line it prints is `<unix millis> <ARN or error>`.
struct Client {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<(u128, String)>>>,
}

impl Client {
    fn spawn(name: &'static str, mut cmd: Command) -> anyhow::Result<Client> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start the {name} client"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((at, rest)) = line.split_once(' ') {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((at.parse().unwrap_or(0), rest.to_owned()));
                }
            }
        });
        Ok(Client { name, child, lines })
    }

    /// When (unix millis) it first answered `arn` at or after `since`.
    fn first(&self, arn: &str, since: u128) -> Option<u128> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(at, rest)| *at >= since && rest == arn)
            .map(|(at, _)| *at)
    }

    fn calls(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn ctl_ok(sb: &Sandbox, args: &[&str]) -> anyhow::Result<String> {
    let out = sb.ctl().args(args).output().context("cmdrctl")?;
    if !out.status.success() {
        bail!(
            "cmdrctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn state(sb: &Sandbox) -> String {
    ctl_ok(sb, &["accounts", "show", "acme", "--json"])
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One GET of the endpoint on a new connection, as the SDKs do; returns the status.
fn fetch(url: &str, token: &str) -> anyhow::Result<u16> {
    let rest = url.strip_prefix("http://").context("http url")?;
    let (host, path) = rest.split_once('/').context("path")?;
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

pub async fn propagation(opts: &Opts) -> anyhow::Result<Section> {
    let runs = if opts.quick { 1 } else { 5 };
    let moto = Moto::start()?;
    let people = users(&moto, &["alice", "bob"])?;
    let mut sb = Sandbox::new(
        &opts.bins,
        "[profile acme]\nregion = us-east-1\n",
        &creds(&people[0]),
        "",
    )?;
    sb.start("warn,cmdrd::endpoint=debug").await?;
    ctl_ok(
        &sb,
        &["accounts", "add", "acme", "--profile", "acme", "--endpoint", &moto.1],
    )?;
    let status: serde_json::Value = serde_json::from_str(&ctl_ok(&sb, &["status", "--json"])?)?;
    let base = status["endpoint"]["url"]
        .as_str()
        .context("endpoint url")?
        .to_owned();
    let token = std::fs::read_to_string(
        status["endpoint"]["token_file"]
            .as_str()
            .context("token file")?,
    )?;
    let url = format!("{base}acme");

    let exec = |program: &[&str]| {
        let mut cmd = sb.ctl();
        cmd.args(["exec", "acme", "--"])
            .args(program)
            .current_dir(clients_dir());
        cmd
    };
    let rust = opts.bins.join("cmdr-sts-loop");
    let rust = rust.to_str().context("utf-8 path")?;
    // The AWS CLI (v1, botocore) starts afresh for every call: one call a second.
    let cli_loop = "while :; do a=$(aws sts get-caller-identity --output text --query Arn 2>&1 | tr '\\n' ' '); echo \"$(date +%s%3N) ${a% }\"; sleep 1; done";
    let clients = vec![
        Client::spawn("boto3", exec(&["python3", "sts_loop.py"]))?,
        Client::spawn("JavaScript SDK v3", exec(&["node", "sts-loop.mjs"]))?,
        Client::spawn("Rust SDK", exec(&[rust]))?,
        Client::spawn("AWS CLI v1 (a process per call)", exec(&["sh", "-c", cli_loop]))?,
    ];
    let started = now_ms();
    for c in &clients {
        wait_for(c, &people[0].0, started, Duration::from_secs(120))?;
    }
    let fetches_before = count_fetches(&sb.log_text());
    let measured_from = Instant::now();
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    for run in 0..runs {
        let to = &people[(run + 1) % 2];
        std::fs::write(sb.credentials(), creds(to))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while state(&sb) != "changed" {
            if Instant::now() > deadline {
                bail!("the account never became `changed`");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Some time on the old token, so that runs do not all start right after a fetch.
        tokio::time::sleep(Duration::from_secs(7 + 11 * run as u64 % 30)).await;
        let accepted = now_ms();
        ctl_ok(&sb, &["accept", "acme"])?;
        for (c, s) in clients.iter().zip(&mut seconds) {
            let at = wait_for(c, &to.0, accepted, Duration::from_secs(600))?;
            s.push((at.saturating_sub(accepted)) as f64 / 1000.0);
        }
    }
    let minutes = measured_from.elapsed().as_secs_f64() / 60.0;
    let fetches_after = count_fetches(&sb.log_text());
    let cli_calls = clients[3].calls();

    let mut section = Section {
        title: format!(
            "8. Running processes follow `accept` (credentials endpoint; {runs} accept(s), each SDK calling STS once a second)"
        ),
        ..Section::default()
    };
    for (c, s) in clients.iter().zip(&seconds) {
        let (goal, limit) = if c.name == "boto3" {
            ("≤ 60 s", 60.0)
        } else {
            ("≤ 5 min", 300.0)
        };
        let max = s.iter().copied().fold(0.0, f64::max);
        section.rows.push(Row {
            measure: format!("{}: accept → first call as the new identity", c.name),
            cmdr: format!("median {:.1} s, max {max:.1} s", median(s)),
            baseline: "never (static keys, or the estimated 12 h)".to_owned(),
            ratio: "—".to_owned(),
            target: goal.to_owned(),
            verdict: if max <= limit {
                Verdict::Met
            } else {
                Verdict::Missed(format!("max {max:.0} s"))
            },
        });
    }
    for (family, name, extra) in [
        ("botocore", "boto3 (+ AWS CLI calls)", 0usize),
        ("js-v3", "JavaScript SDK v3", 0),
        ("rust", "Rust SDK", 0),
    ] {
        let n = fetches_after
            .get(family)
            .copied()
            .unwrap_or(0)
            .saturating_sub(fetches_before.get(family).copied().unwrap_or(0))
            + extra;
        section.rows.push(Row::info(
            format!("{name}: endpoint fetches per minute"),
            format!("{:.1}", n as f64 / minutes.max(1e-9)),
        ));
    }
    section.notes.push(format!(
        "The AWS CLI made {cli_calls} calls in all, each one fetch (counted with boto3's, same HTTP client). \
         Lifetimes served (crates/cmdrd/src/endpoint.rs `lifetime_for`): each SDK's refresh window, measured here, plus 45 s."
    ));

    // One fetch against spawning `cmdrctl credential-process`.
    let n = if opts.quick { 50 } else { 500 };
    let mut http = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let code = fetch(&url, &token)?;
        http.push(ms(t.elapsed()));
        if code != 200 {
            bail!("the endpoint answered {code}");
        }
    }
    let m = if opts.quick { 10 } else { 50 };
    let mut spawn = Vec::with_capacity(m);
    for _ in 0..m {
        let t = Instant::now();
        ctl_ok(&sb, &["credential-process", "acme"])?;
        spawn.push(ms(t.elapsed()));
    }
    let p99 = percentile(&http, 99.0);
    section.rows.push(Row {
        measure: format!("one fetch, p50 / p99 ({n} fetches, a new connection each)"),
        cmdr: format!("{} / {}", fmt_ms(median(&http)), fmt_ms(p99)),
        baseline: format!(
            "`cmdrctl credential-process`: {} / {}",
            fmt_ms(median(&spawn)),
            fmt_ms(percentile(&spawn, 99.0))
        ),
        ratio: ratio(median(&spawn), median(&http)),
        target: "p99 < 2 ms".to_owned(),
        verdict: if p99 < 2.0 {
            Verdict::Met
        } else {
            Verdict::Missed(fmt_ms(p99))
        },
    });
    let export = sb
        .command("aws")
        .args(["configure", "export-credentials", "--profile", "acme"])
        .output();
    if !export.is_ok_and(|o| o.status.success()) {
        section.notes.push(
            "`aws configure export-credentials` is not available with the AWS CLI installed here (v1), so it is not compared."
                .to_owned(),
        );
    }
    drop(clients);

    // Memory with 100 clients fetching once a second.
    let pid = sb.pid()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = ProcStats::read(pid)?.rss_kib;
    let secs = if opts.quick { 5 } else { 30 };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..100u64 {
        let (url, token, stop, failures) =
            (url.clone(), token.clone(), stop.clone(), failures.clone());
        threads.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(i * 10));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if fetch(&url, &token).ok() != Some(200) {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }));
    }
    let mut peak = idle;
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(ProcStats::read(pid)?.rss_kib);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let grew = peak.saturating_sub(idle);
    section.rows.push(Row {
        measure: format!("daemon RSS, 100 clients fetching once a second for {secs} s"),
        cmdr: format!("{} peak (+{})", fmt_mib(peak), fmt_mib(grew)),
        baseline: format!("{} idle", fmt_mib(idle)),
        ratio: ratio(peak as f64, idle as f64),
        target: "within 2 MiB of idle".to_owned(),
        verdict: if grew <= 2048 {
            Verdict::Met
        } else {
            Verdict::Missed(format!("+{}", fmt_mib(grew)))
        },
    });
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        section
            .notes
            .push(format!("{failed} of the 100 clients' fetches failed."));
    }
    sb.stop();
    Ok(section)
}

fn wait_for(c: &Client, arn: &str, since: u128, within: Duration) -> anyhow::Result<u128> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(at) = c.first(arn, since) {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("the {} client never answered {arn}", c.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Endpoint fetches served so far, by client family, from the daemon's debug log.
fn count_fetches(log: &str) -> std::collections::BTreeMap<&'static str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("served account credentials")) {
        for family in ["botocore", "js-v3", "rust", "other"] {
            if line.contains(&format!("client=\"{family}\"")) || line.contains(&format!("client={family}")) {
                *out.entry(family).or_insert(0) += 1;
            }
        }
    }
    out
}
