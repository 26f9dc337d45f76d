//! The Neovim plugin (`editors/nvim`) in a headless Neovim against a real daemon: it
//! receives `token_changed`, `:CmdrAccept` accepts, the statusline follows, and it
//! reconnects when the daemon restarts; on `expired` it offers "Renew", which opens the
//! portal, and `:CmdrRenew` runs `aws sso login` for an SSO profile (recorders on PATH).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::renew::Recorder;
use cmdr_testkit::skip::need;

use crate::sandbox::{Sandbox, WAIT, creds, stderr};

const SCRIPT: &str = r#"
vim.g.cmdr_no_autostart = true
vim.opt.rtp:prepend(PLUGIN_DIR)
vim.cmd('runtime plugin/cmdr.lua')
local cmdr = require('cmdr')
local function write(line)
  local f = io.open(OUT, 'a'); f:write(line .. '\n'); f:close()
end
local shown = {}
vim.notify = function(msg) table.insert(shown, msg) end
local function wait(what, cond)
  if not vim.wait(30000, cond, 20) then write('FAIL ' .. what); vim.cmd('cquit 1') end
end
cmdr.setup({ socket = SOCKET, reconnect = 1 })
wait('connect', function() return cmdr.state.connected and cmdr.state.accounts.acme ~= nil end)
write('ready ' .. cmdr.statusline())
wait('token_changed', function()
  for _, e in ipairs(cmdr.state.events) do if e.type == 'token_changed' then return true end end
  return false
end)
wait('changed state', function() return cmdr.state.accounts.acme.state == 'changed' end)
write('changed ' .. cmdr.statusline())
vim.cmd('CmdrAccept acme')
wait('accepted', function() return cmdr.state.accounts.acme.state == 'ok' end)
write('accepted ' .. cmdr.statusline())
wait('disconnect', function() return not cmdr.state.connected end)
write('disconnected [' .. cmdr.statusline() .. ']')
wait('reconnect', function() return cmdr.state.connected and cmdr.state.accounts.acme ~= nil end)
write('reconnected ' .. cmdr.statusline())
for _, m in ipairs(shown) do write('notify ' .. m:gsub('\n', ' | ')) end
write('done')
vim.cmd('qall!')
"#;

fn lua_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[test]
fn headless_neovim_accepts_a_new_token() {
    if !need("nvim", "Debian package `neovim`") {
        return;
    }
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    sb.add_account("acme", &[]);
    let out = sb.root.join("nvim.out");
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/../editors/nvim");
    let script = SCRIPT
        .replace("PLUGIN_DIR", &lua_string(plugin))
        .replace("SOCKET", &lua_string(&sb.socket().display().to_string()))
        .replace("OUT", &lua_string(&out.display().to_string()));
    let script_path = sb.root.join("test.lua");
    std::fs::write(&script_path, script).expect("script");
    let mut nvim = sb
        .external("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nvim");
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let wait_line = |prefix: &str| {
        let start = Instant::now();
        while start.elapsed() < WAIT * 2 {
            let text = read();
            assert!(!text.contains("FAIL"), "{text}");
            if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
                return line.to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no `{prefix}` from nvim; got:\n{}", read());
    };
    let ready = wait_line("ready");
    assert!(ready.starts_with("ready acme "), "{ready}");
    sb.write_credentials(&creds("acme", "TOKEN-TWO"));
    assert_eq!(wait_line("changed"), "changed acme CHANGED");
    let accepted = wait_line("accepted");
    assert!(
        accepted.starts_with("accepted acme ") && !accepted.contains("CHANGED"),
        "{accepted}"
    );
    let account = sb.account("acme");
    assert_eq!(account["state"], "ok");
    assert_eq!(account["accepted_fingerprint"], account["fingerprint"]);

    // The daemon goes away and comes back: the plugin is quiet, then reconnects.
    sb.stop();
    assert_eq!(wait_line("disconnected"), "disconnected []");
    sb.start();
    assert!(wait_line("reconnected").starts_with("reconnected acme"));
    wait_line("done");
    let text = read();
    assert!(text.contains("notify cmdr: new token for acme"), "{text}");
    let status = nvim.wait().expect("nvim exit");
    assert!(status.success(), "{status:?}\n{text}");
}

const RENEW_SCRIPT: &str = r#"
vim.g.cmdr_no_autostart = true
vim.opt.rtp:prepend(PLUGIN_DIR)
vim.cmd('runtime plugin/cmdr.lua')
local cmdr = require('cmdr')
local function write(line)
  local f = io.open(OUT, 'a'); f:write(line .. '\n'); f:close()
end
local shown = {}
vim.notify = function(msg) table.insert(shown, msg) end
local prompts = {}
-- The user picks "Renew" in the offer.
vim.ui.select = function(items, opts, on_choice)
  table.insert(prompts, opts.prompt .. ' [' .. table.concat(items, '/') .. ']')
  on_choice(items[1])
end
local function wait(what, cond)
  if not vim.wait(30000, cond, 20) then write('FAIL ' .. what); vim.cmd('cquit 1') end
end
local function said(pattern)
  return function()
    for _, m in ipairs(shown) do if m:find(pattern, 1, true) then return true end end
    return false
  end
end
cmdr.setup({ socket = SOCKET, reconnect = 1, cmdrctl = CMDRCTL })
wait('connect', function() return cmdr.state.connected end)
write('ready')
wait('expired offer', function() return #prompts > 0 end)
write('prompt ' .. prompts[1])
wait('renew acme', said('renew acme: done'))
vim.cmd('CmdrRenew corp')
wait('renew corp', said('renew corp: done'))
vim.cmd('CmdrRenew plain')
wait('no portal', said('plain has no portal'))
-- What `cmdrctl renew` said, in its terminals.
for _, buf in ipairs(vim.api.nvim_list_bufs()) do
  if vim.bo[buf].buftype == 'terminal' then
    for _, l in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
      if l ~= '' then write('terminal ' .. l) end
    end
  end
end
for _, m in ipairs(shown) do write('notify ' .. m:gsub('\n', ' | ')) end
write('done')
vim.cmd('qall!')
"#;

#[test]
fn headless_neovim_offers_renew_on_expiry() {
    if !need("nvim", "Debian package `neovim`") {
        return;
    }
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    sb.write_credentials(&format!(
        "{}x_security_token_expires = 2020-01-01T00:00:00Z\n{}",
        creds("acme", "TOKEN-EXPIRED-ONE"),
        creds("plain", "TOKEN-PLAIN-ONE")
    ));
    // A legacy SSO profile (no sso-session: no portal cmdrd keeps), which `cmdrctl renew`
    // signs in to with the user's own `aws sso login` (one on a kept sso-session takes
    // `login`'s path: tests/portals.rs).
    std::fs::write(
        sb.config(),
        "[profile corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\nsso_account_id = 111122223333\nsso_role_name = Admin\n",
    )
    .expect("config");
    let rec = Recorder::install(&mut sb, &[("xdg-open", 0), ("aws", 0)], false);
    sb.start();
    for args in [
        &["accounts", "add", "corp", "--profile", "corp"][..],
        &["accounts", "add", "plain", "--profile", "plain"],
    ] {
        let out = sb.ctl(args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = sb.root.join("nvim.out");
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/../editors/nvim");
    let script = RENEW_SCRIPT
        .replace("PLUGIN_DIR", &lua_string(plugin))
        .replace("SOCKET", &lua_string(&sb.socket().display().to_string()))
        .replace(
            "CMDRCTL",
            &lua_string(&crate::sandbox::bin("cmdrctl").display().to_string()),
        )
        .replace("OUT", &lua_string(&out.display().to_string()));
    let script_path = sb.root.join("renew.lua");
    std::fs::write(&script_path, script).expect("script");
    let mut nvim = sb
        .external("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nvim");
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let wait_line = |prefix: &str| {
        let start = Instant::now();
        while start.elapsed() < WAIT * 2 {
            let text = read();
            assert!(!text.contains("FAIL"), "{text}");
            if let Some(line) = text.lines().find(|l| l.starts_with(prefix)) {
                return line.to_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no `{prefix}` from nvim; got:\n{}", read());
    };
    wait_line("ready");
    // The account expires as it is bound, while the plugin listens.
    let portal = "https://acme.awsapps.com/start";
    sb.add_account("acme", &["--portal", portal]);
    let prompt = wait_line("prompt");
    assert!(
        prompt.starts_with("prompt cmdr: acme expired at 2020-01-01T00:00:00Z [Renew/"),
        "{prompt}"
    );
    wait_line("done");
    let text = read();
    assert_eq!(
        rec.calls(),
        [
            format!("xdg-open {portal}"),
            "aws sso login --profile corp".to_owned()
        ],
        "{text}"
    );
    assert!(text.contains(":CmdrRenew acme"), "{text}");
    // `:CmdrRenew` ran `cmdrctl renew NAME` in a terminal, which said what it did.
    assert!(
        text.contains("terminal opened the portal of acme"),
        "{text}"
    );
    assert!(text.contains("aws sso login --profile corp"), "{text}");
    assert!(
        text.contains("cmdrctl accounts edit plain --portal URL"),
        "{text}"
    );
    let status = nvim.wait().expect("nvim exit");
    assert!(status.success(), "{status:?}\n{text}");
}

const REFUSE_SCRIPT: &str = r#"
vim.g.cmdr_no_autostart = true
vim.opt.rtp:prepend(PLUGIN_DIR)
vim.cmd('runtime plugin/cmdr.lua')
local cmdr = require('cmdr')
local function write(line)
  local f = io.open(OUT, 'a'); f:write(line .. '\n'); f:close()
end
local shown = {}
vim.notify = function(msg) table.insert(shown, msg) end
cmdr.setup({ socket = SOCKET, reconnect = 1 })
local ok = vim.wait(30000, function() return shown[1] ~= nil end, 20)
write('refused ' .. tostring(ok and shown[1]))
write('connected ' .. tostring(cmdr.state.connected))
vim.cmd('qall!')
"#;

/// A runtime directory that others can write (and is not sticky): the plugin refuses the
/// socket, as cmdrctl does, says why, and never connects.
#[test]
fn headless_neovim_refuses_a_socket_dir_others_can_replace() {
    if !need("nvim", "Debian package `neovim`") {
        return;
    }
    let mut sb = Sandbox::with_profile("TOKEN-ONE");
    sb.start();
    crate::sandbox::set_mode(&sb.run_dir, 0o777);
    let out = sb.root.join("nvim.out");
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/../editors/nvim");
    let script = REFUSE_SCRIPT
        .replace("PLUGIN_DIR", &lua_string(plugin))
        .replace("SOCKET", &lua_string(&sb.socket().display().to_string()))
        .replace("OUT", &lua_string(&out.display().to_string()));
    let script_path = sb.root.join("test.lua");
    std::fs::write(&script_path, script).expect("script");
    let status = sb
        .external("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {}", script_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("nvim");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.success(), "{text}");
    let run_dir = sb.run_dir.display().to_string();
    assert!(
        text.contains(&format!(
            "refused cmdr: refusing the socket directory {run_dir}: "
        )) && text.contains("not sticky"),
        "{text}"
    );
    assert!(text.contains("connected false"), "{text}");
    assert!(!sb.log_text().contains("client=cmdr.nvim"), "it connected");
}
