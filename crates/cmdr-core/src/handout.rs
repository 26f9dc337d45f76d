//! When an account's accepted credentials are handed to tools (`env`, `exec`,
//! `credential-process`, the credentials endpoint), and why not.

use crate::account::{Account, AccountState, Status};

/// Why the accepted credentials of `account`, in `status`, are not handed out; `None`
/// when they are. While the file holds a newer token (`changed`), tools keep the accepted
/// one as long as it is at hand (`keys_at_hand`: its keys, or what was resolved from
/// them) and the new token is not one of another AWS account. `force` overrides.
pub fn refusal(
    account: &Account,
    status: &Status,
    keys_at_hand: bool,
    force: bool,
) -> Option<String> {
    if force {
        return None;
    }
    let held = status.state == AccountState::Changed
        && account
            .pending_identity
            .as_ref()
            .is_none_or(|p| p.fingerprint != account.accepted.fingerprint)
        && keys_at_hand;
    if held {
        return None;
    }
    let why = status.refusal(&account.name, account.on_change)?;
    Some(if status.state == AccountState::Changed {
        // Only while the accepted token is at hand would it be handed out instead.
        format!(
            "{why}; the token accepted before is no longer at hand (the files hold only the new one, and cmdrd keeps no keys across restarts)"
        )
    } else {
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{OnChange, PendingIdentity, Target};

    fn account() -> Account {
        let mut account = Account::fresh(crate::NewAccount {
            name: "acme".into(),
            profile: "acme".into(),
            region: None,
            target: Target::Aws,
            on_change: OnChange::Ask,
            portal: None,
        });
        account.accepted.fingerprint = Some("old".into());
        account
    }

    fn status(state: AccountState) -> Status {
        Status {
            state,
            reason: Some(format!("it is {state:?}")),
            renewable: true,
        }
    }

    #[test]
    fn states_that_hand_out() {
        for state in [
            AccountState::Ok,
            AccountState::Expiring,
            AccountState::Unvalidated,
        ] {
            assert_eq!(refusal(&account(), &status(state), true, false), None);
            assert_eq!(refusal(&account(), &status(state), false, false), None);
        }
    }

    #[test]
    fn states_that_refuse_say_how_to_fix_it() {
        let a = account();
        for state in [
            AccountState::Expired,
            AccountState::Missing,
            AccountState::Invalid,
            AccountState::Misconfigured,
        ] {
            let why = refusal(&a, &status(state), true, false).expect("refused");
            assert!(why.starts_with(&format!("it is {state:?}")), "{why}");
            assert_eq!(refusal(&a, &status(state), true, true), None, "--force");
        }
        let expired = refusal(&a, &status(AccountState::Expired), true, false).expect("refused");
        assert!(expired.contains("cmdrctl accept acme"), "{expired}");
        let mut auto = a.clone();
        auto.on_change = OnChange::Auto;
        let expired = refusal(&auto, &status(AccountState::Expired), true, false).expect("x");
        assert!(expired.contains("switches to it by itself"), "{expired}");
        assert!(
            refusal(&a, &status(AccountState::Invalid), true, false)
                .expect("refused")
                .contains("cmdrctl accept acme")
        );
        assert_eq!(a.target, Target::Aws);
    }

    #[test]
    fn changed_keeps_handing_out_the_accepted_token_while_at_hand() {
        let a = account();
        let changed = status(AccountState::Changed);
        assert_eq!(refusal(&a, &changed, true, false), None);
        // Not at hand (after a restart): refused, with the reason.
        assert!(refusal(&a, &changed, false, false).is_some());
        // The accepted token itself belongs to another AWS account: refused.
        let mut other = a.clone();
        other.pending_identity = Some(PendingIdentity {
            fingerprint: Some("old".into()),
            account_id: "999999999999".into(),
        });
        assert!(refusal(&other, &changed, true, false).is_some());
        // Another account's token pending while the accepted one is fine: handed out.
        other.pending_identity = Some(PendingIdentity {
            fingerprint: Some("new".into()),
            account_id: "999999999999".into(),
        });
        assert_eq!(refusal(&other, &changed, true, false), None);
    }
}
