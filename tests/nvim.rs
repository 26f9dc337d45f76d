//! The Neovim plugin (`editors/nvim`) in a headless Neovim against a real daemon: it
//! receives `token_changed`, `:CmdrAccept` accepts, the statusline follows, and it
//! reconnects when the daemon restarts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, WAIT, creds};

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
    if std::process::Command::new("nvim")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("nvim is not installed (Debian package `neovim`); skipped");
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
