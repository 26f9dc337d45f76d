//! What clients are told in hard cases: a stopped daemon, answers over the frame limit,
//! lists of any length in pages, control characters in names, secrets at every depth of
//! `doctor --json` and in a trace log, the Neovim plugin facing a stopped daemon.

use std::io::{BufRead as _, BufReader, Write as _};

use cmdr_testkit::sys::{self, Signal};
use serde_json::{Value, json};

use crate::hostile::{HUNG, bounded, connect, ctl_bounded, figure, session, status_answers};
use crate::sandbox::{Sandbox, scale};

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
    // 100,000 profiles and 10,000 accounts take a debug build on a busy machine longer
    // than the usual wait to load.
    sb.start_within(std::time::Duration::from_secs(180));

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
