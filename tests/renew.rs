//! Renew: an account's portal (`--portal`, by default the profile's or its sso-session's
//! `sso_start_url`) in `accounts list --json`; `cmdrctl renew` with recorders on PATH
//! standing in for `xdg-open` and `aws` (they must receive the portal URL and
//! `sso login --profile P`); portal URLs checked where they enter (CLI and socket);
//! `paste --clipboard` with a real xclip under Xvfb.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cmdr_testkit::skip::need;

use crate::sandbox::{Sandbox, set_mode, stderr, stdout};

/// Scripts named like real programs (`xdg-open`, `aws`) that append their name and
/// arguments, one line per call, to a log, and exit with a given code.
pub struct Recorder {
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Recorder {
    /// A recorder directory under `root`, put first on the sandbox's PATH (`only`: the
    /// whole PATH, so that no real program of these names is found).
    pub fn install(sb: &mut Sandbox, programs: &[(&str, i32)], only: bool) -> Recorder {
        let dir = sb.root.join(format!("recorders-{}", programs.len()));
        std::fs::create_dir_all(&dir).expect("recorder dir");
        let recorder = Recorder {
            log: dir.join("calls.log"),
            dir,
        };
        for (program, code) in programs {
            recorder.set(program, *code);
        }
        let path = if only {
            recorder.dir.display().to_string()
        } else {
            format!(
                "{}:{}",
                recorder.dir.display(),
                std::env::var("PATH").unwrap_or_default()
            )
        };
        sb.set_env("PATH", &path);
        recorder
    }

    /// (Re)writes the recorder for `program`, exiting with `code`.
    pub fn set(&self, program: &str, code: i32) {
        let path = self.dir.join(program);
        // Only shell built-ins: the PATH may hold nothing but this directory.
        let script = format!(
            "#!/bin/sh\nline=\"${{0##*/}}\"\nfor a in \"$@\"; do line=\"$line $a\"; done\nprintf '%s\\n' \"$line\" >> '{}'\nexit {code}\n",
            self.log.display()
        );
        std::fs::write(&path, script).expect("recorder");
        set_mode(&path, 0o755);
    }

    /// The calls, without `aws --version` (asked before `aws sso login`, which v1 lacks).
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| *line != "aws --version")
            .map(str::to_owned)
            .collect()
    }
}

const SSO_CONFIG: &str = "[profile corp]\nsso_session = corp\nsso_account_id = 111122223333\n\
sso_role_name = Admin\nregion = eu-west-1\n\n[sso-session corp]\n\
sso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n\n\
[profile legacy]\nsso_start_url = https://legacy.awsapps.com/start\nsso_account_id = 1\n\
sso_role_name = R\nsso_region = us-east-1\n";

const ACME_PORTAL: &str = "https://acme.awsapps.com/start#/";

/// A sandbox with `[acme]` (session keys) and two SSO profiles, `corp` (through an
/// sso-session) and `legacy` (its own start URL), and accounts bound to each.
fn sso_sandbox() -> Sandbox {
    let sb = Sandbox::with_profile("TOKEN-ONE");
    std::fs::write(sb.config(), SSO_CONFIG).expect("config");
    sb
}

fn add_accounts(sb: &Sandbox) {
    for args in [
        &["accounts", "add", "corp", "--profile", "corp"][..],
        &["accounts", "add", "legacy", "--profile", "legacy"],
        &["accounts", "add", "acme", "--profile", "acme"],
        &[
            "accounts",
            "add",
            "acme2",
            "--profile",
            "acme",
            "--portal",
            ACME_PORTAL,
        ],
    ] {
        let out = sb.ctl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
}

fn portals(sb: &Sandbox) -> Vec<(String, Value, Value)> {
    let list = sb.json(&["accounts", "list"]);
    list.as_array()
        .expect("array")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_owned(),
                a["portal"].clone(),
                a["profile_kind"].clone(),
            )
        })
        .collect()
}

#[test]
fn portal_defaults_to_the_sso_start_url_and_is_listed() {
    let mut sb = sso_sandbox();
    sb.start();
    add_accounts(&sb);
    let want = |acme: Value, acme2: Value| {
        vec![
            ("acme".to_owned(), acme, json!("session")),
            ("acme2".to_owned(), acme2, json!("session")),
            (
                "corp".to_owned(),
                json!("https://corp.awsapps.com/start"),
                json!("sso"),
            ),
            (
                "legacy".to_owned(),
                json!("https://legacy.awsapps.com/start"),
                json!("sso"),
            ),
        ]
    };
    assert_eq!(portals(&sb), want(Value::Null, json!(ACME_PORTAL)));
    let text = stdout(&sb.ctl(&["accounts", "show", "acme2"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("portal") && l.ends_with(ACME_PORTAL)),
        "{text}"
    );

    // edit: set one, drop one (back to the profile's, here none).
    let out = sb.ctl(&[
        "accounts",
        "edit",
        "acme",
        "--portal",
        "https://other.example/start",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sb.ctl(&["accounts", "edit", "acme2", "--no-portal"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = want(json!("https://other.example/start"), Value::Null);
    assert_eq!(portals(&sb), after);
    // An explicit portal wins over the sso_start_url.
    let out = sb.ctl(&["accounts", "edit", "corp", "--portal", ACME_PORTAL]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.account("corp")["portal"], ACME_PORTAL);
    let out = sb.ctl(&["accounts", "edit", "corp", "--no-portal"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Kept across restarts (state.json).
    sb.stop();
    sb.start();
    assert_eq!(portals(&sb), after);
}

#[test]
fn renew_opens_the_portal_or_runs_aws_sso_login() {
    let mut sb = sso_sandbox();
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0), ("aws", 0)], false);
    sb.start();
    add_accounts(&sb);

    let out = sb.ctl(&["renew", "acme2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rec.calls(), [format!("xdg-open {ACME_PORTAL}")]);
    assert!(
        stdout(&out).contains("cmdrctl paste --clipboard")
            && stdout(&out).contains("cmdrctl accept acme2"),
        "{}",
        stdout(&out)
    );

    // A legacy SSO profile (no sso-session, so no portal cmdrd keeps): the user's own
    // `aws sso login`, for the bound profile. (One on an sso-session signs in as `login`
    // does: tests/portals.rs.)
    let out = sb.ctl(&["renew", "legacy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rec.calls()[1], "aws sso login --profile legacy");
    assert!(stdout(&out).contains("signed in"), "{}", stdout(&out));
    let json = sb.json(&["renew", "legacy"]);
    assert_eq!(
        json,
        json!({"account": "legacy", "done": "signed_in", "url": null, "profile": "legacy"})
    );
    assert_eq!(rec.calls()[2], "aws sso login --profile legacy");

    // The outcome is reported: a failing login is a failure.
    rec.set("aws", 255);
    let out = sb.ctl(&["renew", "legacy"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`aws sso login --profile legacy` failed")
            && stderr(&out).contains("255"),
        "{}",
        stderr(&out)
    );
    rec.set("xdg-open", 3);
    let out = sb.ctl(&["renew", "acme2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("xdg-open"), "{}", stderr(&out));

    // No portal and no SSO: a clear error saying how to set one; nothing is run.
    let calls = rec.calls().len();
    let out = sb.ctl(&["renew", "acme"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no portal")
            && stderr(&out).contains("cmdrctl accounts edit acme --portal URL"),
        "{}",
        stderr(&out)
    );
    let out = sb.ctl(&["renew", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no account named `ghost`"));
    assert_eq!(rec.calls().len(), calls);
}

#[test]
fn renew_without_the_aws_cli_opens_the_sso_portal() {
    let mut sb = sso_sandbox();
    // PATH holds only an xdg-open recorder: no `aws` anywhere.
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0)], true);
    sb.start();
    add_accounts(&sb);
    let out = sb.ctl(&["renew", "legacy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not installed"), "{}", stdout(&out));
    assert_eq!(rec.calls(), ["xdg-open https://legacy.awsapps.com/start"]);
    // Without an opener either: the error names what to install.
    std::fs::remove_file(rec.dir.join("xdg-open")).expect("rm");
    let out = sb.ctl(&["renew", "acme2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`xdg-open` is not installed") && stderr(&out).contains("xdg-utils"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_portals_are_usage_errors_on_the_cli_and_the_socket() {
    let mut sb = sso_sandbox();
    sb.start();
    add_accounts(&sb);
    let rule = "expected an http:// or https:// URL";
    for url in [
        "ftp://acme",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://a b",
        "https://a\u{1b}[31mred",
        "https://",
        "",
    ] {
        for args in [
            &["accounts", "add", "x", "--profile", "acme", "--portal", url][..],
            &["accounts", "edit", "acme", "--portal", url],
        ] {
            let out = sb.ctl(args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(rule), "{args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains('\u{1b}'), "{args:?}");
        }
    }
    assert_eq!(sb.account("acme")["portal"], Value::Null);
    assert_eq!(sb.ctl(&["accounts", "show", "x"]).status.code(), Some(1));

    // A client that skips cmdrctl gets the same rule from the daemon; nothing changes.
    let stream = UnixStream::connect(sb.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    let mut send = |value: Value| {
        let mut line = serde_json::to_vec(&value).expect("json");
        line.push(b'\n');
        stream.write_all(&line).expect("write");
    };
    let mut recv = || {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        serde_json::from_str::<Value>(&line).expect("json line")
    };
    send(json!({"hello": {"protocol": 1, "client": "test", "client_version": "0"}}));
    assert!(recv()["welcome"].is_object());
    send(json!({"request": {"id": 1, "request": {"add_account": {
        "name": "y", "profile": "acme", "region": null,
        "target": {"target": "aws", "endpoint": null}, "on_change": "ask",
        "portal": "https://x\u{7}y"}}}}));
    let answer = recv();
    let err = &answer["response"]["outcome"]["err"];
    assert_eq!(err["code"], "bad_request", "{answer}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains(rule) && !m.contains('\u{7}')),
        "{answer}"
    );
    send(json!({"request": {"id": 2, "request": {"edit_account": {
        "name": "acme", "edit": {"profile": null, "region": null, "clear_region": false,
        "target": null, "on_change": null, "portal": "gopher://x"}}}}}));
    assert_eq!(recv()["response"]["outcome"]["err"]["code"], "bad_request");
    // Old plugins' requests, without the new fields, still work.
    send(json!({"request": {"id": 3, "request": {"add_account": {
        "name": "z", "profile": "acme", "region": null,
        "target": {"target": "aws", "endpoint": null}, "on_change": "ask"}}}}));
    let answer = recv();
    assert_eq!(
        answer["response"]["outcome"]["ok"]["account"]["portal"],
        Value::Null,
        "{answer}"
    );
    let names: Vec<String> = portals(&sb).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["acme", "acme2", "corp", "legacy", "z"]);
}

/// An X server of its own (Xvfb, display picked by the server) and what it ran; killed on
/// drop.
struct X {
    display: String,
    children: Vec<Child>,
}

impl X {
    fn start() -> Option<X> {
        for tool in ["Xvfb", "xclip"] {
            if !need(tool, "Debian packages xvfb, xclip") {
                return None;
            }
        }
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb");
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("display number");
        assert!(!line.trim().is_empty(), "Xvfb printed no display");
        Some(X {
            display: format!(":{}", line.trim()),
            children: vec![xvfb],
        })
    }

    /// Puts `text` on the CLIPBOARD selection; its owner (xclip) keeps serving it.
    fn copy(&mut self, text: &str) {
        let mut xclip = Command::new("xclip")
            .args(["-selection", "clipboard", "-in", "-quiet"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xclip");
        let mut stdin = xclip.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write");
        drop(stdin);
        self.children.push(xclip);
    }

    /// [`X::copy`], then waits until the clipboard holds `text`, copying again every 5 s (an
    /// xclip starved on a busy machine may lose the race for the selection), 60 s at most.
    fn own(&mut self, text: &str) {
        let start = Instant::now();
        loop {
            self.copy(text);
            let round = Instant::now();
            while round.elapsed() < Duration::from_secs(5) {
                if self.paste_out() == text {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "xclip never owned the clipboard"
            );
        }
    }

    fn paste_out(&self) -> String {
        Command::new("xclip")
            .args(["-selection", "clipboard", "-out"])
            .env("DISPLAY", &self.display)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for X {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn option2(profile: &str, token: &str) -> String {
    format!(
        "[{profile}]\naws_access_key_id=ASIAEXAMPLECLIPBOARD\naws_secret_access_key=wJalrXUtnFEMI-SECRET-clip\naws_session_token={token}\n"
    )
}

#[test]
fn paste_from_the_clipboard_with_a_real_xclip_under_xvfb() {
    let Some(mut x) = X::start() else {
        return;
    };
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.set_env("DISPLAY", &x.display);
    sb.start();
    sb.add_account("acme", &[]);
    let mut watch = sb.watch();
    let block = option2("acme", "TOKEN-FROM-THE-CLIPBOARD");
    sb.remember_secrets(&block);
    x.own(&block);

    // The profile name comes from the block: no --profile, nothing on stdin.
    let out = sb.ctl(&["paste", "--clipboard"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrote profile `acme`"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(sb.credentials()).expect("read");
    assert!(
        text.contains("aws_session_token = TOKEN-FROM-THE-CLIPBOARD")
            || text.contains("aws_session_token=TOKEN-FROM-THE-CLIPBOARD"),
        "{text}"
    );
    watch.wait_type("token_changed");
    assert_eq!(sb.account("acme")["state"], "changed");

    // Something else on the clipboard: refused, the file untouched.
    x.own("just some text I copied\n");
    let out = sb.ctl(&["paste", "--clipboard"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the clipboard is not an \"Option 2\" block"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(sb.credentials()).expect("read"),
        text
    );
}

#[test]
fn clipboard_without_a_tool_says_what_to_install() {
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    let empty = sb.root.join("empty-bin");
    std::fs::create_dir_all(&empty).expect("dir");
    sb.set_env("PATH", &empty.display().to_string());
    let before = std::fs::read_to_string(sb.credentials()).expect("read");
    let out = sb.ctl(&["paste", "--clipboard"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for name in ["wl-paste", "xclip", "xsel", "install"] {
        assert!(err.contains(name), "{name}: {err}");
    }
    // An X tool present but no display: its own complaint is passed on, not a hang.
    let rec = Recorder::install(&mut sb, &[], true);
    let script = rec.dir.join("xclip");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Error: Can'\"'\"'t open display: (null)' >&2\nexit 1\n",
    )
    .expect("script");
    set_mode(&script, 0o755);
    let out = sb.ctl(&["paste", "--clipboard"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("xclip: failed") && stderr(&out).contains("open display"),
        "{}",
        stderr(&out)
    );
    // A tool that never answers (a wedged selection owner) is given up on.
    std::fs::write(&script, "#!/bin/sh\nexec /bin/sleep 600\n").expect("script");
    let out = sb.ctl(&["paste", "--clipboard"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("xclip: no answer within"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(sb.credentials()).expect("read"),
        before
    );
}
