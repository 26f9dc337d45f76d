//! `accounts add|edit NAME --portal URL --sso-region R`: the account's portal becomes an
//! `[sso-session]` of the config file, as `login --portal URL --sso-region R` adds one, so
//! cmdrd keeps that portal and renews the account through it, and `cmdrctl login` signs in
//! to it. Nothing is added when a section already names the start URL.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use cmdr_signin::Portal;
use cmdr_signin::session::same_start_url;

/// What the config file needs for the portal an account names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// `[sso-session NAME]` already has this start URL, in this region.
    Known(String),
    /// This section is added once cmdrd has taken the account.
    Add(Portal),
}

/// Decides before the daemon is asked, so a conflict changes nothing: a section with the
/// start URL in another region is refused (which region is right is the user's call).
pub(crate) fn plan(
    settings: &cmdr_config::Settings,
    url: &str,
    region: &str,
    account: &str,
) -> anyhow::Result<Plan> {
    decide(&crate::login::sections(settings), url, region, account)
        .map_err(|why| anyhow::anyhow!("{}: {why}", settings.aws_config.display()))
}

fn decide(
    sections: &BTreeMap<String, BTreeMap<String, String>>,
    url: &str,
    region: &str,
    account: &str,
) -> anyhow::Result<Plan> {
    let found = sections.iter().find(|(_, props)| {
        props
            .get("sso_start_url")
            .is_some_and(|u| same_start_url(u, url))
    });
    if let Some((name, props)) = found {
        return match props.get("sso_region") {
            Some(r) if r == region => Ok(Plan::Known(name.clone())),
            Some(r) => bail!(
                "[sso-session {name}] already names {url} in {r}, not {region}: give --sso-region {r}, or change that section"
            ),
            None => bail!(
                "[sso-session {name}] names {url} without sso_region: add `sso_region = {region}` to it"
            ),
        };
    }
    // Named after the URL's host as `login --portal` names it, never taking a name that
    // is in use (also by a section without a start URL or region).
    let base = cmdr_signin::session::name_from_url(url).unwrap_or_else(|| account.to_owned());
    let session = std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|name| !sections.contains_key(name))
        .unwrap_or(base);
    Ok(Plan::Add(Portal {
        session,
        start_url: url.to_owned(),
        region: region.to_owned(),
    }))
}

/// After cmdrd took the account: adds the section if planned and says how to sign in (on
/// stderr with `--json`, whose stdout is the account alone).
pub(crate) fn finish(
    settings: &cmdr_config::Settings,
    plan: Plan,
    account: &str,
    json: bool,
) -> ExitCode {
    let say = |text: String| {
        if json {
            eprintln!("cmdrctl: {text}");
        } else {
            println!("{text}");
        }
    };
    let config = settings.aws_config.display();
    match plan {
        Plan::Known(session) => {
            say(format!(
                "portal: [sso-session {session}] in {config}; sign in with `cmdrctl login {session}`"
            ));
            ExitCode::SUCCESS
        }
        Plan::Add(portal) => match crate::login::add_session(settings, &portal) {
            Ok(()) => {
                say(format!(
                    "added [sso-session {}] ({} in {}) to {config}; sign in with `cmdrctl login {}`",
                    portal.session, portal.start_url, portal.region, portal.session
                ));
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!(
                    "cmdrctl: account {account} is bound, but its portal's section was not added: {err:#}; `cmdrctl login --portal {} --sso-region {}` adds it",
                    portal.start_url, portal.region
                );
                ExitCode::from(crate::EXIT_FAILURE)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(list: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
        list.iter()
            .map(|(name, props)| {
                let props = props
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                ((*name).to_owned(), props)
            })
            .collect()
    }

    const URL: &str = "https://acme.awsapps.com/start";

    fn added(session: &str) -> Plan {
        Plan::Add(Portal {
            session: session.into(),
            start_url: URL.into(),
            region: "us-east-1".into(),
        })
    }

    #[test]
    fn a_portal_gets_a_section_unless_one_names_it() {
        let check = |list: &[(&str, &[(&str, &str)])], want: Result<Plan, &str>| {
            let got = decide(&sections(list), URL, "us-east-1", "prod");
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{list:?}"),
                (Err(err), Err(part)) => assert!(err.to_string().contains(part), "{err}"),
                (got, want) => panic!("{list:?}: {got:?} vs {want:?}"),
            }
        };
        check(&[], Ok(added("acme")));
        check(
            &[(
                "corp",
                &[
                    ("sso_start_url", "https://acme.awsapps.com/start/"),
                    ("sso_region", "us-east-1"),
                ],
            )],
            Ok(Plan::Known("corp".into())),
        );
        check(
            &[(
                "corp",
                &[("sso_start_url", URL), ("sso_region", "eu-west-1")],
            )],
            Err("already names"),
        );
        check(
            &[("corp", &[("sso_start_url", URL)])],
            Err("without sso_region"),
        );
        // The host's name is taken by another portal, or by an unfinished section.
        check(
            &[
                (
                    "acme",
                    &[
                        ("sso_start_url", "https://other.example/start"),
                        ("sso_region", "us-east-1"),
                    ],
                ),
                ("acme-2", &[]),
            ],
            Ok(added("acme-3")),
        );
    }
}
