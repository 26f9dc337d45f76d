//! What `paste` asks a running daemon, with a short deadline (paste works without one):
//! which credentials file it watches, and which accounts use which AWS account id, so a
//! paste into a file the daemon does not watch, or a portal block under a new name for an
//! account that is already bound, gets a warning saying what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdr_client::Client;
use cmdr_proto::{AccountInfo, FileKind, Request, Response};

/// All the daemon gets: connecting, `status` and the accounts together.
const DEADLINE: Duration = Duration::from_millis(500);

/// What a running daemon said; `None` when none answered in time.
pub struct Daemon {
    /// The credentials file it watches.
    pub credentials: Option<PathBuf>,
    pub accounts: Vec<AccountInfo>,
}

pub async fn ask(socket: &Path) -> Option<Daemon> {
    cmdr_client::within(DEADLINE, async {
        let mut client = Client::connect_within(socket, "cmdrctl", DEADLINE).await?;
        let Response::Status(status) = client.request(Request::Status).await? else {
            return Err(cmdr_client::ClientError::Proto(
                cmdr_proto::ProtoError::Malformed("unexpected answer to status".to_owned()),
            ));
        };
        let accounts = client.accounts().await?;
        Ok(Daemon {
            credentials: status
                .files
                .iter()
                .find(|f| f.kind == FileKind::Credentials)
                .map(|f| PathBuf::from(&f.path)),
            accounts,
        })
    })
    .await
    .ok()
}

/// A warning when `written` is not the file the daemon watches (both with symlinks
/// resolved as far as they exist).
pub fn file_warning(daemon: &Daemon, written: &Path) -> Option<String> {
    let watched = daemon.credentials.as_ref()?;
    if same_file(watched, written) {
        return None;
    }
    let shell = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .filter(|v| !v.is_empty())
        .map(|v| {
            format!(
                " (this shell's AWS_SHARED_CREDENTIALS_FILE is {})",
                PathBuf::from(v).display()
            )
        })
        .unwrap_or_default();
    Some(format!(
        "warning: the running cmdrd watches {}, not {}{shell}: it will not see this paste. Use the same file in both: set `credentials` under [paths] in cmdr's config.toml (read by both), or unset AWS_SHARED_CREDENTIALS_FILE here",
        watched.display(),
        written.display()
    ))
}

fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    resolve(a) == resolve(b)
}

/// The portal names an "Option 2" profile `ACCOUNTID_PERMISSIONSET`. Pasted unchanged
/// while an account bound to another profile uses that AWS account: say how to update
/// that account instead, or bind it to the new profile. Nothing when an account is bound
/// to the profile written: the paste updated that one, as intended.
pub fn portal_hint(daemon: &Daemon, profile: &str, chose_profile: bool) -> Option<String> {
    if chose_profile || daemon.accounts.iter().any(|a| a.profile == profile) {
        return None;
    }
    let (id, _) = profile.split_once('_')?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bound: Vec<&AccountInfo> = daemon
        .accounts
        .iter()
        .filter(|a| a.account_id.as_deref() == Some(id) && a.profile != profile)
        .collect();
    let first = bound.first()?;
    let names: Vec<String> = bound
        .iter()
        .map(|a| format!("`{}` (profile `{}`)", a.name, a.profile))
        .collect();
    Some(format!(
        "note: AWS account {id} is used by account {}, which this paste does not change. To update it, paste again with `--profile {}`; or bind it to this profile: `cmdrctl accounts edit {} --profile {profile}`",
        names.join(", "),
        first.profile,
        first.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, profile: &str, account_id: Option<&str>) -> AccountInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "profile": profile, "region": null, "target": "aws",
            "endpoint": null, "on_change": "ask", "state": "ok", "fingerprint": null,
            "accepted_fingerprint": null, "accepted_at": null, "expires_at": null,
            "expiry_source": null, "account_id": account_id,
        }))
        .expect("account")
    }

    #[test]
    fn a_portal_block_for_a_bound_aws_account_says_how_to_bind_or_rename() {
        let daemon = Daemon {
            credentials: None,
            accounts: vec![
                account("acme", "acme", Some("123456789012")),
                account("other", "other", Some("210987654321")),
            ],
        };
        let hint = portal_hint(&daemon, "123456789012_AdministratorAccess", false).expect("a hint");
        assert!(hint.contains("`acme` (profile `acme`)"), "{hint}");
        assert!(hint.contains("--profile acme"), "{hint}");
        assert!(
            hint.contains("cmdrctl accounts edit acme --profile 123456789012_AdministratorAccess"),
            "{hint}"
        );
        // Renamed with --profile, another account id, not a portal name, or already bound.
        assert_eq!(
            portal_hint(&daemon, "123456789012_AdministratorAccess", true),
            None
        );
        assert_eq!(
            portal_hint(&daemon, "999999999999_AdministratorAccess", false),
            None
        );
        assert_eq!(portal_hint(&daemon, "acme-dev", false), None);
        let bound = Daemon {
            credentials: None,
            accounts: vec![account("acme", "123456789012_Admin", Some("123456789012"))],
        };
        assert_eq!(portal_hint(&bound, "123456789012_Admin", false), None);
    }

    #[test]
    fn no_hint_when_the_pasted_profile_is_bound_itself() {
        let daemon = Daemon {
            credentials: None,
            accounts: vec![
                account("prod", "prod", Some("123456789012")),
                account(
                    "admin",
                    "123456789012_AdministratorAccess",
                    Some("123456789012"),
                ),
            ],
        };
        assert_eq!(
            portal_hint(&daemon, "123456789012_AdministratorAccess", false),
            None
        );
    }

    #[test]
    fn a_file_the_daemon_does_not_watch_is_named() {
        let dir = std::env::temp_dir();
        let daemon = Daemon {
            credentials: Some(dir.join("watched")),
            accounts: Vec::new(),
        };
        assert_eq!(file_warning(&daemon, &dir.join("watched")), None);
        let warning = file_warning(&daemon, &dir.join("other")).expect("warning");
        assert!(warning.contains("will not see this paste"), "{warning}");
    }
}
