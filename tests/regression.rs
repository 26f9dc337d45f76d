//! One test per fixed bug, by subject; the raw-socket and stdin helpers they share.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;

use serde_json::Value;

use crate::sandbox::Sandbox;

// Watching the files: a broken start, `~/.aws` recreated at once, delete and recreate.
mod files;
// Accounts and their states: reasons, no-op accepts and edits, targets, `auto` accounts.
mod accounts;
// paste: sections without keys, read-only files and backups, environment-variable blocks.
mod paste;
// cmdrctl's input and output: closed pipes, `--json` shapes, malformed values, exit codes.
mod cli;
// The daemon and its socket: another user's daemon, subscribers, one daemon per data dir.
mod daemon;

/// Runs cmdrctl with `input` on stdin; returns its output.
pub fn ctl_with_input(sb: &Sandbox, args: &[&str], input: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = sb
        .command("cmdrctl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A refused option ends cmdrctl before it reads stdin: a broken pipe here is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    child.wait_with_output().expect("wait")
}

/// A raw JSON-lines connection that has said hello.
pub fn json_session(sb: &Sandbox) -> (UnixStream, BufReader<UnixStream>) {
    let mut stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    stream
        .write_all(
            b"{\"hello\":{\"protocol\":1,\"client\":\"regression\",\"client_version\":\"0\"}}\n",
        )
        .expect("hello");
    let welcome = read_json_line(&mut reader).expect("welcome");
    assert!(welcome.get("welcome").is_some(), "{welcome}");
    (stream, reader)
}

pub fn read_json_line(reader: &mut BufReader<UnixStream>) -> Option<Value> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(serde_json::from_str(&line).expect("a JSON line")),
    }
}
