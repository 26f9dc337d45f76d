//! `cmdrctl hook bash|zsh|fish|powershell`: a prompt hook for long-lived shells. A shell that ran
//! `eval "$(cmdrctl env NAME)"` carries `CMDR_ACCOUNT` and `CMDR_FINGERPRINT`; before each
//! prompt the hook asks the daemon (one request) whether the account has accepted another
//! token since, and if so re-exports the variables. Silent when nothing changed, when the
//! daemon is down or when the account's token is not handed out.

use crate::args::HookShell;

/// The snippet, calling this very `cmdrctl` binary.
pub fn snippet(shell: HookShell) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "cmdrctl".to_owned());
    let quoted = format!("'{}'", exe.replace('\'', r"'\''"));
    let pwsh_quoted = format!("'{}'", exe.replace('\'', "''"));
    match shell {
        // Wraps the current `prompt` function; `$LASTEXITCODE` is the user's again
        // afterwards, so a prompt that shows it is not fooled by the hook.
        HookShell::Powershell | HookShell::Pwsh => format!(
            "\
# cmdr: keep this session's AWS_* variables on the account's accepted token.
if (-not (Test-Path Variable:global:__cmdrPrompt)) {{ $global:__cmdrPrompt = $function:prompt }}
function global:prompt {{
    $code = $global:LASTEXITCODE
    if ($env:CMDR_ACCOUNT) {{
        $lines = & {exe} env $env:CMDR_ACCOUNT --shell powershell --if-changed \"$env:CMDR_FINGERPRINT\" 2>$null
        if ($LASTEXITCODE -eq 0 -and $lines) {{ Invoke-Expression ($lines -join \"`n\") }}
    }}
    $global:LASTEXITCODE = $code
    & $global:__cmdrPrompt
}}
",
            exe = pwsh_quoted
        ),
        HookShell::Fish => format!(
            "\
# cmdr: keep this shell's AWS_* variables on the account's accepted token.
function __cmdr_refresh --on-event fish_prompt
    set -q CMDR_ACCOUNT; or return
    set -l lines ({quoted} env $CMDR_ACCOUNT --shell fish --if-changed \"$CMDR_FINGERPRINT\" 2>/dev/null)
    and test -n \"$lines\"
    and printf '%s\\n' $lines | source
end
"
        ),
        HookShell::Zsh => format!(
            "\
# cmdr: keep this shell's AWS_* variables on the account's accepted token.
_cmdr_refresh() {{
  [[ -n \"${{CMDR_ACCOUNT-}}\" ]] || return 0
  local lines
  lines=\"$({quoted} env \"$CMDR_ACCOUNT\" --shell zsh --if-changed \"${{CMDR_FINGERPRINT-}}\" 2>/dev/null)\" \\
    && [[ -n \"$lines\" ]] && eval \"$lines\"
  return 0
}}
autoload -Uz add-zsh-hook
add-zsh-hook precmd _cmdr_refresh
"
        ),
        HookShell::Bash => format!(
            "\
# cmdr: keep this shell's AWS_* variables on the account's accepted token.
_cmdr_refresh() {{
  local status=$?
  if [ -n \"${{CMDR_ACCOUNT-}}\" ]; then
    local lines
    lines=\"$({quoted} env \"$CMDR_ACCOUNT\" --shell bash --if-changed \"${{CMDR_FINGERPRINT-}}\" 2>/dev/null)\" \\
      && [ -n \"$lines\" ] && eval \"$lines\"
  fi
  return $status
}}
case \";${{PROMPT_COMMAND-}};\" in
  *\";_cmdr_refresh;\"*) ;;
  *) PROMPT_COMMAND=\"_cmdr_refresh${{PROMPT_COMMAND:+;$PROMPT_COMMAND}}\" ;;
esac
"
        ),
    }
}
