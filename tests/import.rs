//! `accounts import`: a signed-in portal's accounts and roles (the loopback Identity
//! Center, paged) become SSO profiles in the config file and bound accounts, through the
//! real binaries; boto3 resolves credentials from a written profile.

use std::time::Instant;

use serde_json::Value;

use crate::sandbox::{Sandbox, mode, set_mode, stderr, stdout};
use crate::signin::IdentityCenter;

const SESSION: &str = "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\nsso_registration_scopes = sso:account:access\n";

/// A running daemon in a sandbox whose config file is `config`, signed in to sso-session
/// `corp` at the loopback Identity Center (device code, approved at once).
fn signed_in(ic: &IdentityCenter, config: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.set_env("AWS_ENDPOINT_URL_SSO_OIDC", &ic.url);
    sb.set_env("AWS_ENDPOINT_URL_SSO", &ic.url);
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(sb.config(), config).expect("config");
    sb.start();
    ic.post("/_test/auto_approve", "{\"on\": true}");
    let out = sb.ctl(&["login", "corp", "--device-code"]);
    assert!(out.status.success(), "login: {}", stderr(&out));
    let token: Value = serde_json::from_slice(
        &std::fs::read(crate::signin::cache_file(&sb, "corp")).expect("cache file"),
    )
    .expect("json");
    // The access token joins the sandbox's secret scan (log, state, events).
    sb.remember_secrets(&format!(
        "aws_session_token = {}",
        token["accessToken"].as_str().unwrap_or_default()
    ));
    sb
}

fn accounts(sb: &Sandbox) -> Vec<(String, String)> {
    let list = sb.json(&["accounts", "list"]);
    let mut out: Vec<_> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_owned(),
                a["profile"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn import_pages_plans_resolves_collisions_keeps_every_byte_and_binds_accounts() {
    let ic = IdentityCenter::start();
    // One account or role per page: paging is followed to the end.
    ic.post("/_test/accounts", "{\"pageCap\": 1}");
    let original = format!(
        "# my settings\n[default]\nregion = us-east-1\n\n[profile acme-AdministratorAccess]\nregion = eu-north-1\n; same name as a planned one, unrelated\n\n[profile mine]\nsso_session = corp\nsso_account_id = 333333333333\nsso_role_name = ReadOnly\nregion = eu-west-1\n\n{SESSION}output = json"
    );
    let sb = signed_in(&ic, &original);
    set_mode(&sb.config(), 0o644);
    sb.ctl(&["accounts", "add", "mine-acct", "--profile", "mine"]);
    let out = sb.ctl(&[
        "accounts",
        "add",
        "acme-dev-ReadOnly",
        "--profile",
        "acme-AdministratorAccess",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = accounts(&sb);

    // The dry run shows the plan and changes nothing.
    let plan = sb.json(&["accounts", "import", "corp", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["profiles_added"], 5, "{plan:#}");
    assert_eq!(plan["accounts_added"], 5, "{plan:#}");
    assert_eq!(
        std::fs::read_to_string(sb.config()).expect("config"),
        original
    );
    assert_eq!(accounts(&sb), before);
    let text = sb.ctl(&["accounts", "import", "corp", "--dry-run"]);
    assert!(
        stdout(&text).contains("would add profile acme-ReadOnly, would add account acme-ReadOnly")
            && stdout(&text).contains("nothing written"),
        "{}",
        stdout(&text)
    );

    let counted = ic.counters();
    let started = Instant::now();
    let done = sb.json(&["accounts", "import", "corp"]);
    eprintln!("import of 6 account-roles: {:?}", started.elapsed());
    assert_eq!(done["dry_run"], false);
    let items: Vec<(String, String, bool, String)> = done["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["role"].as_str().unwrap_or_default().to_owned(),
                i["profile"].as_str().unwrap_or_default().to_owned(),
                i["new_profile"].as_bool().unwrap_or_default(),
                i["account"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        (
            "AdministratorAccess",
            "acme-AdministratorAccess-111111111111",
            true,
            "acme-AdministratorAccess-111111111111",
        ),
        ("ReadOnly", "acme-ReadOnly", true, "acme-ReadOnly"),
        (
            "AdministratorAccess",
            "acme-dev-AdministratorAccess",
            true,
            "acme-dev-AdministratorAccess",
        ),
        (
            "ReadOnly",
            "acme-dev-ReadOnly",
            true,
            "acme-dev-ReadOnly-222222222222",
        ),
        (
            "AdministratorAccess",
            "sandbox-AdministratorAccess",
            true,
            "sandbox-AdministratorAccess",
        ),
        ("ReadOnly", "mine", false, "mine-acct"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(r, p, n, a)| ((*r).to_owned(), (*p).to_owned(), *n, (*a).to_owned()))
        .collect();
    assert_eq!(items, want, "{done:#}");

    // Every byte that was there is kept, the mode too; the new sections follow.
    let config = std::fs::read_to_string(sb.config()).expect("config");
    assert!(
        config.starts_with(&format!("{original}\n\n[profile ")),
        "{config}"
    );
    assert_eq!(mode(&sb.config()) & 0o777, 0o644);
    assert!(config.contains("[profile acme-dev-ReadOnly]\nsso_session = corp\nsso_account_id = 222222222222\nsso_role_name = ReadOnly\nregion = eu-west-1\n"), "{config}");
    assert_eq!(config.matches("sso_account_id = 333333333333").count(), 2);
    let doctor = sb.json(&["doctor"]);
    assert_eq!(doctor["errors"], serde_json::json!([]));
    assert_eq!(
        doctor["profiles"]["acme-AdministratorAccess"]["region"],
        "eu-north-1"
    );

    // Bound, each to its profile; the accounts that were there are unchanged.
    let after = accounts(&sb);
    assert_eq!(after.len(), before.len() + 5);
    for b in &before {
        assert!(after.contains(b), "{b:?} changed");
    }
    assert!(after.contains(&(
        "acme-dev-ReadOnly-222222222222".to_owned(),
        "acme-dev-ReadOnly".to_owned()
    )));
    let account = sb.account("acme-ReadOnly");
    assert_eq!(account["region"], "eu-west-1", "{account:#}");

    // Paged: 3 accounts one per page; 2 roles one per page for each account.
    let counters = ic.counters();
    let pages =
        |key: &str| counters[key].as_u64().unwrap_or(0) - counted[key].as_u64().unwrap_or(0);
    assert_eq!(pages("accountList.page"), 3, "{counters}");
    assert_eq!(pages("roleList.page"), 6, "{counters}");

    // boto3 resolves role credentials from a written profile and cmdr's cached sign-in.
    let out = sb
        .external("python3")
        .args(["-c", "import boto3;c=boto3.Session(profile_name='acme-dev-AdministratorAccess').get_credentials().get_frozen_credentials();print(c.access_key[:4])"])
        .env("AWS_ENDPOINT_URL_SSO", &ic.url)
        .output()
        .expect("python3");
    assert!(out.status.success(), "boto3: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "ASIA");

    // Again: nothing new, nothing written.
    let again = sb.json(&["accounts", "import", "corp"]);
    assert_eq!(again["profiles_added"], 0, "{again:#}");
    assert_eq!(again["accounts_added"], 0, "{again:#}");
    assert_eq!(
        std::fs::read_to_string(sb.config()).expect("config"),
        config
    );
    assert_eq!(accounts(&sb), after);
}

#[test]
fn import_filters_roles_and_says_which_exist() {
    let ic = IdentityCenter::start();
    ic.post(
        "/_test/accounts",
        "{\"accountRoles\": {\"222222222222\": [\"Billing\"]}}",
    );
    let sb = signed_in(&ic, SESSION);
    let done = sb.json(&[
        "accounts",
        "import",
        "corp",
        "--role",
        "readonly",
        "--region",
        "us-west-2",
    ]);
    let profiles: Vec<&str> = done["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["profile"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(profiles, ["acme-ReadOnly", "sandbox-ReadOnly"]);
    let config = std::fs::read_to_string(sb.config()).expect("config");
    assert!(config.starts_with(SESSION));
    assert!(
        config.contains("sso_role_name = ReadOnly\nregion = us-west-2\n"),
        "{config}"
    );
    assert!(!config.contains("AdministratorAccess") && !config.contains("Billing"));
    assert_eq!(sb.account("sandbox-ReadOnly")["region"], "us-west-2");

    let out = sb.ctl(&["accounts", "import", "corp", "--role", "Nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("no role named Nope; its roles: AdministratorAccess, Billing, ReadOnly"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(sb.config()).expect("config"),
        config
    );
}

#[test]
fn import_refuses_clearly_without_a_sign_in_a_live_session_or_the_daemon() {
    let ic = IdentityCenter::start();
    let mut sb = Sandbox::new();
    sb.set_env("AWS_ENDPOINT_URL_SSO_OIDC", &ic.url);
    sb.set_env("AWS_ENDPOINT_URL_SSO", &ic.url);
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(sb.config(), SESSION).expect("config");
    sb.start();
    let unchanged = |sb: &Sandbox| {
        assert_eq!(
            std::fs::read_to_string(sb.config()).expect("config"),
            SESSION
        );
    };

    // No sso-session of that name.
    let out = sb.ctl(&["accounts", "import", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no [sso-session other]"),
        "{}",
        stderr(&out)
    );
    // Not signed in.
    let out = sb.ctl(&["accounts", "import", "corp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not signed in to https://corp.awsapps.com/start (sso-session corp): run `cmdrctl login corp` first"),
        "{}",
        stderr(&out)
    );
    // Signed in, then the token ran out.
    ic.post("/_test/auto_approve", "{\"on\": true}");
    assert!(sb.ctl(&["login", "corp", "--device-code"]).status.success());
    let file = crate::signin::cache_file(&sb, "corp");
    let mut token: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("cache")).expect("json");
    let live = token.clone();
    token["expiresAt"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&file, token.to_string()).expect("cache");
    let out = sb.ctl(&["accounts", "import", "corp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ended at 2020-01-01T00:00:00Z: run `cmdrctl login corp`"),
        "{}",
        stderr(&out)
    );
    // The portal ended the session although the file says otherwise.
    std::fs::write(&file, live.to_string()).expect("cache");
    ic.post("/_test/end_session", "{}");
    let out = sb.ctl(&["accounts", "import", "corp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no longer accepts the sign-in of sso-session corp"),
        "{}",
        stderr(&out)
    );
    let access = live["accessToken"].as_str().unwrap_or("missing");
    assert!(!stderr(&out).contains(access) && !stdout(&out).contains(access));
    unchanged(&sb);

    // The daemon is down: nothing is written (exit 3); the dry run still plans.
    assert!(sb.ctl(&["login", "corp", "--device-code"]).status.success());
    let mut sb = sb;
    sb.stop();
    let out = sb.ctl(&["accounts", "import", "corp"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    unchanged(&sb);
    let out = sb.ctl(&["accounts", "import", "corp", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("accounts not checked"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("would add 6 profiles"),
        "{}",
        stdout(&out)
    );
    unchanged(&sb);
}

/// 500 accounts × 2 roles: 1,000 profiles written and 1,000 accounts bound in seconds.
#[test]
fn five_hundred_accounts_by_two_roles_import_in_seconds() {
    let ic = IdentityCenter::start();
    ic.post("/_test/accounts", "{\"generate\": 500}");
    let sb = signed_in(&ic, SESSION);
    let started = Instant::now();
    let done = sb.json(&["accounts", "import", "corp"]);
    let took = started.elapsed();
    eprintln!("import of 1,000 account-roles: {took:?}");
    assert_eq!(done["profiles_added"], 1000);
    assert_eq!(done["accounts_added"], 1000);
    assert_eq!(accounts(&sb).len(), 1000);
    let counters = ic.counters();
    assert_eq!(counters["accountList.page"], 5, "{counters}");
    assert_eq!(counters["ListAccountRoles"], 500, "{counters}");
    // A debug build on a shared 2-core machine: well within this; release: docs/benchmarks.md.
    assert!(took.as_secs() < 30, "import took {took:?}");
}

/// `login_session` profiles (`aws login`, AWS CLI >= 2.32) have their own kind; an
/// account bound to one says why cmdrd cannot serve it yet.
#[test]
fn login_session_profiles_are_their_own_kind() {
    let mut sb = Sandbox::new();
    std::fs::create_dir_all(&sb.aws).expect("aws dir");
    std::fs::write(
        sb.config(),
        "[profile console]\nlogin_session = arn:aws:iam::123456789012:user/Admin\nregion = eu-west-1\n",
    )
    .expect("config");
    sb.start();
    let profiles = sb.json(&["profiles"]);
    let console = profiles
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["name"] == "console")
        .expect("profile console");
    assert_eq!(console["kind"], "login", "{console:#}");
    let out = sb.ctl(&["accounts", "add", "web", "--profile", "console"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = sb.account("web");
    assert_eq!(shown["state"], "misconfigured", "{shown:#}");
    assert!(
        shown["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("login_session"),
        "{shown:#}"
    );
}
