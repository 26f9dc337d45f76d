//! Measure 11: `cmdrctl accounts import` of 500 accounts × 2 roles from the loopback
//! Identity Center (`tests/clients/identity_center.py`): 1,000 profiles written and
//! 1,000 accounts bound, as a whole process, in a fresh HOME each round.

use std::process::{Command, Stdio};

use anyhow::bail;

use crate::daemon::{Sandbox, run_measured};
use crate::portals::IdentityCenter;
use crate::report::{Row, Section, fmt_ms, median, ms};

use super::Opts;

const SESSION: &str =
    "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n";
/// "In seconds" (issue 25): the target for the median.
const TARGET_MS: f64 = 10_000.0;

/// 11. Import of 1,000 account-roles.
pub async fn import(opts: &Opts) -> anyhow::Result<Section> {
    let rounds = if opts.quick { 1 } else { 5 };
    let ic = IdentityCenter::start(true)?;
    ic.post("/_test/accounts", "{\"generate\": 500}")?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut sb = Sandbox::new(&opts.bins, SESSION, "", "")?;
        sb.start("warn").await?;
        let with_ic = |cmd: &mut Command| {
            cmd.env("AWS_ENDPOINT_URL_SSO_OIDC", &ic.url)
                .env("AWS_ENDPOINT_URL_SSO", &ic.url)
                .stdout(Stdio::null());
        };
        let mut login = sb.ctl();
        login
            .args(["login", "corp", "--device-code"])
            .stderr(Stdio::null());
        with_ic(&mut login);
        if !login.status()?.success() {
            bail!("cmdrctl login failed");
        }
        let mut import = sb.ctl();
        import.args(["accounts", "import", "corp", "--json"]);
        with_ic(&mut import);
        let (took, _, ok) = run_measured(&mut import)?;
        if !ok {
            bail!("cmdrctl accounts import failed");
        }
        let bound = sb.ctl().args(["accounts", "list", "--json"]).output()?;
        let list: serde_json::Value = serde_json::from_slice(&bound.stdout)?;
        if list.as_array().map_or(0, Vec::len) != 1000 {
            bail!("the import did not bind 1,000 accounts");
        }
        times.push(ms(took));
        sb.stop();
    }
    let m = median(&times);
    Ok(Section {
        title: format!(
            "11. Import of 1,000 account-roles (500 accounts × 2 roles, loopback Identity Center, median of {rounds})"
        ),
        rows: vec![Row::check(
            "`cmdrctl accounts import`: list, write 1,000 profiles, bind 1,000 accounts",
            fmt_ms(m),
            format!("< {}", fmt_ms(TARGET_MS)),
            (m >= TARGET_MS).then(|| fmt_ms(m)),
        )],
        notes: vec![
            "ListAccounts in pages of 100, ListAccountRoles for 8 accounts at once; the config file written once (compare-and-swap); the adds pipelined on one connection, 32 in flight, each one fsynced journal line in the daemon. Each round in a fresh HOME with a fresh daemon.".to_owned(),
        ],
    })
}
