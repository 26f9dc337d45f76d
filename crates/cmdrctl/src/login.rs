//! `login` and `logout`: IAM Identity Center sign-in through cmdr-signin, without the
//! daemon (as `aws sso login`). NAME is an sso-session in the config file, or with
//! `--portal URL --sso-region R` a new one (named after the URL's host when NAME is absent).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use cmdr_core::{Inputs, parse_view_or};
use cmdr_signin::{Flow, Paths, Portal};

/// The sso-sessions of the config file: name → (start URL, region).
pub(crate) fn sessions(settings: &cmdr_config::Settings) -> BTreeMap<String, (String, String)> {
    sections(settings)
        .into_iter()
        .filter_map(|(name, props)| {
            let url = props.get("sso_start_url")?.clone();
            let region = props.get("sso_region")?.clone();
            Some((name, (url, region)))
        })
        .collect()
}

/// Every `[sso-session]` section of the config file, complete or not: name → properties.
pub(crate) fn sections(
    settings: &cmdr_config::Settings,
) -> BTreeMap<String, BTreeMap<String, String>> {
    // Bounded, and never blocked by a FIFO or device where the file should be.
    let config = match cmdr_config::userfile::read_bounded(
        &settings.aws_config,
        cmdr_config::userfile::MAX_USER_FILE_LEN,
    ) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            eprintln!(
                "cmdrctl: cannot read {}: {err}",
                cmdr_core::text::escape_controls(&settings.aws_config.display().to_string())
            );
            std::process::exit(1);
        }
    };
    let cache = BTreeMap::new();
    let (view, _) = parse_view_or(
        Inputs {
            config: &config,
            credentials: b"",
            sso_cache: &cache,
        },
        [b"", b""],
        cmdr_core::Detail::FULL,
    );
    view.unwrap_or_default().sso_sessions
}

/// The portal NAME means, and whether its section must be added to the config file.
async fn resolve(
    settings: &cmdr_config::Settings,
    name: Option<String>,
    portal: Option<String>,
    region: Option<String>,
) -> anyhow::Result<(Portal, bool)> {
    let known = sessions(settings);
    let config = settings.aws_config.display();
    if let Some(url) = portal {
        let region = region.context("--portal needs --sso-region")?;
        let session = match name {
            Some(n) => n,
            None => cmdr_signin::session::name_from_url(&url)
                .with_context(|| format!("cannot name a session after {url}; give NAME"))?,
        };
        if let Some((u, r)) = known.get(&session) {
            if *u != url || *r != region {
                bail!("{config}: [sso-session {session}] already names {u} in {r}");
            }
            return Ok((
                Portal {
                    session,
                    start_url: url,
                    region,
                },
                false,
            ));
        }
        return Ok((
            Portal {
                session,
                start_url: url,
                region,
            },
            true,
        ));
    }
    let session = match name {
        Some(n) => n,
        None if known.len() == 1 => known.keys().next().cloned().unwrap_or_default(),
        None => bail!(
            "{config}: say which sso-session to sign in to (NAME), or give --portal URL --sso-region R"
        ),
    };
    if let Some((url, region)) = known.get(&session) {
        let portal = Portal {
            session,
            start_url: url.clone(),
            region: region.clone(),
        };
        return Ok((portal, false));
    }
    // An account: its portal, as the daemon knows it, names an sso-session.
    if let Some(url) = account_portal(settings, &session).await
        && let Some((name, (_, region))) = known
            .iter()
            .find(|(_, (u, _))| cmdr_signin::session::same_start_url(u, &url))
    {
        let portal = Portal {
            session: name.clone(),
            start_url: url,
            region: region.clone(),
        };
        return Ok((portal, false));
    }
    bail!(
        "{config}: no [sso-session {session}] (with sso_start_url and sso_region), nor an account of that name whose portal is one; give --portal URL --sso-region R to add it (for an account: `cmdrctl accounts edit NAME --portal URL --sso-region R`)"
    )
}

/// Waits, at most 3 s, until a running cmdrd no longer counts `session` signed in (its
/// watcher sees the removed token file within milliseconds): once `logout` returns, what
/// runs next is refused, not served from the old sign-in (walkthrough of 2026-12-06).
/// True when signed out there, or no cmdrd runs. No event says "signed out": `status` is
/// asked again every 50 ms.
async fn daemon_signed_out(settings: &cmdr_config::Settings, session: &str) -> bool {
    let Ok(mut client) = cmdr_client::Client::connect(&settings.socket.path, "cmdrctl").await
    else {
        return true;
    };
    let ask = async {
        loop {
            match client.request(cmdr_proto::Request::Status).await {
                Ok(cmdr_proto::Response::Status(status))
                    if status
                        .portals
                        .iter()
                        .any(|p| p.session == session && p.state == "signed_in") => {}
                Ok(cmdr_proto::Response::Status(_)) => return true,
                _ => return false,
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .unwrap_or(false)
}

/// The portal of account NAME, if the daemon runs and answers within 2 s.
async fn account_portal(settings: &cmdr_config::Settings, name: &str) -> Option<String> {
    let ask = async {
        let mut client = cmdr_client::Client::connect(&settings.socket.path, "cmdrctl")
            .await
            .ok()?;
        let request = cmdr_proto::Request::ShowAccount {
            name: name.to_owned(),
        };
        match client.request(request).await.ok()? {
            cmdr_proto::Response::Account(info) => info.portal,
            _ => None,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// No browser can open here: an SSH session, or no display on Linux.
fn no_browser_here() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    set("SSH_CONNECTION")
        || set("SSH_TTY")
        || (cfg!(target_os = "linux") && !set("DISPLAY") && !set("WAYLAND_DISPLAY"))
}

fn paths(settings: &cmdr_config::Settings) -> Paths {
    Paths {
        config: settings.aws_config.clone(),
        sso_cache: settings.sso_cache.clone(),
    }
}

async fn try_login(
    config_file: Option<&std::path::Path>,
    name: Option<String>,
    portal: Option<String>,
    region: Option<String>,
    device_code: bool,
    no_browser: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let settings = cmdr_config::Settings::load(config_file, None)?;
    let (portal, add) = resolve(&settings, name, portal, region).await?;
    let token = sign_in(&settings, &portal, add, device_code, no_browser).await?;
    if json {
        crate::output::print_json(&serde_json::json!({
            "session": portal.session,
            "portal": portal.start_url,
            "region": portal.region,
            "expires_at": token.expires_at,
        }));
    } else {
        println!(
            "signed in to {} (sso-session {}) until {}",
            portal.start_url, portal.session, token.expires_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The sso-session of the config file named `session`, as a portal to sign in to.
pub(crate) fn session_portal(settings: &cmdr_config::Settings, session: &str) -> Option<Portal> {
    let (url, region) = sessions(settings).remove(session)?;
    Some(Portal {
        session: session.to_owned(),
        start_url: url,
        region,
    })
}

/// Signs in to `portal` (the browser with PKCE, or the device code flow when asked or
/// when no browser can open here) and adds its `[sso-session]` section when `add`.
/// `login` and `renew` both sign in through this.
pub(crate) async fn sign_in(
    settings: &cmdr_config::Settings,
    portal: &Portal,
    add: bool,
    device_code: bool,
    no_browser: bool,
) -> anyhow::Result<cmdr_signin::CachedToken> {
    let flow = if device_code || no_browser_here() {
        Flow::DeviceCode
    } else {
        Flow::Pkce { open: !no_browser }
    };
    let say = |text: &str| eprintln!("{text}");
    let token = cmdr_signin::login(portal, &paths(settings), flow, &say).await?;
    if add {
        add_session(settings, portal)?;
    }
    Ok(token)
}

/// Adds the portal's `[sso-session]` section to the config file with paste's safe write:
/// through symlinks (stow, chezmoi), under the lock beside the file that paste takes too,
/// atomic, every other byte and the file's mode kept. `login` and `accounts add/edit
/// --sso-region` both add sections through this.
pub(crate) fn add_session(settings: &cmdr_config::Settings, portal: &Portal) -> anyhow::Result<()> {
    let path = crate::paste::resolve_symlinks(&settings.aws_config)?;
    let _lock = cmdr_config::replace::lock_beside(&path)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    cmdr_signin::session::add_section(&path, portal).with_context(|| {
        format!(
            "cannot add [sso-session {}] to {}",
            portal.session,
            path.display()
        )
    })
}

async fn try_logout(
    config_file: Option<&std::path::Path>,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let settings = cmdr_config::Settings::load(config_file, None)?;
    let (portal, _) = match resolve(&settings, name.clone(), None, None).await {
        Ok(found) => found,
        // Not login's hint (`--portal`, which logout does not take): what there is.
        Err(err) => {
            let known: Vec<String> = sessions(&settings).into_keys().collect();
            let Some(name) = name else { return Err(err) };
            bail!(
                "{}: no sso-session {name} to sign out of (known: {})",
                settings.aws_config.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
    };
    if cmdr_signin::logout(&portal, &paths(&settings)).await? {
        if !daemon_signed_out(&settings, &portal.session).await {
            eprintln!(
                "warning: cmdrd still counts sso-session {} signed in; it stops using it once it sees the token file gone",
                portal.session
            );
        }
        println!(
            "signed out of {} (sso-session {})",
            portal.start_url, portal.session
        );
    } else {
        println!(
            "not signed in to {} (sso-session {})",
            portal.start_url, portal.session
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        // A name from the command line or the files: no control character passes.
        eprintln!(
            "cmdrctl: {}",
            cmdr_core::text::escape_controls(&format!("{e:#}"))
        );
        ExitCode::from(1)
    })
}

pub async fn login(
    config_file: Option<&std::path::Path>,
    name: Option<String>,
    portal: Option<String>,
    region: Option<String>,
    device_code: bool,
    no_browser: bool,
    json: bool,
) -> ExitCode {
    exit(
        try_login(
            config_file,
            name,
            portal,
            region,
            device_code,
            no_browser,
            json,
        )
        .await,
    )
}

pub async fn logout(config_file: Option<&std::path::Path>, name: Option<String>) -> ExitCode {
    exit(try_logout(config_file, name).await)
}
