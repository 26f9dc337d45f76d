-- cmdr.nvim: cmdr's events in Neovim. Talks to cmdrd over its socket with the JSON-lines
-- codec (see README "Talking to the socket"): shows events with vim.notify, offers
-- :CmdrAccept, :CmdrRenew and :CmdrLogin (cmdrctl renew/login in a terminal), :CmdrStatus,
-- "Renew" on expiring_soon/expired, "Sign in" on signin_required, and a statusline component. Reconnects when the daemon restarts; stays quiet while it is absent.
-- Everything is asynchronous, with deadlines on the handshake and each request.
local M = {}

local uv = vim.uv or vim.loop
local trust = require("cmdr.trust")

local defaults = {
  -- Socket of cmdrd; nil means $CMDR_SOCKET, else $XDG_RUNTIME_DIR/cmdr/cmdrd.sock,
  -- else /tmp/cmdr-UID/cmdrd.sock (the daemon's own fallback).
  socket = nil,
  -- Seconds between reconnection attempts while the daemon is absent.
  reconnect = 5,
  -- Seconds the daemon has to welcome us and to answer each request: a stopped or stuck
  -- daemon never blocks the editor (nothing here waits synchronously), and is given up on.
  timeout = 5,
  -- Event types to show with vim.notify, and their levels.
  notify = {
    token_changed = vim.log.levels.WARN,
    token_accepted = vim.log.levels.INFO,
    expiring_soon = vim.log.levels.WARN,
    expired = vim.log.levels.ERROR,
    identity_changed = vim.log.levels.ERROR,
    validation_failed = vim.log.levels.WARN,
    file_error = vim.log.levels.WARN,
    file_recovered = vim.log.levels.INFO,
    signin_required = vim.log.levels.WARN,
    endpoint_moved = vim.log.levels.WARN,
  },
  -- On expiring_soon/expired, offer "Renew" with vim.ui.select for accounts that can be
  -- renewed (a portal, or an SSO profile).
  renew_prompt = true,
  -- On signin_required, offer "Sign in" with vim.ui.select: `cmdrctl login SESSION` in a
  -- terminal (the browser's page or the device code needs a person).
  signin_prompt = true,
  -- The cmdrctl program that :CmdrRenew, :CmdrLogin, "Renew" and "Sign in" run.
  cmdrctl = "cmdrctl",
  -- Statusline: which account (nil: $CMDR_ACCOUNT, else all) and the template.
  statusline_account = nil,
  statusline_format = "{account} {left}",
}

local state = {
  config = vim.deepcopy(defaults),
  pipe = nil,
  connected = false,
  buffer = "",
  next_id = 1,
  pending = {},
  accounts = {},
  events = {},
  timer = nil,
  started = false,
  -- What the connected daemon can do (its welcome's features).
  features = {},
}

-- Exposed for tests and for users who want to react to events themselves.
M.state = state

local function my_uid()
  local ok, uid = pcall(uv.getuid)
  if not ok then
    uid = tonumber(vim.trim(vim.fn.system({ "id", "-u" })))
  end
  return uid
end

local function socket_path()
  if state.config.socket then
    return state.config.socket
  end
  local env = vim.env.CMDR_SOCKET
  if env and env ~= "" then
    return env
  end
  local runtime = vim.env.XDG_RUNTIME_DIR
  if runtime and runtime ~= "" and vim.fn.has("mac") == 0 then
    return runtime .. "/cmdr/cmdrd.sock"
  end
  local tmp = (vim.fn.has("mac") == 1 and vim.env.TMPDIR) or "/tmp"
  return tmp .. "/cmdr-" .. my_uid() .. "/cmdrd.sock"
end

local function notify(message, level)
  vim.schedule(function()
    vim.notify("cmdr: " .. message, level)
  end)
end

-- The daemon's largest frame (cmdr-proto MAX_REPLY_LEN): a longer line is not ours.
local MAX_LINE = 64 * 1024 * 1024

--- Runs `fn` once after `seconds`, on the main loop.
local function after(seconds, fn)
  local timer = uv.new_timer()
  timer:start(math.floor(seconds * 1000), 0, function()
    timer:close()
    vim.schedule(fn)
  end)
end

local function send(message)
  if not state.pipe then
    return false
  end
  state.pipe:write(vim.json.encode(message) .. "\n")
  return true
end

--- Sends a request; `callback(ok, value)` gets the response's `ok` value or the error.
function M.request(request, callback)
  if not state.connected then
    if callback then
      callback(false, { message = "cmdrd is not running" })
    end
    return
  end
  local id = state.next_id
  state.next_id = id + 1
  state.pending[id] = callback or function() end
  send({ request = { id = id, request = request } })
  -- Subscribing answers at once; `validate` waits for STS, bounded by the daemon.
  local validating = type(request) == "table" and request.validate ~= nil
  local seconds = validating and 6 * state.config.timeout or state.config.timeout
  after(seconds, function()
    local pending = state.pending[id]
    if pending then
      state.pending[id] = nil
      pcall(pending, false, { message = ("cmdrd did not answer within %d s"):format(seconds) })
    end
  end)
end

local function has_feature(name)
  for _, f in ipairs(state.features or {}) do
    if f == name then
      return true
    end
  end
  return false
end

local function known(value)
  return value ~= nil and value ~= vim.NIL and value or nil
end

-- How each account renews (`renewal_plans`, or `renewals_page` of an older daemon, page by
-- page): `auto_renew`, its sso-session, `signin_expires_at` (the portal's clock) and
-- `renews_at` (when cmdrd renews it by itself); `done(facts, judged)` by account name,
-- `judged` when the daemon says `renews_at`.
local function fetch_renewals(done)
  local kind = has_feature("renewal_plans") and "renewal_plans" or (has_feature("renewals") and "renewals_page")
  if not kind then
    return done({}, false)
  end
  local judged = kind == "renewal_plans"
  local facts = {}
  local function page(after)
    M.request({ [kind] = { after = after or vim.NIL, limit = 1000 } }, function(ok, value)
      local got = ok and known(value[kind])
      if not got then
        return done(facts, judged)
      end
      for _, f in ipairs(got.items or {}) do
        facts[f.account] = f
      end
      local next = known(got.next)
      if next and (not after or next > after) then
        page(next)
      else
        done(facts, judged)
      end
    end)
  end
  page(nil)
end

local function refresh_accounts()
  M.request("list_accounts", function(ok, value)
    if ok and value.accounts then
      fetch_renewals(function(facts, judged)
        local by_name = {}
        for _, account in ipairs(value.accounts) do
          local f = facts[account.name]
          if f then
            account.auto_renew = f.auto_renew
            account.session = known(f.session)
            account.signin_expires_at = known(f.signin_expires_at)
            account.renews_at = known(f.renews_at)
            account.judged = judged
          end
          by_name[account.name] = account
        end
        state.accounts = by_name
      end)
    end
  end)
end

local utc_seconds

--- Whether cmdrd renews `account` before its token ends, with nobody's help. Its expiry is
--- then no alarm. The daemon says so (`renews_at`); an older one only that it renews it,
--- so then the portal's sign-in must also last beyond the token.
function M.renews_itself(account)
  if not account or account.auto_renew ~= true then
    return false
  end
  if account.judged then
    return account.renews_at ~= nil
  end
  local signin = account.signin_expires_at and utc_seconds(account.signin_expires_at)
  local token = account.expires_at and known(account.expires_at) and utc_seconds(account.expires_at)
  return signin ~= nil and token ~= nil and signin > token
end

--- `signed in until 18:00` (local time) for an account on a kept portal, else "".
function M.portal_clock(account)
  local at = account.signin_expires_at and utc_seconds(account.signin_expires_at)
  if not at then
    return ""
  end
  return "signed in until " .. os.date("%H:%M", at)
end

local function describe(event)
  local t = event.type
  if t == "token_changed" then
    return ("new token for %s (profile %s): :CmdrAccept %s"):format(event.account, event.profile, event.account)
  elseif t == "token_accepted" then
    return ("%s now uses the new token"):format(event.account)
  elseif t == "expiring_soon" and M.renews_itself(state.accounts[event.account]) then
    return ("%s expires at %s; cmdrd renews it before then"):format(event.account, event.expires_at)
  elseif t == "endpoint_moved" then
    return ("another program held the credentials endpoint's port (%s) at start; cmdrd now listens on %s: start again with `cmdrctl exec` what was started before"):format(
      event.old_url, event.new_url)
  elseif t == "signin_required" then
    return ("the sign-in to %s (sso-session %s) ended (%s): :CmdrLogin %s"):format(
      event.portal, event.session, tostring(event.reason or "?"), event.session)
  elseif t == "expiring_soon" then
    return ("%s expires at %s: :CmdrRenew %s"):format(event.account, event.expires_at, event.account)
  elseif t == "expired" then
    return ("%s EXPIRED at %s: :CmdrRenew %s"):format(event.account, event.expires_at, event.account)
  elseif t == "identity_changed" then
    return ("%s now holds AWS account %s, not %s: :CmdrAccept %s if intended"):format(
      event.account, event.new_account_id, event.old_account_id, event.account)
  elseif t == "validation_failed" then
    return ("validating %s failed: %s"):format(event.account, event.error)
  elseif t == "file_error" then
    return ("%s line %s: %s"):format(event.path, tostring(event.line or "?"), event.message)
  elseif t == "file_recovered" then
    return ("%s parses again"):format(event.path)
  end
  return nil
end

local offer_renew
local offer_signin

local function on_event(event)
  table.insert(state.events, event)
  if #state.events > 100 then
    table.remove(state.events, 1)
  end
  local renews = event.type == "expiring_soon" and M.renews_itself(state.accounts[event.account])
  local level = state.config.notify[event.type]
  if renews then
    -- Renewed before it ends, by cmdrd: information, not a warning.
    level = level and vim.log.levels.INFO
  end
  local text = describe(event)
  if level and text then
    notify(text, level)
  end
  -- `signed_in` and `token_renewed` only refresh the view (the portal's clock moved).
  if event.account or event.type == "signed_in" or event.type == "signin_required" then
    refresh_accounts()
  end
  if (event.type == "expiring_soon" or event.type == "expired") and state.config.renew_prompt and not renews then
    offer_renew(event)
  end
  if event.type == "signin_required" and state.config.signin_prompt then
    offer_signin(event)
  end
end

local schedule_reconnect

local function disconnect()
  state.connected = false
  if state.pipe then
    pcall(function()
      state.pipe:read_stop()
      state.pipe:close()
    end)
  end
  state.pipe = nil
  state.buffer = ""
  for _, callback in pairs(state.pending) do
    pcall(callback, false, { message = "connection to cmdrd closed" })
  end
  state.pending = {}
end

local function on_message(message)
  if message.welcome then
    state.connected = true
    state.features = message.welcome.features or {}
    M.request("subscribe")
    refresh_accounts()
  elseif message.response then
    local callback = state.pending[message.response.id]
    state.pending[message.response.id] = nil
    if callback then
      local outcome = message.response.outcome
      if outcome.ok ~= nil then
        callback(true, outcome.ok)
      else
        callback(false, outcome.err)
      end
    end
  elseif message.event then
    on_event(message.event)
    if message.event.type == "daemon_stopping" then
      disconnect()
      schedule_reconnect()
    end
  elseif message.refused then
    notify(message.refused.message, vim.log.levels.WARN)
  end
end

local function on_data(err, chunk)
  if err or not chunk then
    disconnect()
    schedule_reconnect()
    return
  end
  state.buffer = state.buffer .. chunk
  if #state.buffer > MAX_LINE and not state.buffer:find("\n", 1, true) then
    disconnect()
    schedule_reconnect()
    return
  end
  while true do
    local newline = state.buffer:find("\n", 1, true)
    if not newline then
      break
    end
    local line = state.buffer:sub(1, newline - 1)
    state.buffer = state.buffer:sub(newline + 1)
    local ok, message = pcall(vim.json.decode, line)
    if ok and type(message) == "table" then
      vim.schedule(function()
        on_message(message)
      end)
    end
  end
end

local function connect()
  if state.pipe then
    return
  end
  local path = socket_path()
  -- Unix: another user could be listening there; never send them a request.
  local problem = package.config:sub(1, 1) == "/" and trust.unsafe(path, my_uid())
  if problem then
    if state.refusal ~= problem then
      state.refusal = problem
      notify(problem, vim.log.levels.WARN)
    end
    schedule_reconnect()
    return
  end
  state.refusal = nil
  local pipe = uv.new_pipe(false)
  state.pipe = pipe
  pipe:connect(path, function(err)
    if err then
      -- The daemon is absent: stay quiet and try again later.
      pcall(function()
        pipe:close()
      end)
      if state.pipe == pipe then
        state.pipe = nil
      end
      schedule_reconnect()
      return
    end
    pipe:read_start(on_data)
    send({ hello = { protocol = 1, client = "cmdr.nvim", client_version = "0.1.0" } })
    -- No welcome in time (a stopped or stuck daemon): drop this connection, try later.
    after(state.config.timeout, function()
      if state.pipe == pipe and not state.connected then
        disconnect()
        schedule_reconnect()
      end
    end)
  end)
end

schedule_reconnect = function()
  if state.timer then
    return
  end
  state.timer = uv.new_timer()
  state.timer:start(state.config.reconnect * 1000, 0, function()
    state.timer:close()
    state.timer = nil
    connect()
  end)
end

--- Accepts the token now in the file for `name`, like `cmdrctl accept`.
function M.accept(name, callback)
  M.request({ accept = { name = name } }, function(ok, value)
    if ok then
      notify(("%s accepted the new token"):format(name), vim.log.levels.INFO)
      refresh_accounts()
    else
      notify(value and value.message or "accept failed", vim.log.levels.ERROR)
    end
    if callback then
      callback(ok, value)
    end
  end)
end

-- Whether `cmdrctl renew` has a way to get a new token for `account` (as the daemon's
-- `renewable` decides): a portal to open or sign in to, or an SSO profile. nil and why when
-- neither is possible.
local function portal_ok(url)
  -- http(s), printable ASCII without spaces, as the daemon checks it.
  return type(url) == "string" and #url <= 2048 and url:lower():match("^https?://[!-~]+$") ~= nil
end

function M.renew_plan(account)
  local portal = account.portal
  if portal ~= nil and portal ~= vim.NIL and not portal_ok(portal) then
    return nil, ("the portal of %s is not an http(s) URL"):format(account.name)
  end
  if portal == vim.NIL then
    portal = nil
  end
  if account.profile_kind == "sso" then
    return { sso_profile = account.profile, portal = portal }
  end
  if portal then
    return { url = portal }
  end
  return nil, ("%s has no portal: set one with `cmdrctl accounts edit %s --portal URL`"):format(account.name, account.name)
end

-- A command name cmdrctl takes as one argument (no option, no control character).
local function plain_name(name)
  return type(name) == "string" and name ~= "" and name:sub(1, 1) ~= "-" and not name:find("%c")
end

-- Runs `cmdrctl ARGS…` in a terminal window (a sign-in may need a person: the browser's
-- page or a device code); `done(ok, code)` when it exits.
local function in_terminal(args, done)
  local cmdrctl = state.config.cmdrctl or "cmdrctl"
  local shown = "cmdrctl " .. table.concat(args, " ")
  if vim.fn.executable(cmdrctl) == 0 then
    notify(("`%s` is not installed: run `%s` yourself"):format(cmdrctl, shown), vim.log.levels.ERROR)
    return nil
  end
  local cmd = { cmdrctl }
  vim.list_extend(cmd, args)
  vim.cmd("botright new")
  local job = vim.fn.termopen(cmd, {
    env = { CMDR_SOCKET = socket_path() },
    on_exit = function(_, code)
      if done then
        vim.schedule(function()
          done(code == 0, code)
        end)
      end
    end,
  })
  if job <= 0 then
    notify(("cannot run `%s`"):format(shown), vim.log.levels.ERROR)
    return nil
  end
  return job
end

local function renew_with(account, callback)
  local function finish(ok, message)
    notify(message, ok and vim.log.levels.INFO or vim.log.levels.ERROR)
    if callback then
      callback(ok, message)
    end
  end
  local plan, why = M.renew_plan(account)
  if not plan then
    return finish(false, why)
  end
  local name = account.name
  if not plain_name(name) then
    return finish(false, ("not an account name: %s"):format(vim.inspect(name)))
  end
  -- `cmdrctl renew NAME` decides what renewing means, as the desktop's and VS Code's Renew:
  -- through a kept portal, sign in if needed and fetch now; else open the portal, or
  -- `aws sso login` for an SSO profile cmdrd does not keep.
  state.renew_job = in_terminal({ "renew", name }, function(ok, code)
    if ok then
      finish(true, ("renew %s: done (its terminal says what happened)"):format(name))
    else
      finish(false, ("renew %s failed (exit status %d): see its terminal"):format(name, code))
    end
    refresh_accounts()
  end)
end

--- Gets a new token for `name` by running `cmdrctl renew NAME` in a terminal window: for an
--- account with a portal cmdrd keeps, sign in if needed and fetch now; otherwise open its
--- portal, or for an SSO profile run `aws sso login`. Reports the outcome.
function M.renew(name, callback)
  M.request({ show_account = { name = name } }, function(ok, value)
    if ok and value.account then
      renew_with(value.account, callback)
    else
      notify(value and value.message or "renew failed", vim.log.levels.ERROR)
      if callback then
        callback(false, value and value.message)
      end
    end
  end)
end

-- "Renew" for an expiring or expired account that can be renewed.
offer_renew = function(event)
  M.request({ show_account = { name = event.account } }, function(ok, value)
    if not (ok and value.account and M.renew_plan(value.account)) then
      return
    end
    local when = event.type == "expired" and "expired at" or "expires at"
    vim.schedule(function()
      vim.ui.select({ "Renew", "Not now" }, {
        prompt = ("cmdr: %s %s %s"):format(event.account, when, event.expires_at),
      }, function(choice)
        if choice == "Renew" then
          renew_with(value.account)
        end
      end)
    end)
  end)
end

--- Signs in to sso-session `session`, like `cmdrctl login SESSION`, in a terminal window
--- (the browser's page or the device code needs a person); cmdrd sees the new token by
--- itself (`signed_in`). Only ever after the user asked.
function M.login(session)
  if not plain_name(session) then
    notify(("not an sso-session name: %s"):format(vim.inspect(session)), vim.log.levels.ERROR)
    return
  end
  state.login_job = in_terminal({ "login", session })
end

-- "Sign in" for a portal whose session ended.
offer_signin = function(event)
  local session = known(event.session)
  if not session then
    return
  end
  vim.schedule(function()
    vim.ui.select({ "Sign in", "Not now" }, {
      prompt = ("cmdr: the sign-in to %s ended"):format(tostring(event.portal)),
    }, function(choice)
      if choice == "Sign in" then
        M.login(session)
      end
    end)
  end)
end

--- Shows the daemon's status.
function M.status()
  if not state.connected then
    notify("cmdrd is not running (start it with `cmdrd` or `cmdrctl service install`)", vim.log.levels.WARN)
    return
  end
  M.request("status", function(ok, value)
    if not ok then
      notify(value and value.message or "status failed", vim.log.levels.ERROR)
      return
    end
    local s = value.status
    local lines = { ("cmdrd %s, %d profiles"):format(s.daemon_version, s.profiles) }
    for _, f in ipairs(s.files) do
      table.insert(lines, ("%s %s: %s"):format(f.kind, f.path, f.health))
    end
    for _, account in pairs(state.accounts) do
      local line = ("%s → %s: %s %s"):format(account.name, account.profile, account.state, M.left(account))
      local clock = M.portal_clock(account)
      if clock ~= "" then
        line = line .. (M.renews_itself(account) and " (renews itself, %s)" or " (%s)"):format(clock)
      end
      table.insert(lines, line)
    end
    notify(table.concat(lines, "\n"), vim.log.levels.INFO)
  end)
end

utc_seconds = function(text)
  local y, mo, d, h, mi, s = tostring(text):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if not y then
    return nil
  end
  local local_time = os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = s })
  -- os.time reads the table as local time: correct by this machine's UTC offset.
  local now = os.time()
  local offset = os.difftime(now, os.time(os.date("!*t", now)))
  return local_time + offset
end

--- `3h12m`, `EXPIRED`, or the state when it needs attention (as `cmdrctl prompt`).
function M.left(account)
  local attention = { changed = "CHANGED", missing = "MISSING", invalid = "INVALID", expired = "EXPIRED" }
  if attention[account.state] then
    return attention[account.state]
  end
  local at = account.expires_at and utc_seconds(account.expires_at)
  if not at then
    return ""
  end
  local left = at - os.time()
  if left <= 0 then
    return "EXPIRED"
  end
  local h, m = math.floor(left / 3600), math.floor(left % 3600 / 60)
  if h >= 24 then
    return ("%dd%dh"):format(math.floor(h / 24), h % 24)
  elseif h > 0 then
    return ("%dh%02dm"):format(h, m)
  elseif m > 0 then
    return ("%dm"):format(m)
  end
  return ("%ds"):format(left)
end

--- A value from the daemon made safe for the statusline: no control characters, and `%`
--- doubled (the statusline would read it as an item).
local function shown(value)
  return (tostring(value):gsub("%c", "?"):gsub("%%", "%%%%"))
end

--- For the statusline: `acme 3h12m`, or "" when nothing is bound or the daemon is absent.
function M.statusline()
  if not state.connected then
    return ""
  end
  local wanted = state.config.statusline_account or vim.env.CMDR_ACCOUNT
  local parts = {}
  local names = vim.tbl_keys(state.accounts)
  table.sort(names)
  for _, name in ipairs(names) do
    if not wanted or wanted == "" or wanted == name then
      local account = state.accounts[name]
      local text = state.config.statusline_format
        :gsub("{account}", function() return shown(account.name) end)
        :gsub("{left}", function() return M.left(account) end)
        :gsub("{state}", function() return shown(account.state) end)
      table.insert(parts, vim.trim(text))
    end
  end
  return table.concat(parts, " ")
end

--- Account names, for command completion.
function M.account_names()
  local names = vim.tbl_keys(state.accounts)
  table.sort(names)
  return names
end

function M.setup(opts)
  state.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  if not state.started then
    state.started = true
    connect()
  end
end

return M
