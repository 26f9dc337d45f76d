//! `cmdrctl hook`: a long-lived interactive shell picks up the accepted token at its next
//! prompt.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc;

use cmdr_testkit::skip::need;

use crate::sandbox::{Sandbox, WAIT, bin, creds};

/// Sends `line` and returns the value printed as `T<value>` (skipping the echo of the
/// command itself, which shows `T<%s>`; a pty may add escape codes around it).
fn ask(stdin: &mut ChildStdin, lines: &mpsc::Receiver<String>, line: &str) -> String {
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.flush().expect("flush");
    loop {
        let got = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no `T<...>` line from the shell"));
        let mut rest = got.as_str();
        while let Some(start) = rest.find("T<") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('>') else { break };
            let value = &after[..end];
            if value.starts_with("TOKEN-") {
                return value.to_owned();
            }
            rest = &after[end..];
        }
    }
}

fn interactive(
    sb: &Sandbox,
    program: &str,
    args: &[&str],
) -> Option<(std::process::Child, ChildStdin, mpsc::Receiver<String>)> {
    let mut child = sb
        .external(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Some((child, stdin, rx))
}

fn run_hook_scenario(program: &str, args: &[&str], shell: &str) {
    if !need(shell, &format!("Debian package `{shell}`")) || !need(program, "util-linux") {
        return;
    }
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let ctl = bin("cmdrctl").display().to_string();
    let Some((mut child, mut stdin, lines)) = interactive(&sb, program, args) else {
        panic!("{program} did not start");
    };
    let (setup, show) = match shell {
        "fish" => (
            format!("'{ctl}' hook fish | source; '{ctl}' env acme --shell fish | source\n"),
            "printf 'T<%s>\\n' $AWS_SESSION_TOKEN\n",
        ),
        _ => (
            format!(
                "eval \"$('{ctl}' hook {shell})\"; eval \"$('{ctl}' env acme --shell {shell})\"\n"
            ),
            "printf 'T<%s>\\n' \"$AWS_SESSION_TOKEN\"\n",
        ),
    };
    stdin.write_all(setup.as_bytes()).expect("setup");
    let before = ask(&mut stdin, &lines, show);
    assert_eq!(before, "TOKEN-ONE");

    let mut watch = sb.watch();
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    watch.wait_type("token_changed");
    // Not accepted yet: the shell keeps the accepted token.
    let still = ask(&mut stdin, &lines, &format!("\n{show}"));
    assert_eq!(still, "TOKEN-ONE");
    assert!(sb.ctl(&["accept", "acme"]).status.success());
    // The next prompt refreshes the environment.
    let after = ask(&mut stdin, &lines, &format!("\n{show}"));
    assert_eq!(after, "TOKEN-TWO", "{shell}");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bash_prompt_hook_picks_up_the_accepted_token() {
    run_hook_scenario("bash", &["--norc", "--noprofile", "-i"], "bash");
}

#[test]
fn zsh_prompt_hook_picks_up_the_accepted_token() {
    run_hook_scenario("zsh", &["-f", "-i"], "zsh");
}

#[test]
fn fish_prompt_hook_picks_up_the_accepted_token() {
    // fish fires `fish_prompt` only on a terminal: run it on a pty through `script`.
    run_hook_scenario(
        "script",
        &["-qfc", "fish -i --no-config", "/dev/null"],
        "fish",
    );
}
