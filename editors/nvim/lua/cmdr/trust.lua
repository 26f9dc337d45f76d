-- cmdr.nvim: whether a socket path may be trusted, by the rule of crates/cmdr-client
-- (`unix.rs`). The socket's directory must be a real directory (not a symlink) owned by
-- us that group and others cannot write, under ancestors owned by us or root that others
-- can write only when sticky (/tmp); the socket itself must be owned by us. libuv cannot
-- read a Unix socket's peer credentials, so the socket's owner (the uid of the process
-- that bound it, in a directory nobody else can write) stands in for them.
local uv = vim.uv or vim.loop
local bit = require("bit")

local M = {}

local function dirname(p)
  local d = p:match("^(.*)/[^/]*$")
  if d == nil then
    return "."
  end
  if d == "" then
    return "/"
  end
  return d
end

local function writable_by_others(mode)
  return bit.band(mode, 18) ~= 0 -- 0o022
end

local function sticky(mode)
  return bit.band(mode, 512) ~= 0 -- 0o1000
end

local function octal(mode)
  return string.format("%o", bit.band(mode, 4095))
end

--- nil when `socket` may be used by `uid`, else why not (naming the path and its owner).
function M.unsafe(socket, uid)
  local dir = dirname(socket)
  local meta = uv.fs_lstat(dir)
  if not meta then
    return nil -- nothing listens there yet
  end
  local function refuse(where, why)
    return ("refusing the socket directory %s: %s"):format(where, why)
  end
  if meta.type == "link" then
    return refuse(dir, "it is a symlink")
  end
  if meta.type ~= "directory" then
    return refuse(dir, "it is not a directory")
  end
  if meta.uid ~= uid then
    return refuse(dir, ("it is owned by uid %d, not by uid %d"):format(meta.uid, uid))
  end
  if writable_by_others(meta.mode) then
    return refuse(dir, ("others can write to it (mode %s, owner uid %d)"):format(octal(meta.mode), meta.uid))
  end
  local ancestor = uv.fs_realpath(dirname(dir))
  if not ancestor then
    return refuse(dirname(dir), "cannot resolve it")
  end
  while true do
    local up = uv.fs_stat(ancestor)
    if not up then
      return refuse(ancestor, "cannot inspect it")
    end
    if up.uid ~= uid and up.uid ~= 0 then
      return refuse(ancestor, ("it is owned by uid %d, who could replace the socket directory %s"):format(up.uid, dir))
    end
    if writable_by_others(up.mode) and not sticky(up.mode) then
      return refuse(
        ancestor,
        ("others can write to it and it is not sticky (mode %s, owner uid %d): anyone could replace the socket directory %s"):format(
          octal(up.mode),
          up.uid,
          dir
        )
      )
    end
    local parent = dirname(ancestor)
    if parent == ancestor then
      break
    end
    ancestor = parent
  end
  local own = uv.fs_lstat(socket)
  if own and own.uid ~= uid then
    return ("refusing the socket %s: it belongs to uid %d, not to uid %d"):format(socket, own.uid, uid)
  end
  return nil
end

return M
