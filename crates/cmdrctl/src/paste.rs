//! `cmdrctl paste`: reads an "Option 2" block (or a "Set AWS environment variables" one) on
//! stdin and writes it into the credentials file. Works without the daemon. Locked (a
//! lock file in cmdr's data directory), re-read just before the write, atomic (temp file, fsync, rename,
//! fsync of the directory), through symlinks to their target, keeping the file's mode,
//! refusing a read-only file unless forced, with a bounded number of backups in cmdr's own
//! data directory (never beside a symlink's target, which may be a dotfiles repository).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use cmdr_core::FileKind;
use cmdr_core::paste::{MAX_BLOCK_LEN, apply, parse_block, valid_profile_name};
use cmdr_core::profile::check_file;

/// Backups kept in `<data dir>/backups/` (`credentials.cmdr-backup-<time>`, mode 0600).
pub const KEEP_BACKUPS: usize = 5;
const MAX_RETRIES: usize = 5;

pub struct Options<'a> {
    pub config: Option<&'a Path>,
    pub profile: Option<String>,
    /// Read the block from the clipboard instead of stdin.
    pub clipboard: bool,
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

pub fn run(options: Options<'_>) -> ExitCode {
    let json = options.json;
    match paste(options) {
        Ok(done) => {
            let mut message = format!("wrote profile `{}` to {}", done.profile, done.path);
            if let Some(at) = &done.expires_at {
                message.push_str(&format!(" (expires {at})"));
            }
            if let Some(b) = &done.backup {
                message.push_str(&format!("; previous file kept as {b}"));
            }
            eprintln!("{message}");
            if json {
                crate::output::print_json(&done);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cmdrctl: paste: {err:#}");
            ExitCode::from(if err.is::<NoProfile>() { 2 } else { 1 })
        }
    }
}

fn paste(options: Options<'_>) -> anyhow::Result<Pasted> {
    let mut input = Vec::new();
    if options.clipboard {
        input = crate::clipboard::read(MAX_BLOCK_LEN + 1)?;
    } else {
        std::io::stdin()
            .take(MAX_BLOCK_LEN as u64 + 1)
            .read_to_end(&mut input)
            .context("cannot read standard input")?;
    }
    let source = if options.clipboard {
        "the clipboard"
    } else {
        "the input"
    };
    let block = parse_block(&input);
    input.fill(0);
    let block = block.with_context(|| format!("{source} is not an \"Option 2\" block"))?;
    let profile = match options.profile.or_else(|| block.profile.clone()) {
        Some(p) if valid_profile_name(&p) => p,
        Some(p) => bail!("invalid profile name `{}`", p.escape_debug()),
        None => return Err(NoProfile.into()),
    };
    let expires = options
        .expires
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
    let settings = cmdr_config::Settings::load(options.config, None)?;
    let path = resolve_symlinks(&settings.aws_credentials)?;
    if !options.force {
        refuse_read_only(&path)?;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    cmdr_config::create_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".to_owned());
    // The lock lives in cmdr's data directory too: nothing of cmdr's lands in a dotfiles
    // repository the file may be linked from.
    cmdr_config::create_private_dir(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    let _lock = lock(&settings.data_dir.join("paste.lock"))?;

    for _ in 0..MAX_RETRIES {
        let before = read_existing(&path)?;
        let text = match &before {
            Some(bytes) => std::str::from_utf8(bytes).with_context(|| {
                format!(
                    "{} is not valid UTF-8; fix it first (`cmdrctl doctor`)",
                    path.display()
                )
            })?,
            None => "",
        };
        if let Err(e) = check_file(FileKind::Credentials, text.as_bytes()) {
            bail!(
                "{} does not parse ({}); fix it first (`cmdrctl doctor`)",
                path.display(),
                e
            );
        }
        let after = apply(text, &profile, &block, expires.as_deref());
        verify(&after, &profile, &block)?;
        // Someone (an editor, another tool) changed the file meanwhile: start over.
        if read_existing(&path)? != before {
            continue;
        }
        let backup = match &before {
            Some(bytes) => Some(backup(&settings.data_dir.join("backups"), &name, bytes)?),
            None => None,
        };
        cmdr_config::write_atomic(&path, after.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(Pasted {
            profile,
            path: path.display().to_string(),
            backup: backup.map(|b| b.display().to_string()),
            expires_at: expires,
        });
    }
    bail!("{} kept changing while writing; try again", path.display())
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

/// The result must parse and give exactly the pasted keys to the SDKs.
fn verify(after: &str, profile: &str, block: &cmdr_core::paste::Block) -> anyhow::Result<()> {
    let cache = Default::default();
    let view = cmdr_core::parse_view(cmdr_core::Inputs {
        config: b"",
        credentials: after.as_bytes(),
        sso_cache: &cache,
    })
    .map_err(|_| {
        anyhow::anyhow!("internal error: the edited file would not parse; nothing was written")
    })?;
    let got = view.get(profile).and_then(|p| p.credentials.as_ref());
    let ok = got.is_some_and(|c| {
        c.access_key_id == block.access_key_id
            && c.secret_access_key == block.secret_access_key
            && c.session_token == block.session_token
    });
    if !ok {
        bail!(
            "internal error: the edited file would not hold the pasted keys; nothing was written"
        );
    }
    Ok(())
}

/// The same bounded reader as the daemon's: a FIFO or device is refused, not waited on,
/// and a file the daemon would refuse as too large is not rewritten either.
fn read_existing(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match cmdr_client::userfile::read_bounded(path, cmdr_client::userfile::MAX_USER_FILE_LEN) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Follows a chain of symlinks (stow, chezmoi) to the real file, which is what we replace.
pub(crate) fn resolve_symlinks(path: &Path) -> anyhow::Result<PathBuf> {
    let mut current = path.to_owned();
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(target) => {
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Err(_) => return Ok(current),
        }
    }
    bail!("too many levels of symlinks at {}", path.display())
}

pub(crate) fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// Keeps the previous file in `dir` (created 0700), mode 0600, and prunes all but the
/// newest [`KEEP_BACKUPS`].
fn backup(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    cmdr_config::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let prefix = format!("{name}.cmdr-backup-");
    let path = dir.join(format!(
        "{prefix}{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    ));
    cmdr_config::write_atomic(&path, bytes, 0o600)
        .with_context(|| format!("cannot write backup {}", path.display()))?;
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    backups.sort();
    let excess = backups.len().saturating_sub(KEEP_BACKUPS);
    for old in &backups[..excess] {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}
