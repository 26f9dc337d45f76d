//! `cmdrctl paste`: reads an "Option 2" block (or a "Set AWS environment variables" one) on
//! stdin or from the clipboard and writes it into the credentials file. Works without the
//! daemon. The write (`paste/write.rs`) is locked on the file's directory and a
//! compare-and-swap of what was read, atomic, through symlinks to their target, keeping
//! the file's mode, refusing a read-only file unless forced, with a bounded number of
//! backups in cmdr's own data directory (never beside a symlink's target, which may be a
//! dotfiles repository). A running daemon is asked (`paste/daemon.rs`) whether it watches
//! that file and which accounts use the pasted AWS account.

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use cmdr_core::paste::{MAX_BLOCK_LEN, parse_block, profile_name_problem};
use cmdr_core::text::escape_controls;

mod daemon;
mod noecho;
use cmdr_config::paste as write;

pub struct Options<'a> {
    pub config: Option<&'a Path>,
    pub socket: &'a Path,
    pub profile: Option<String>,
    /// Read the block from the clipboard instead of stdin.
    pub clipboard: bool,
    /// Clear the clipboard afterwards (also `[paste] clear_clipboard` in config.toml).
    pub clear_clipboard: bool,
    /// Checked by the CLI (`cmdr_core::input`): in the future, within the longest session.
    pub expires: Option<DateTime<Utc>>,
    /// Write even if the file is read-only.
    pub force: bool,
    pub json: bool,
}

/// What a paste did; `paste --json` prints exactly this.
#[derive(serde::Serialize)]
struct Pasted {
    profile: String,
    path: String,
    backup: Option<String>,
    expires_at: Option<String>,
    /// False when the file already held exactly this: nothing was written.
    changed: bool,
}

/// The block names no profile and none was given: a usage error.
#[derive(Debug)]
struct NoProfile;

impl std::fmt::Display for NoProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the input names no profile (no `[profile]` header): pass --profile NAME")
    }
}

impl std::error::Error for NoProfile {}

pub async fn run(options: Options<'_>) -> ExitCode {
    let json = options.json;
    match paste(options).await {
        Ok(done) => {
            let message = if done.changed {
                let mut message = format!("wrote profile `{}` to {}", done.profile, done.path);
                if let Some(at) = &done.expires_at {
                    message.push_str(&format!(" (expires {at})"));
                }
                if let Some(b) = &done.backup {
                    message.push_str(&format!("; previous file kept as {b}"));
                }
                message
            } else {
                format!(
                    "profile `{}` in {} already holds exactly this: nothing changed",
                    done.profile, done.path
                )
            };
            eprintln!("{}", escape_controls(&message));
            // The secret just written is as readable as the file: say so, as `doctor` does.
            if let Some(warning) = cmdr_config::userfile::exposed_warning(Path::new(&done.path)) {
                eprintln!("warning: {}", escape_controls(&warning));
            }
            if json {
                crate::output::print_json(&done);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cmdrctl: paste: {}", escape_controls(&format!("{err:#}")));
            ExitCode::from(if err.is::<NoProfile>() { 2 } else { 1 })
        }
    }
}

async fn paste(options: Options<'_>) -> anyhow::Result<Pasted> {
    let mut input = Vec::new();
    if options.clipboard {
        input = crate::clipboard::read(MAX_BLOCK_LEN + 1)?;
    } else {
        let stdin = std::io::stdin();
        let quiet = if stdin.is_terminal() {
            let quiet = noecho::NoEcho::on_stdin();
            eprintln!(
                "paste the block{}, then {}",
                if quiet.is_some() {
                    " (it is not shown)"
                } else {
                    ""
                },
                if cfg!(windows) {
                    "Ctrl-Z and Enter"
                } else {
                    "Ctrl-D"
                }
            );
            quiet
        } else {
            None
        };
        stdin
            .take(MAX_BLOCK_LEN as u64 + 1)
            .read_to_end(&mut input)
            .context("cannot read standard input")?;
        if let Some(quiet) = quiet {
            drop(quiet);
            let lines = input
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            eprintln!("read {lines} lines");
        }
    }
    let result = paste_input(&options, &input).await;
    if options.clipboard && result.is_ok() {
        clipboard_after(&options, &input);
    }
    zeroize_bytes(&mut input);
    result
}

/// Clears a buffer that held the block before it is freed.
fn zeroize_bytes(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// After a successful paste from the clipboard the secret is still there: clear it when
/// asked (and only if it still holds what was pasted), else say how.
fn clipboard_after(options: &Options<'_>, input: &[u8]) {
    let configured = cmdr_config::PasteSettings::load(options.config)
        .map(|s| s.clear_clipboard)
        .unwrap_or(false);
    if !(options.clear_clipboard || configured) {
        eprintln!(
            "note: the keys are still on the clipboard; `--clear-clipboard` (or `clear_clipboard = true` under [paste] in cmdr's config.toml) clears it after a paste"
        );
        return;
    }
    match crate::clipboard::read(MAX_BLOCK_LEN + 1) {
        Ok(mut now) => {
            let same = now == input;
            zeroize_bytes(&mut now);
            if !same {
                eprintln!("the clipboard holds something else now: left as it is");
                return;
            }
        }
        Err(err) => {
            eprintln!("warning: the clipboard was not cleared: {err:#}");
            return;
        }
    }
    match crate::clipboard::clear() {
        Ok(()) => eprintln!("cleared the clipboard"),
        Err(err) => eprintln!("warning: the clipboard was not cleared: {err:#}"),
    }
}

async fn paste_input(options: &Options<'_>, input: &[u8]) -> anyhow::Result<Pasted> {
    let source = if options.clipboard {
        "the clipboard"
    } else {
        "the input"
    };
    let block =
        parse_block(input).with_context(|| format!("{source} is not an \"Option 2\" block"))?;
    let chose_profile = options.profile.is_some();
    let profile = match options.profile.clone().or_else(|| block.profile.clone()) {
        Some(p) => match profile_name_problem(&p) {
            None => p,
            Some(why) if chose_profile => bail!("invalid profile name: {why}"),
            Some(why) => bail!(
                "the block's profile name cannot be used: {why}; nothing was written: pass --profile NAME to paste it under a name every SDK reads"
            ),
        },
        None => return Err(NoProfile.into()),
    };
    let expires = options
        .expires
        .or(block.expires)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let settings = cmdr_config::Settings::load(options.config, None)?;
    let path = resolve_symlinks(&settings.aws_credentials)?;
    if !options.force {
        refuse_read_only(&path)?;
    }
    let written = write::write(
        &path,
        &settings.data_dir,
        &profile,
        &block,
        expires.as_deref(),
    )?;
    if written.retries > 0 {
        eprintln!(
            "note: another program wrote {} while pasting; the paste was applied to its version ({} re-read(s))",
            escape_controls(&path.display().to_string()),
            written.retries
        );
    }
    // The daemon, if one runs: does it watch this file, does an account use this AWS account?
    if let Some(daemon) = daemon::ask(options.socket).await {
        let notes = [
            daemon::file_warning(&daemon, &path),
            daemon::portal_hint(&daemon, &profile, chose_profile),
        ];
        for note in notes.into_iter().flatten() {
            eprintln!("{}", escape_controls(&note));
        }
    }
    Ok(Pasted {
        profile,
        path: path.display().to_string(),
        backup: written.backup.map(|b| b.display().to_string()),
        expires_at: expires,
        changed: written.changed,
    })
}

/// A credentials file without its owner's write bit was made read-only on purpose (even
/// root, who could write it, is refused): replacing it needs `--force`.
#[cfg(unix)]
fn refuse_read_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o200 == 0 {
        bail!(
            "{} is read-only (mode {mode:o}); nothing was written: make it writable (`chmod u+w {}`) or pass --force (its mode is kept)",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_read_only(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => bail!(
            "{} is read-only; nothing was written: make it writable or pass --force",
            path.display()
        ),
        _ => Ok(()),
    }
}

pub(crate) use cmdr_config::paste::resolve_symlinks;
