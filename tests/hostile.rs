//! Hostile and careless clients against the real daemon: random bytes, half frames, a
//! thousand connections at once, connect/disconnect storms, a subscriber that never reads,
//! the connection cap. Afterwards `status` still answers and memory stays bounded.
//! Then hostile files (FIFOs, devices, a crowded SSO cache), a stopped daemon, answers
//! over the frame limit, floods that would lock clients out, and control characters.
//! `CMDR_LONG_TESTS=1` runs the long variants (figures in docs/reliability.md).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cmdr_testkit::Rng;
use cmdr_testkit::sys::{self, Signal};
use serde_json::{Value, json};

use crate::sandbox::{Sandbox, creds, scale};

/// The daemon's resident memory in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Lets this process (and the daemon it spawns) open a few thousand sockets.
pub fn raise_fd_limit() {
    sys::raise_nofile(8192);
}

/// `status` answers within `WAIT` and says the daemon is running; returns how long it took.
pub fn status_answers(sb: &Sandbox) -> Duration {
    let start = Instant::now();
    let status = sb.json(&["status"]);
    assert!(status.is_object(), "{status}");
    start.elapsed()
}

pub fn connect(sb: &Sandbox) -> UnixStream {
    let stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

fn hello_line() -> Vec<u8> {
    let mut line = serde_json::to_vec(
        &json!({"hello": {"protocol": 1, "client": "hostile", "client_version": "0"}}),
    )
    .expect("json");
    line.push(b'\n');
    line
}

/// Opens a JSON session and reads the first answer (`welcome` or `refused`).
pub fn session(sb: &Sandbox) -> (UnixStream, Value) {
    let mut stream = connect(sb);
    stream.write_all(&hello_line()).expect("hello");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("read welcome");
    let value = serde_json::from_str(&line).unwrap_or(Value::Null);
    (stream, value)
}

/// Subscribes a JSON session and waits for the answer.
fn subscribe(stream: &mut UnixStream) {
    stream
        .write_all(b"{\"request\":{\"id\":1,\"request\":\"subscribe\"}}\n")
        .expect("subscribe");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("subscribed");
    assert!(line.contains("subscribed"), "{line}");
}

/// Records RSS before and after, and fails if it grew by 64 MiB or more.
fn rss_did_not_grow(before: u64, after: u64) {
    figure("rss before/after KiB", format!("{before}/{after}"));
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

fn figure(what: &str, value: impl std::fmt::Display) {
    eprintln!("figure: {what}: {value}");
}

#[test]
fn random_bytes_and_half_frames_close_only_their_connection() {
    let mut sb = Sandbox::with_profile("TOKEN-HOSTILE-ONE");
    sb.start();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);
    let mut rng = Rng::seeded();
    let rounds = scale(300, 5_000);
    let mut open = Vec::new();
    for round in 0..rounds {
        let mut stream = connect(&sb);
        let mut bytes = match round % 5 {
            // Pure noise.
            0 => rng.noise(4096),
            // A binary header announcing more than ever comes.
            1 => {
                let len = 64 + rng.below(1 << 19) as u32;
                let mut b = len.to_be_bytes().to_vec();
                b.extend(rng.noise(32));
                b
            }
            // Half a JSON hello.
            2 => {
                let line = hello_line();
                line[..1 + rng.below(line.len() - 2)].to_vec()
            }
            // A 4 GiB length prefix.
            3 => vec![0xff, 0xff, 0xff, 0xff, 0],
            // A valid hello, then noise.
            _ => {
                let mut b = hello_line();
                b.extend(rng.noise(512));
                b
            }
        };
        if round % 7 == 0 {
            bytes.truncate(1);
        }
        let _ = stream.write_all(&bytes);
        // Some stay open, half-written, while the others come and go.
        if round % 10 == 0 {
            open.push(stream);
        }
    }
    assert!(status_answers(&sb) < Duration::from_secs(15));
    // Every half-open connection is closed by the daemon (hello timeout or bad frame).
    for mut stream in open.drain(..) {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    let took = status_answers(&sb);
    let after = rss_kib(pid);
    figure("random/half-frame connections", rounds);
    figure("status after, ms", took.as_millis());
    rss_did_not_grow(before, after);
}

#[test]
fn a_thousand_connections_at_once() {
    raise_fd_limit();
    let mut sb = Sandbox::new();
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\nmax_connections = 1100\n");
    sb.start();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);
    let count = 1000;
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = connect(&sb);
        stream.write_all(&hello_line()).expect("hello");
        streams.push(stream);
    }
    for stream in &streams {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("welcome");
        assert!(line.contains("\"welcome\""), "{line}");
    }
    // All 1000 are open and welcomed; one more client still gets an answer.
    let took = status_answers(&sb);
    let during = rss_kib(pid);
    drop(streams);
    let took_after = status_answers(&sb);
    let after = rss_kib(pid);
    figure("simultaneous sessions", count);
    figure("status with 1000 open, ms", took.as_millis());
    figure("status after close, ms", took_after.as_millis());
    figure(
        "rss before/during/after KiB",
        format!("{before}/{during}/{after}"),
    );
    assert!(during < before + 128 * 1024, "RSS {before} -> {during} KiB");
}

#[test]
fn connect_disconnect_storm() {
    let mut sb = Sandbox::new();
    sb.start();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);
    let cycles = scale(2_000, 10_000);
    let start = Instant::now();
    for cycle in 0..cycles {
        if cycle % 2 == 0 {
            // Connect and hang up at once.
            drop(connect(&sb));
        } else {
            let (stream, welcome) = session(&sb);
            assert!(welcome.get("welcome").is_some(), "{welcome}");
            drop(stream);
        }
    }
    let elapsed = start.elapsed();
    let took = status_answers(&sb);
    // The sessions are gone: only this status connection was counted.
    let after = rss_kib(pid);
    figure("connect/disconnect cycles", cycles);
    figure("cycles per second", cycles as f64 / elapsed.as_secs_f64());
    figure("status after, ms", took.as_millis());
    rss_did_not_grow(before, after);
}

#[test]
fn connection_cap_refuses_clearly_and_recovers() {
    let mut sb = Sandbox::new();
    sb.write_cmdr_config("[daemon]\nvalidate_on_change = false\nmax_connections = 3\n");
    sb.start();
    // Subscribed sessions are never shed for a newcomer (idle ones are: see
    // `floods_of_silent_clients_do_not_lock_anyone_out`).
    let mut held: Vec<UnixStream> = (0..3)
        .map(|_| {
            let (mut stream, welcome) = session(&sb);
            assert!(welcome.get("welcome").is_some(), "{welcome}");
            subscribe(&mut stream);
            stream
        })
        .collect();
    // A raw client is told why.
    let (_extra, refused) = session(&sb);
    let message = refused["refused"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("too many connections") && message.contains('3'),
        "{refused}"
    );
    // So is cmdrctl, with a failing exit code.
    let out = sb.ctl(&["status"]);
    assert!(!out.status.success());
    assert!(
        crate::sandbox::stderr(&out).contains("too many connections"),
        "{}",
        crate::sandbox::stderr(&out)
    );
    // A slot frees up as soon as one session ends.
    held.pop();
    sb.wait_until("a free slot", || sb.ctl(&["status"]).status.success());
    assert!(sb.log_text().contains("too many connections"));
}

#[test]
fn subscriber_that_never_reads_keeps_memory_bounded() {
    let profiles = 200;
    let many = |round: usize| -> String {
        (0..profiles)
            .map(|p| creds(&format!("p{p}"), &format!("TOKEN-R{round}-{p}")))
            .collect()
    };
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    sb.write_credentials(&many(0));
    sb.start();
    let pid = sb.pid().expect("pid");
    // Several stuck subscribers: subscribed, then never read again.
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let (mut stream, welcome) = session(&sb);
        assert!(welcome.get("welcome").is_some());
        stream
            .write_all(b"{\"request\":{\"id\":1,\"request\":\"subscribe\"}}\n")
            .expect("subscribe");
        stuck.push(stream);
    }
    let mut watch = sb.watch();
    let before = rss_kib(pid);
    let rounds = scale(15, 150);
    for round in 1..=rounds {
        sb.write_credentials(&many(round));
        watch.wait_for("last profile of the round", |e| {
            e["type"] == "profile_changed" && e["profile"] == format!("p{}", profiles - 1)
        });
    }
    let took = status_answers(&sb);
    let after = rss_kib(pid);
    figure("events while 4 subscribers never read", rounds * profiles);
    figure("status after, ms", took.as_millis());
    rss_did_not_grow(before, after);
    drop(stuck);
}

// ---- Hostile files, a stopped daemon, big answers, lock-outs, control characters ----

/// How long a command may take before the test calls it hung (a guard, not a measure).
const HUNG: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion, killing it and failing the test if it is still running after
/// [`HUNG`]: the defects here were hangs.
fn bounded(cmd: std::process::Command, what: &str) -> std::process::Output {
    bounded_with_input(cmd, what, b"")
}

/// [`bounded`], with `input` on standard input.
fn bounded_with_input(
    mut cmd: std::process::Command,
    what: &str,
    input: &[u8],
) -> std::process::Output {
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("stdin");
    }
    // Drained meanwhile: a big answer must not fill the pipe and stall the child.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > HUNG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

fn ctl_bounded(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut cmd = sb.command("cmdrctl");
    cmd.args(args);
    bounded(cmd, &format!("cmdrctl {}", args.join(" ")))
}

/// `cmdrctl paste --profile acme` with a valid block on stdin.
fn paste_bounded(sb: &Sandbox) -> std::process::Output {
    let mut cmd = sb.command("cmdrctl");
    cmd.args(["paste", "--profile", "acme"]);
    let block = b"aws_access_key_id = ASIAPASTEDHOSTILE\naws_secret_access_key = pasted-hostile-secret\naws_session_token = pasted-hostile-token\n";
    bounded_with_input(cmd, "cmdrctl paste", block)
}

fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// The `health`/`error` of one file in `status --json`.
fn file_error(sb: &Sandbox, kind: &str) -> Option<String> {
    let status = sb.json(&["status"]);
    status["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["kind"] == kind))
        .and_then(|f| f["error"].as_str().map(str::to_owned))
}

fn profile_names(sb: &Sandbox) -> Vec<String> {
    sb.json(&["profiles"])
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fifos_never_hang_the_daemon_doctor_or_paste() {
    // At start: both AWS files are FIFOs with no writer.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    mkfifo(&sb.credentials());
    mkfifo(&sb.config());
    sb.start();
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("not a regular file")
    );
    assert_eq!(
        file_error(&sb, "config").as_deref(),
        Some("not a regular file")
    );
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(!doctor.status.success());
    assert!(
        crate::sandbox::stdout(&doctor).contains("not a regular file"),
        "{}",
        crate::sandbox::stdout(&doctor)
    );
    let paste = paste_bounded(&sb);
    assert!(!paste.status.success());
    assert!(
        crate::sandbox::stderr(&paste).contains("not a regular file"),
        "{}",
        crate::sandbox::stderr(&paste)
    );
    assert_eq!(sb.stop(), Some(0));

    // While running: a good file replaced by a FIFO keeps the last good view, reports
    // the error, and the watcher still sees the other file and shuts down on SIGTERM.
    let mut sb = Sandbox::with_profile("TOKEN-FIFO-ONE");
    sb.start();
    let mut watch = sb.watch();
    mkfifo(&sb.credentials());
    let event = watch.wait_type("file_error");
    assert_eq!(event["message"], "not a regular file", "{event}");
    assert_eq!(profile_names(&sb), ["acme"]);
    std::fs::write(sb.config(), "[profile other]\nregion = eu-west-1\n").expect("config");
    watch.wait_for("the config still watched", |e| {
        e["type"] == "profile_added" && e["profile"] == "other"
    });
    // Binding a profile reads the files in the engine: that must not hang either.
    let add = ctl_bounded(&sb, &["accounts", "add", "o", "--profile", "other"]);
    assert!(add.status.success(), "{}", crate::sandbox::stderr(&add));
    assert!(status_answers(&sb) < HUNG);
    // (Writing into the FIFO would block this test: replace it.)
    std::fs::remove_file(sb.credentials()).expect("rm fifo");
    sb.write_credentials(&creds("acme", "TOKEN-FIFO-TWO"));
    watch.wait_type("file_recovered");
    drop(watch);
    assert_eq!(sb.stop(), Some(0));

    // A FIFO at state.json: cmdrd says so and exits instead of never becoming ready.
    let sb = Sandbox::new();
    std::fs::create_dir_all(&sb.data_dir).expect("data");
    mkfifo(&sb.state_file());
    let out = bounded(sb.command("cmdrd"), "cmdrd with a FIFO state file");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        crate::sandbox::stdout(&out),
        crate::sandbox::stderr(&out)
    );
    assert!(text.contains("not a regular file"), "{text}");
    // (The sandbox reads the state file when dropped.)
    std::fs::remove_file(sb.state_file()).expect("rm fifo");
    figure("FIFO cases that returned", 6);
}

/// Every line of the daemon's log that says it read the watched files.
fn reads_logged(sb: &Sandbox) -> usize {
    sb.log_text().matches("reading the watched files").count()
}

#[test]
fn devices_are_refused_and_churn_beside_a_target_is_not_reread() {
    // `credentials -> /dev/zero`: refused at once, memory stays put.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::os::unix::fs::symlink("/dev/zero", sb.credentials()).expect("symlink");
    sb.start();
    let pid = sb.pid().expect("pid");
    let before = rss_kib(pid);
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("not a regular file")
    );
    // `/dev` is watched now; closing /dev/null after writing wakes the watcher each time.
    let reads = reads_logged(&sb);
    for _ in 0..scale(200, 2_000) {
        std::fs::write("/dev/null", b"x").expect("/dev/null");
    }
    assert!(status_answers(&sb) < HUNG);
    let after = rss_kib(pid);
    rss_did_not_grow(before, after);
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(crate::sandbox::stdout(&doctor).contains("not a regular file"));
    // Oversized regular files: refused while reading, by doctor and paste as well.
    drop(sb);
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let big = std::fs::File::create(sb.credentials()).expect("create");
    big.set_len(2 << 30).expect("sparse 2 GiB");
    sb.start();
    assert_eq!(
        file_error(&sb, "credentials").as_deref(),
        Some("file is larger than 64 MiB")
    );
    let doctor = ctl_bounded(&sb, &["doctor"]);
    assert!(crate::sandbox::stdout(&doctor).contains("file is larger than 64 MiB"));
    let paste = paste_bounded(&sb);
    assert!(!paste.status.success());
    assert!(crate::sandbox::stderr(&paste).contains("file is larger than 64 MiB"));
    drop(sb);

    // A symlink into a busy directory: churn there is not turned into re-reads.
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let busy = sb.home.join("busy");
    std::fs::create_dir_all(&busy).expect("busy");
    std::fs::write(busy.join("credentials"), creds("acme", "TOKEN-BUSY-ONE")).expect("write");
    sb.remember_secrets(&creds("acme", "TOKEN-BUSY-ONE"));
    std::os::unix::fs::symlink(busy.join("credentials"), sb.credentials()).expect("symlink");
    sb.start();
    // Kept: the clock must pass the file's change time by the daemon's 1 s timestamp grain
    // before a read counts as settled (watch/read.rs `Stamp`); no event says so.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(busy.join("nudge"), b"x").expect("nudge");
    let mut watch = sb.watch();
    let churn = scale(300, 3_000);
    let start_reads = reads_logged(&sb);
    for i in 0..churn {
        let other = busy.join(format!("other-{i}"));
        std::fs::write(&other, b"x").expect("churn");
        std::fs::remove_file(&other).expect("churn");
    }
    // A real change is still seen, through the link.
    let text = creds("acme", "TOKEN-BUSY-TWO");
    sb.remember_secrets(&text);
    std::fs::write(busy.join("credentials"), text).expect("write");
    watch.wait_type("profile_changed");
    let churn_reads = reads_logged(&sb) - start_reads;
    figure(
        "/dev/null closes, reads of the files",
        reads_logged(&sb) - reads,
    );
    figure("churn events beside the target, reads", churn_reads);
    assert!(
        churn_reads <= 3,
        "{churn_reads} reads for {churn} churn events"
    );
}

#[test]
fn clients_give_up_on_a_stopped_daemon() {
    let mut sb = Sandbox::with_profile("TOKEN-STOPPED-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let pid = sb.pid().expect("pid");
    sys::signal(pid, Signal::Stop).expect("SIGSTOP");
    let prompt = ctl_bounded(&sb, &["prompt"]);
    let hook = ctl_bounded(&sb, &["env", "acme", "--if-changed", "sha256:none"]);
    let status = ctl_bounded(&sb, &["status"]);
    sys::signal(pid, Signal::Cont).expect("SIGCONT");
    assert_eq!(prompt.status.code(), Some(3));
    assert!(
        prompt.stdout.is_empty() && prompt.stderr.is_empty(),
        "{prompt:?}"
    );
    assert_eq!(hook.status.code(), Some(3));
    assert!(hook.stdout.is_empty() && hook.stderr.is_empty(), "{hook:?}");
    assert_eq!(status.status.code(), Some(3));
    assert!(
        crate::sandbox::stderr(&status).contains("did not answer within"),
        "{}",
        crate::sandbox::stderr(&status)
    );
    // And everything works again once it runs.
    assert!(status_answers(&sb) < HUNG);
}

#[test]
fn answers_over_the_frame_limit_arrive() {
    let profiles = scale(12_000, 100_000);
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let mut config = String::new();
    for p in 0..profiles {
        config.push_str(&format!(
            "[profile a-rather-long-profile-name-to-fill-the-frame-{p:06}]\nregion = eu-west-1\noutput = json\n"
        ));
    }
    std::fs::write(sb.config(), &config).expect("config");
    sb.start();
    let out = ctl_bounded(&sb, &["profiles", "--json"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    assert!(out.stdout.len() > 1 << 20, "{} bytes", out.stdout.len());
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(profiles));
    figure("profiles listed in one answer", profiles);
    figure("answer bytes (JSON output)", out.stdout.len());
}

/// Lists of any length come a page at a time: each page is within the frame limit that
/// requests have, in name order, every item once, and cmdrctl's `profiles`, `accounts
/// list` (and `prompt`, within its 200 ms) walk them. The accounts are in the state file before the start,
/// as that many `accounts add` calls leave them.
#[test]
fn lists_of_any_length_come_in_pages() {
    let profiles = scale(12_000, 100_000);
    let accounts = scale(3_000, 10_000);
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let mut config = String::new();
    for p in 0..profiles {
        config.push_str(&format!("[profile page-{p:06}]\nregion = eu-west-1\n"));
    }
    std::fs::write(sb.config(), &config).expect("config");
    let stored: Vec<Value> = (0..accounts)
        .map(|a| {
            json!({
                "name": format!("acct-{a:05}"),
                "profile": format!("page-{:06}", a % profiles),
                "region": null,
                "target": {"kind": "aws"},
                "on_change": "ask",
                "accepted_fingerprint": null,
                "accepted_at": null,
            })
        })
        .collect();
    std::fs::create_dir_all(sb.state_file().parent().expect("data")).expect("data dir");
    let state = json!({"version": 1, "accounts": stored, "seen": {}});
    std::fs::write(sb.state_file(), state.to_string()).expect("state");
    sb.start();

    for (request, total) in [("profiles_page", profiles), ("accounts_page", accounts)] {
        let (mut stream, welcome) = session(&sb);
        assert!(
            welcome["welcome"]["features"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("pages"))),
            "{welcome}"
        );
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let (mut after, mut names, mut pages, mut largest) = (Value::Null, Vec::new(), 0, 0);
        loop {
            pages += 1;
            let ask = json!({"request": {"id": pages, "request": {request: {"after": after, "limit": 5000}}}});
            stream
                .write_all(format!("{ask}\n").as_bytes())
                .expect("ask");
            let mut line = String::new();
            reader.read_line(&mut line).expect("page");
            largest = largest.max(line.len());
            assert!(
                line.len() <= cmdr_proto::MAX_FRAME_LEN,
                "{} bytes",
                line.len()
            );
            let answer: Value = serde_json::from_str(&line).expect("json");
            let page = &answer["response"]["outcome"]["ok"][request];
            let items = page["items"].as_array().expect("items");
            assert!(items.len() <= cmdr_proto::MAX_PAGE_ITEMS as usize);
            names.extend(
                items
                    .iter()
                    .map(|i| i["name"].as_str().expect("name").to_owned()),
            );
            match &page["next"] {
                Value::Null => break,
                next => after = next.clone(),
            }
        }
        assert_eq!(names.len(), total, "{request}");
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "{request}: not in order"
        );
        figure(
            &format!("{request}: items, pages, largest page bytes"),
            format!("{total}, {pages}, {largest}"),
        );
    }

    let count = |args: &[&str]| {
        let out = ctl_bounded(&sb, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            crate::sandbox::stderr(&out)
        );
        let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
        listed.as_array().map(Vec::len)
    };
    assert_eq!(count(&["profiles", "--json"]), Some(profiles));
    assert_eq!(count(&["accounts", "list", "--json"]), Some(accounts));
}

/// Regression (hostile round on pages): a 2 MiB profile name made `cmdrctl profiles` list
/// nothing, since the cursor after it was over the request's frame limit. The cursor is
/// now the shortest string between two names.
#[test]
fn a_huge_profile_name_does_not_stop_the_list() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    let huge = format!("m{}", "x".repeat(2 << 20));
    let config: String = ["a1", "a2", huge.as_str(), "z1", "z2"]
        .iter()
        .map(|name| format!("[profile {name}]\nregion = us-east-1\n"))
        .collect();
    std::fs::write(sb.config(), config).expect("config");
    sb.start();
    let out = ctl_bounded(&sb, &["profiles", "--json"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<usize> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().map_or(0, str::len))
        .collect();
    assert_eq!(names, [2, 2, huge.len(), 2, 2]);
    let table = ctl_bounded(&sb, &["profiles"]);
    assert!(table.status.success(), "{}", crate::sandbox::stderr(&table));
}

/// Sessions that said hello and went quiet.
fn quiet_sessions(sb: &Sandbox, n: usize) -> Vec<UnixStream> {
    (0..n)
        .map(|_| {
            let mut stream = connect(sb);
            stream.write_all(&hello_line()).expect("hello");
            stream
        })
        .collect()
}

fn warnings_about_connections(sb: &Sandbox) -> usize {
    sb.log_text()
        .lines()
        .filter(|l| {
            l.contains("WARN")
                && (l.contains("too many connections")
                    || l.contains("to make room")
                    || l.contains("accept failed"))
        })
        .count()
}

#[test]
fn floods_of_silent_clients_do_not_lock_anyone_out() {
    raise_fd_limit();
    let mut sb = Sandbox::with_profile("TOKEN-FLOOD-ONE");
    sb.start();
    // 300 clients that say hello and go quiet, over the default 256 slots.
    let quiet = quiet_sessions(&sb, 300);
    let status = ctl_bounded(&sb, &["status"]);
    assert!(
        status.status.success(),
        "{}",
        crate::sandbox::stderr(&status)
    );
    // 2,000 connections that never say hello.
    let silent: Vec<UnixStream> = (0..scale(2_000, 5_000)).map(|_| connect(&sb)).collect();
    let status = ctl_bounded(&sb, &["status"]);
    assert!(
        status.status.success(),
        "{}",
        crate::sandbox::stderr(&status)
    );
    let warnings = warnings_about_connections(&sb);
    figure("connection warnings logged during the floods", warnings);
    assert!(warnings <= 6, "{warnings} warning lines");
    drop((quiet, silent));

    // Under a descriptor limit of 256, 400 clients: still served, and a token change is
    // read (no false "Too many open files").
    let mut sb = Sandbox::with_profile("TOKEN-FLOOD-TWO");
    sb.daemon_wrapper = vec!["prlimit".into(), "--nofile=256".into(), "--".into()];
    sb.start();
    let mut watch = sb.watch();
    let quiet = quiet_sessions(&sb, 400);
    let status = ctl_bounded(&sb, &["status"]);
    assert!(
        status.status.success(),
        "{}",
        crate::sandbox::stderr(&status)
    );
    sb.write_credentials(&creds("acme", "TOKEN-FLOOD-THREE"));
    watch.wait_type("profile_changed");
    assert_eq!(file_error(&sb, "credentials"), None);
    // A burst may briefly find no descriptor for `accept` (the connection waits in the
    // backlog): that is logged, throttled, but never taken for a problem with the files.
    let log = sb.log_text();
    assert!(!log.contains("keeping the last good view"), "{log}");
    let accept_warnings = log.lines().filter(|l| l.contains("accept failed")).count();
    figure(
        "accept warnings under --nofile=256 with 400 clients",
        accept_warnings,
    );
    assert!(accept_warnings <= 3, "{accept_warnings}");
    drop(quiet);
}

#[test]
fn control_characters_are_escaped_in_output_and_logs() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile evil]\nregion = eu-west-1\u{1b}[2J\u{1b}[31mFAKE\racme  ok\n",
    )
    .expect("config");
    sb.start();
    for args in [&["profiles"][..], &["doctor"]] {
        let out = ctl_bounded(&sb, args);
        let text = crate::sandbox::stdout(&out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "{args:?}: {text:?}"
        );
        if args == ["profiles"] {
            assert!(text.contains("eu-west-1\\e[2J\\e[31mFAKE\\racme"), "{text}");
        }
    }
    let add = ctl_bounded(&sb, &["accounts", "add", "e", "--profile", "evil"]);
    assert!(add.status.success(), "{}", crate::sandbox::stderr(&add));
    for args in [
        &["accounts", "list"][..],
        &["accounts", "show", "e"],
        &["prompt", "--format", "{region}"],
    ] {
        let out = ctl_bounded(&sb, args);
        let text = crate::sandbox::stdout(&out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "{args:?}: {text:?}"
        );
    }
    // A hello whose client name holds a newline cannot forge a log line.
    let mut stream = connect(&sb);
    let hello = json!({"hello": {"protocol": 1, "client": "x\nFORGED log line\u{1b}[2J", "client_version": "0"}});
    let mut line = serde_json::to_vec(&hello).expect("json");
    line.push(b'\n');
    stream.write_all(&line).expect("hello");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut welcome = String::new();
    reader.read_line(&mut welcome).expect("welcome");
    drop(stream);
    sb.wait_until("the hello logged", || sb.log_text().contains("FORGED"));
    let log = sb.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")) && !log.contains('\u{1b}'),
        "{log}"
    );
}

/// Profile `s` on SSO session `corp` in the config; the name of its token's cache file.
fn sso_profile(sb: &Sandbox) -> String {
    std::fs::write(
        sb.config(),
        "[profile s]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = R\n\
         [sso-session corp]\nsso_start_url = https://corp.example/start\nsso_region = eu-west-1\n",
    )
    .expect("config");
    let name = std::process::Command::new("sh")
        .args(["-c", "printf corp | sha1sum | cut -d' ' -f1"])
        .output()
        .expect("sha1sum");
    format!("{}.json", String::from_utf8_lossy(&name.stdout).trim())
}

#[test]
fn sso_tokens_the_config_names_are_read_however_crowded_the_cache() {
    let mut sb = Sandbox::new();
    let cache = sb.aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("cache");
    for i in 0..1_000 {
        std::fs::write(cache.join(format!("{i:05}.json")), "{}").expect("junk");
    }
    let name = sso_profile(&sb);
    std::fs::write(
        cache.join(&name),
        r#"{"accessToken": "SSO-ACCESS-TOKEN-VALUE", "expiresAt": "2099-01-01T00:00:00Z"}"#,
    )
    .expect("token");
    sb.start();
    let profiles = sb.json(&["profiles"]);
    let s = profiles
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "s"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(s["expiry_source"], "sso_cache", "{s}");
    assert!(!sb.log_text().contains("SSO-ACCESS-TOKEN-VALUE"));
}

/// A token file the config names that is garbage, or larger than any real token, is a
/// `file_error` naming that file (and `status` says so), never silence; a good one again
/// is `file_recovered`. The file's contents never reach the message.
#[test]
fn a_bad_or_oversized_sso_token_file_is_a_file_error() {
    let mut sb = Sandbox::new();
    let cache = sb.aws.join("sso/cache");
    std::fs::create_dir_all(&cache).expect("cache");
    let name = sso_profile(&sb);
    let token = cache.join(&name);
    std::fs::write(&token, "GARBAGE-SSO-CONTENT").expect("garbage");
    sb.start();
    let status = sb.json(&["status"]);
    let sso = status["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == "sso_cache"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(sso["health"], "error", "{sso}");
    assert!(
        sso["error"]
            .as_str()
            .is_some_and(|e| e.contains(&name) && e.contains("not valid JSON")),
        "{sso}"
    );

    let mut watch = sb.watch();
    std::fs::write(
        &token,
        r#"{"accessToken": "SSO-TOKEN-VALUE", "expiresAt": "2099-01-01T00:00:00Z"}"#,
    )
    .expect("good");
    let recovered = watch.wait_type("file_recovered");
    assert!(
        recovered["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(&name)),
        "{recovered}"
    );

    // Larger than any token: refused while reading, reported with its path.
    let mut big = vec![b' '; 2 << 20];
    big[0] = b'{';
    std::fs::write(&token, &big).expect("big");
    let error = watch.wait_type("file_error");
    assert!(
        error["path"].as_str().is_some_and(|p| p.ends_with(&name)),
        "{error}"
    );
    let text = serde_json::to_string(&watch.seen).expect("events");
    assert!(!text.contains("GARBAGE-SSO-CONTENT") && !text.contains("SSO-TOKEN-VALUE"));
    assert!(!sb.log_text().contains("GARBAGE-SSO-CONTENT"));
}

#[test]
fn doctor_json_redacts_secrets_at_every_depth() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws");
    std::fs::write(
        sb.config(),
        "[profile p]\nregion = eu-west-1\ns3 =\n  aws_secret_access_key = NESTED-SECRET-VALUE\n  max_concurrent_requests = 20\n",
    )
    .expect("config");
    let _ = &mut sb;
    let out = ctl_bounded(&sb, &["doctor", "--json"]);
    let text = crate::sandbox::stdout(&out);
    assert!(!text.contains("NESTED-SECRET-VALUE"), "{text}");
    assert!(text.contains("max_concurrent_requests"), "{text}");
}

#[test]
fn the_access_key_id_is_not_logged_even_at_trace() {
    let moto = cmdr_testkit::Moto::start(&[]).expect("moto_server");
    let mut sb = Sandbox::with_profile("TOKEN-TRACE-ONE");
    sb.start();
    sb.add_account("acme", &["--endpoint", &moto.url, "--region", "eu-west-1"]);
    let out = sb.ctl(&["validate", "acme", "--json"]);
    assert!(out.status.success(), "{}", crate::sandbox::stderr(&out));
    // RUST_LOG=trace (the sandbox's): the SDK's own trace lines show the key id in full.
    let log = sb.log_text();
    assert!(log.contains("TRACE"), "the log is at trace level");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("AKIAIOSFODNN7EXAMPLE"))
        .collect();
    assert!(
        lines.is_empty(),
        "the full access key id is logged: {lines:#?}"
    );
}

const NVIM_STOPPED: &str = r#"
vim.g.cmdr_no_autostart = true
vim.opt.rtp:prepend(PLUGIN_DIR)
vim.cmd('runtime plugin/cmdr.lua')
local cmdr = require('cmdr')
local function write(line)
  local f = io.open(OUT, 'a'); f:write(line .. '\n'); f:close()
end
vim.notify = function() end
local function wait(what, cond)
  if not vim.wait(30000, cond, 20) then write('FAIL ' .. what); vim.cmd('cquit 1') end
end
cmdr.setup({ socket = SOCKET, reconnect = 1, timeout = 1 })
wait('connect', function() return cmdr.state.connected end)
write('ready')
wait('stopped', function() return (vim.uv or vim.loop).fs_stat(STOPPED) ~= nil end)
local answer
cmdr.request('status', function(ok, value) answer = { ok = ok, message = value and value.message } end)
wait('answer', function() return answer ~= nil end)
write('answer ' .. tostring(answer.ok) .. ' ' .. tostring(answer.message) .. ' [' .. cmdr.statusline() .. ']')
vim.cmd('qall!')
"#;

#[test]
fn the_neovim_plugin_gives_up_on_a_stopped_daemon() {
    if !cmdr_testkit::skip::need("nvim", "Debian package `neovim`") {
        return;
    }
    let lua = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut sb = Sandbox::with_profile("TOKEN-NVIM-STOPPED");
    sb.start();
    let out = sb.root.join("nvim.out");
    let stopped = sb.root.join("stopped");
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/../editors/nvim");
    let script = NVIM_STOPPED
        .replace("PLUGIN_DIR", &lua(plugin))
        .replace("SOCKET", &lua(&sb.socket().display().to_string()))
        .replace("STOPPED", &lua(&stopped.display().to_string()))
        .replace("OUT", &lua(&out.display().to_string()));
    let script_path = sb.root.join("test.lua");
    std::fs::write(&script_path, script).expect("script");
    let mut nvim = sb.external("nvim");
    nvim.args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script_path.display()));
    let nvim = std::thread::spawn(move || bounded(nvim, "nvim"));
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    sb.wait_until("nvim connected", || read().contains("ready"));
    let pid = sb.pid().expect("pid");
    sys::signal(pid, Signal::Stop).expect("SIGSTOP");
    std::fs::write(&stopped, b"").expect("stopped");
    let status = nvim.join();
    let Ok(status) = status else {
        panic!("nvim hung; it wrote:\n{}", read());
    };
    sys::signal(pid, Signal::Cont).expect("SIGCONT");
    let text = read();
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("answer false cmdrd did not answer within 1 s"),
        "{text}"
    );
}
