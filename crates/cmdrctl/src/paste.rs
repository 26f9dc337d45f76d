//! `cmdrctl paste`: reads an "Option 2" block on stdin and writes it into the credentials
//! file. Works without the daemon. Locked (a sidecar lock file), re-read just before the
//! write, atomic (temp file, fsync, rename, fsync of the directory), through symlinks to
//! their target, keeping the file's mode, with a bounded number of backups.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{SecondsFormat, Utc};
use cmdr_core::FileKind;
use cmdr_core::paste::{MAX_BLOCK_LEN, apply, parse_block, valid_profile_name};
use cmdr_core::profile::check_file;

/// Backups kept next to the file (`.credentials.cmdr-backup-<time>`, mode 0600).
pub const KEEP_BACKUPS: usize = 5;
const MAX_RETRIES: usize = 5;

pub struct Options<'a> {
    pub config: Option<&'a Path>,
    pub profile: Option<String>,
    /// Read the block from the clipboard instead of stdin.
    pub clipboard: bool,
    pub expires_in: Option<String>,
    pub expires_at: Option<String>,
}

pub fn run(options: Options<'_>) -> ExitCode {
    match paste(options) {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cmdrctl: paste: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn paste(options: Options<'_>) -> anyhow::Result<String> {
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
        None => bail!("{source} has no `[profile]` header: pass --profile NAME"),
    };
    let expires = expiry(options.expires_in.as_deref(), options.expires_at.as_deref())?;
    let settings = cmdrd::Settings::load(options.config, None)?;
    let path = resolve_symlinks(&settings.aws_credentials)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    cmdrd::store::create_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".to_owned());
    let _lock = lock(&dir.join(format!(".{name}.cmdr.lock")))?;

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
            Some(bytes) => Some(backup(&dir, &name, bytes)?),
            None => None,
        };
        cmdrd::store::write_atomic(&path, after.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut message = format!("wrote profile `{profile}` to {}", path.display());
        if let Some(at) = &expires {
            message.push_str(&format!(" (expires {at})"));
        }
        if let Some(b) = backup {
            message.push_str(&format!("; previous file kept as {}", b.display()));
        }
        return Ok(message);
    }
    bail!("{} kept changing while writing; try again", path.display())
}

fn expiry(expires_in: Option<&str>, expires_at: Option<&str>) -> anyhow::Result<Option<String>> {
    let at = match (expires_in, expires_at) {
        (Some(d), _) => {
            let duration = cmdr_core::parse_duration(d)
                .with_context(|| format!("invalid --expires-in `{d}` (use e.g. 1h, 12h, 90m)"))?;
            Utc::now() + duration
        }
        (None, Some(t)) => cmdr_core::expiry::parse_timestamp(t).with_context(|| {
            format!("invalid --expires-at `{t}` (use RFC 3339, e.g. 2026-11-29T18:00:00Z)")
        })?,
        (None, None) => return Ok(None),
    };
    Ok(Some(at.to_rfc3339_opts(SecondsFormat::Secs, true)))
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

fn read_existing(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Follows a chain of symlinks (stow, chezmoi) to the real file, which is what we replace.
fn resolve_symlinks(path: &Path) -> anyhow::Result<PathBuf> {
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

fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
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

/// Keeps the previous file, mode 0600, and prunes all but the newest [`KEEP_BACKUPS`].
fn backup(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let prefix = format!(".{name}.cmdr-backup-");
    let path = dir.join(format!(
        "{prefix}{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    ));
    cmdrd::store::write_atomic(&path, bytes, 0o600)
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
