-- cmdr.nvim commands. The connection starts with require('cmdr').setup(); set
-- vim.g.cmdr_no_autostart = true to call setup yourself with options.
if vim.g.loaded_cmdr then
  return
end
vim.g.loaded_cmdr = true

vim.api.nvim_create_user_command("CmdrAccept", function(args)
  require("cmdr").accept(args.args)
end, {
  nargs = 1,
  complete = function()
    return require("cmdr").account_names()
  end,
  desc = "cmdr: use the token now in the file for this account",
})

vim.api.nvim_create_user_command("CmdrRenew", function(args)
  require("cmdr").renew(args.args)
end, {
  nargs = 1,
  complete = function()
    return require("cmdr").account_names()
  end,
  desc = "cmdr: get a new token (`cmdrctl renew NAME` in a terminal: sign in if needed, then fetch now)",
})

vim.api.nvim_create_user_command("CmdrLogin", function(args)
  require("cmdr").login(args.args)
end, {
  nargs = 1,
  desc = "cmdr: sign in to an sso-session (`cmdrctl login SESSION` in a terminal)",
})

vim.api.nvim_create_user_command("CmdrStatus", function()
  require("cmdr").status()
end, { nargs = 0, desc = "cmdr: daemon status and accounts" })

if not vim.g.cmdr_no_autostart then
  vim.schedule(function()
    require("cmdr").setup()
  end)
end
