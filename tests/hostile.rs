//! Hostile and careless clients against the real daemon: random bytes, half frames, a
//! thousand connections at once, connect/disconnect storms, a subscriber that never reads,
//! the connection cap. Afterwards `status` still answers and memory stays bounded.
//! `CMDR_LONG_TESTS=1` runs the long variants (figures in docs/reliability.md).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sandbox::{Sandbox, creds};

/// The long variants run only with `CMDR_LONG_TESTS=1`.
pub fn long() -> bool {
    std::env::var_os("CMDR_LONG_TESTS").is_some_and(|v| v != "0")
}

/// `short` normally, `long` with `CMDR_LONG_TESTS=1`.
pub fn scale(short: usize, long_: usize) -> usize {
    if long() { long_ } else { short }
}

/// A small deterministic generator: failures print the seed that reproduces them.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("CMDR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("seed: CMDR_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// 1 to `max` random bytes.
    pub fn noise(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        self.bytes(n)
    }
}

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
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < 8192 {
            limit.rlim_cur = limit.rlim_max.min(8192);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
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
    let mut held: Vec<UnixStream> = (0..3)
        .map(|_| {
            let (stream, welcome) = session(&sb);
            assert!(welcome.get("welcome").is_some(), "{welcome}");
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
