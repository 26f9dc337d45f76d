//! `accounts import NAME`: every account and role the signed-in portal of sso-session NAME
//! grants (ListAccounts, ListAccountRoles) becomes an SSO profile in the config file and a
//! bound account. The config file is written as `paste` writes the credentials file
//! (symlinks resolved, under the lock beside it, compare-and-swap on what was read, every
//! other byte and its mode kept); the accounts are added through the daemon's `add`
//! request, pipelined on one connection, once the daemon has seen the new profiles.

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use cmdr_client::{Client, ClientError};
use cmdr_config::replace::{Replaced, lock_beside, replace_if_unchanged, snapshot};
use cmdr_core::text::escape_controls;
use cmdr_proto::{AccountSpec, EventKind, OnChange, Request, TargetKind, TargetSpec};
use cmdr_signin::Portal;
use serde_json::json;

use plan::{Existing, Item, Skipped};

/// How long the daemon may take to see the written profiles.
const SEE_PROFILES: Duration = Duration::from_secs(10);
/// `add` requests in flight at once (the daemon reads 32 per connection).
const WINDOW: usize = 32;
const MAX_TRIES: usize = 5;
const MAX_LEN: u64 = cmdr_config::userfile::MAX_USER_FILE_LEN;

pub struct Options<'a> {
    pub config: Option<&'a Path>,
    pub socket: &'a Path,
    pub name: String,
    pub roles: Vec<String>,
    pub region: Option<String>,
    pub dry_run: bool,
    pub json: bool,
}

pub async fn run(o: Options<'_>) -> ExitCode {
    match try_run(&o).await {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<ClientError>() {
            Some(client) => crate::report::report(client),
            None => {
                eprintln!("cmdrctl: {}", escape_controls(&format!("{err:#}")));
                ExitCode::from(1)
            }
        },
    }
}

/// One item's outcome: the account added, or why not.
struct Outcome {
    item: Item,
    error: Option<String>,
}

async fn try_run(o: &Options<'_>) -> anyhow::Result<ExitCode> {
    let settings = cmdr_config::Settings::load(o.config, None)?;
    let sessions = crate::login::sessions(&settings);
    let config_path = settings.aws_config.display().to_string();
    let (start_url, sso_region) = sessions.get(&o.name).cloned().with_context(|| {
        format!(
            "{config_path}: no [sso-session {}] with sso_start_url and sso_region: sign in with `cmdrctl login {} --portal URL --sso-region R` first",
            o.name, o.name
        )
    })?;
    let portal = Portal {
        session: o.name.clone(),
        start_url,
        region: sso_region,
    };
    let token = cmdr_signin::portal::token(&settings.sso_cache, &portal, chrono::Utc::now())?;
    // The daemon is asked before anything is written: down means nothing changes.
    let mut client = match Client::connect(o.socket, "cmdrctl").await {
        Ok(client) => Some(client),
        Err(err) if o.dry_run => {
            eprintln!("cmdrctl: warning: accounts not checked: {err}");
            None
        }
        Err(err) => return Err(err.into()),
    };
    let accounts: BTreeMap<String, String> = match &mut client {
        Some(c) => c
            .accounts()
            .await?
            .into_iter()
            .map(|a| (a.name, a.profile))
            .collect(),
        None => BTreeMap::new(),
    };
    let mut assignments = cmdr_signin::portal::assignments(&portal, &token).await?;
    if !o.roles.is_empty() {
        let all: BTreeSet<String> = assignments.iter().map(|a| a.role.clone()).collect();
        assignments.retain(|a| o.roles.iter().any(|r| r.eq_ignore_ascii_case(&a.role)));
        if assignments.is_empty() {
            let all: Vec<_> = all.into_iter().collect();
            bail!(
                "{} grants no role named {}; its roles: {}",
                portal.start_url,
                o.roles.join(", "),
                all.join(", ")
            );
        }
    }
    let region = o.region.clone().unwrap_or_else(|| portal.region.clone());
    let path = crate::paste::resolve_symlinks(&settings.aws_config)?;
    if let Some(client) = &mut client
        && !o.dry_run
    {
        // Before the write, so no `profile_added` is missed.
        client.request(Request::Subscribe).await?;
    }
    let (items, skipped) = write_profiles(
        &path,
        &settings.aws_credentials,
        &portal,
        &assignments,
        &accounts,
        &region,
        o.dry_run,
    )?;
    let outcomes = match client {
        Some(mut client) if !o.dry_run => {
            let new: BTreeSet<String> = items
                .iter()
                .filter(|i| i.new_profile)
                .map(|i| i.profile.clone())
                .collect();
            wait_for_profiles(&mut client, new, &config_path).await?;
            add_accounts(&mut client, items, o.region.as_ref()).await?
        }
        _ => items
            .into_iter()
            .map(|item| Outcome { item, error: None })
            .collect(),
    };
    report(o, &portal, &path, &outcomes, &skipped);
    let failed = outcomes.iter().any(|x| x.error.is_some());
    Ok(ExitCode::from(u8::from(failed)))
}

/// Plans against the files as they are and appends the new profiles to the config file,
/// reading and planning again if another program wrote it meanwhile.
fn write_profiles(
    path: &Path,
    credentials: &Path,
    portal: &Portal,
    assignments: &[cmdr_signin::portal::Assignment],
    accounts: &BTreeMap<String, String>,
    region: &str,
    dry_run: bool,
) -> anyhow::Result<(Vec<Item>, Vec<Skipped>)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dry_run {
        cmdr_config::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _lock = match dry_run {
        true => None,
        false => Some(lock_beside(path).with_context(|| format!("cannot lock {}", dir.display()))?),
    };
    for _ in 0..MAX_TRIES {
        let read =
            snapshot(path, MAX_LEN).with_context(|| format!("cannot read {}", path.display()))?;
        let config = read.bytes.clone().unwrap_or_default();
        let creds = match std::fs::read(credentials) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", credentials.display()));
            }
        };
        let cache = BTreeMap::new();
        let view = cmdr_core::parse_view(cmdr_core::Inputs {
            config: &config,
            credentials: &creds,
            sso_cache: &cache,
        })
        .map_err(|errors| {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            anyhow!("{first}: fix it first (`cmdrctl doctor`)")
        })?;
        let profiles: BTreeMap<String, BTreeMap<String, String>> = view
            .profiles
            .into_iter()
            .map(|(name, p)| (name, p.properties))
            .collect();
        let existing = Existing {
            profiles: &profiles,
            sessions: &view.sso_sessions,
            accounts,
        };
        let target = plan::Portal {
            session: &portal.session,
            start_url: &portal.start_url,
        };
        let (items, skipped) = plan::plan(assignments, &target, &existing);
        let Some(bytes) = plan::config_bytes(&config, &items, &portal.session, region) else {
            return Ok((items, skipped));
        };
        if dry_run {
            return Ok((items, skipped));
        }
        match replace_if_unchanged(path, &read, &bytes, 0o600, MAX_LEN)
            .with_context(|| format!("cannot write {}", path.display()))?
        {
            Replaced::Done => return Ok((items, skipped)),
            Replaced::Changed => {}
        }
    }
    bail!(
        "{} kept changing while it was being written; nothing was written",
        path.display()
    )
}

/// Waits until the daemon's view holds every profile in `new` (its `profile_added`
/// events; after `lagged`, its list).
async fn wait_for_profiles(
    client: &mut Client,
    mut new: BTreeSet<String>,
    config: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SEE_PROFILES;
    while !new.is_empty() {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .map_err(|_| {
                anyhow!(
                    "the profiles were written, but cmdrd did not see {} of them within {}s: does it watch {config}? (`cmdrctl status`); run the import again to bind them",
                    new.len(),
                    SEE_PROFILES.as_secs()
                )
            })??
            .ok_or(ClientError::Closed)?;
        match event.kind {
            EventKind::ProfileAdded { profile } => {
                new.remove(&profile);
            }
            EventKind::Lagged { .. } => {
                let seen: BTreeSet<String> = client
                    .profiles()
                    .await?
                    .into_iter()
                    .map(|p| p.name)
                    .collect();
                new.retain(|n| !seen.contains(n));
            }
            _ => {}
        }
    }
    client.request(Request::Unsubscribe).await?;
    Ok(())
}

/// Adds the planned accounts, pipelined; a refusal is that item's error.
async fn add_accounts(
    client: &mut Client,
    items: Vec<Item>,
    region: Option<&String>,
) -> anyhow::Result<Vec<Outcome>> {
    let requests: Vec<Request> = items
        .iter()
        .filter_map(|i| {
            Some(Request::AddAccount(AccountSpec {
                name: i.account.clone()?,
                profile: i.profile.clone(),
                region: region.cloned(),
                target: TargetSpec {
                    target: TargetKind::Aws,
                    endpoint: None,
                },
                on_change: OnChange::Ask,
                portal: None,
            }))
        })
        .collect();
    let mut answers = client.pipeline(requests, WINDOW).await?.into_iter();
    Ok(items
        .into_iter()
        .map(|item| {
            let error = match item.account {
                Some(_) => answers.next().and_then(|a| a.err()).map(|e| e.to_string()),
                None => None,
            };
            Outcome { item, error }
        })
        .collect())
}

fn report(
    o: &Options<'_>,
    portal: &Portal,
    path: &PathBuf,
    outcomes: &[Outcome],
    skipped: &[Skipped],
) {
    let new_profiles = outcomes.iter().filter(|x| x.item.new_profile).count();
    let new_accounts = outcomes
        .iter()
        .filter(|x| x.item.account.is_some() && x.error.is_none())
        .count();
    if o.json {
        let items: Vec<_> = outcomes
            .iter()
            .map(|x| {
                let a = &x.item.assignment;
                json!({
                    "account_id": a.account_id,
                    "account_name": a.account_name,
                    "role": a.role,
                    "profile": x.item.profile,
                    "new_profile": x.item.new_profile,
                    "account": x.item.account.as_ref().or(x.item.bound_to.as_ref()),
                    "new_account": x.item.account.is_some() && x.error.is_none(),
                    "error": x.error,
                })
            })
            .collect();
        let skipped: Vec<_> = skipped
            .iter()
            .map(|s| {
                json!({
                    "account_id": s.assignment.account_id,
                    "account_name": s.assignment.account_name,
                    "role": s.assignment.role,
                    "reason": s.reason,
                })
            })
            .collect();
        crate::output::print_json(&json!({
            "session": portal.session,
            "portal": portal.start_url,
            "path": path,
            "dry_run": o.dry_run,
            "profiles_added": new_profiles,
            "accounts_added": new_accounts,
            "items": items,
            "skipped": skipped,
        }));
        return;
    }
    let (would, verb) = if o.dry_run {
        ("would ", "add")
    } else {
        ("", "added")
    };
    for x in outcomes {
        let a = &x.item.assignment;
        let profile = if x.item.new_profile {
            format!("{would}{verb} profile {}", x.item.profile)
        } else {
            format!("kept profile {}", x.item.profile)
        };
        let account = match (&x.item.account, &x.item.bound_to, &x.error) {
            (_, _, Some(err)) => format!("account not added: {err}"),
            (Some(name), _, None) => format!("{would}{verb} account {name}"),
            (None, Some(bound), None) => format!("already bound to account {bound}"),
            (None, None, None) => String::new(),
        };
        println!(
            "{}",
            escape_controls(&format!(
                "{} {} {}: {profile}, {account}",
                a.account_id, a.account_name, a.role
            ))
        );
    }
    for s in skipped {
        let a = &s.assignment;
        println!(
            "{}",
            escape_controls(&format!(
                "skipped {} {}: {}",
                a.account_id, a.account_name, s.reason
            ))
        );
    }
    let summary = if o.dry_run {
        format!(
            "dry run of {} (sso-session {}): would add {new_profiles} profiles to {} and {new_accounts} accounts; nothing written",
            portal.start_url,
            portal.session,
            path.display()
        )
    } else {
        format!(
            "imported from {} (sso-session {}): added {new_profiles} profiles to {} and {new_accounts} accounts",
            portal.start_url,
            portal.session,
            path.display()
        )
    };
    println!("{}", escape_controls(&summary));
}
