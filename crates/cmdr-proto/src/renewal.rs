//! How accounts renew through their portals (issue 25): what `renewals_page` and
//! `renewal_plans` say of each account, and the answer to `renew_now`.

use serde::{Deserialize, Serialize};

use crate::AccountInfo;

/// How one account renews: the second clock beside its token's (`accounts list --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalFacts {
    pub account: String,
    /// Whether cmdrd renews the account's token itself (an `expiring_soon` is no alarm).
    pub auto_renew: bool,
    /// The sso-session (portal) it renews through, if any.
    pub session: Option<String>,
    /// When that portal's sign-in ends, RFC 3339 UTC, while cmdrd keeps it.
    pub signin_expires_at: Option<String>,
}

/// How one account renews, and when it renews next by itself (`accounts list --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalPlan {
    pub account: String,
    /// As in [`RenewalFacts`]: cmdrd renews the account itself (it can, and auto-renew is
    /// on), though a person may first have to sign in to its portal.
    pub auto_renew: bool,
    /// The sso-session (portal) it renews through, if any.
    pub session: Option<String>,
    /// When that portal's sign-in ends, RFC 3339 UTC, while cmdrd keeps it and it is
    /// signed in (`None` with a `session`: a sign-in is needed).
    pub signin_expires_at: Option<String>,
    /// When cmdrd next renews the account's token by itself, before the token ends and
    /// with nobody's help (a pasted block written anew, or the portal's token refreshed),
    /// RFC 3339 UTC. `None` when it will not: then an `expiring_soon` is an alarm.
    pub renews_at: Option<String>,
}

impl RenewalPlan {
    /// The plan of a daemon older than `renewal_plans`: what it said, no `renews_at`.
    pub fn from_facts(facts: RenewalFacts) -> RenewalPlan {
        RenewalPlan {
            account: facts.account,
            auto_renew: facts.auto_renew,
            session: facts.session,
            signin_expires_at: facts.signin_expires_at,
            renews_at: None,
        }
    }

    /// What `renewals_page` says of it.
    pub fn facts(self) -> RenewalFacts {
        RenewalFacts {
            account: self.account,
            auto_renew: self.auto_renew,
            session: self.session,
            signin_expires_at: self.signin_expires_at,
        }
    }

    /// It renews through a portal nobody is signed in to now.
    pub fn signin_needed(&self) -> bool {
        self.session.is_some() && self.signin_expires_at.is_none()
    }
}

/// The answer to `Request::RenewNow`: the account after it, and the new token's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    pub account: AccountInfo,
    pub expires_at: Option<String>,
}
