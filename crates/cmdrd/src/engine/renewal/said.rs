//! What the engine says of an account's renewal: `accounts show`'s line, when cmdrd
//! renews the account by itself (`renews_at`: nearing its end before then is no alarm),
//! and why an SSO account on a portal nobody is signed in to gets no credentials.

use super::*;

impl Renewal {
    /// `accounts show`'s line: how it renews, or why not (with the fix).
    /// `at`: when the account is renewed next, if scheduled (RFC 3339 UTC, as the other
    /// times of the line: the daemon's time zone need not be the reader's).
    pub(in crate::engine) fn describe(
        &self,
        name: &str,
        renew_before: chrono::Duration,
        at: Option<DateTime<Utc>>,
    ) -> String {
        // While the portal needs a sign-in, that comes first: no time is promised.
        let needs_signin = |k: &KeeperHandle| k.info().state != "signed_in";
        let when = at.map_or_else(String::new, |at| format!(" at {}", timestamp(at)));
        let renews = |k: &KeeperHandle, when: &str| {
            if needs_signin(k) {
                format!(
                    "sign-in needed (`cmdrctl login {}`), then it renews itself",
                    k.info().session
                )
            } else {
                format!("renews itself{when}")
            }
        };
        let until = |k: &KeeperHandle| {
            let info = k.info();
            // The sign-in a portal needs is said first (`renews`).
            match (info.signed_in_until, info.state.as_str()) {
                (_, "signin_required") => "; the portal's session ended".to_owned(),
                (Some(at), _) => format!(
                    "; signed in until {at}{}",
                    if info.refreshable {
                        ", refreshed silently"
                    } else {
                        ""
                    }
                ),
                (None, _) => String::new(),
            }
        };
        match self {
            Renewal::Portal(k) => format!(
                "{}: role credentials through sso-session {}{}",
                renews(k, ""),
                k.info().session,
                until(k)
            ),
            Renewal::Paste {
                keeper,
                account_id,
                role,
            } => format!(
                "{} ({} min before its token ends, or halfway through a shorter one): GetRoleCredentials of {role} in {account_id} through sso-session {}, written into the credentials file and accepted{} (`cmdrctl accounts edit {name} --auto-renew off` stops it)",
                renews(keeper, &when),
                renew_before.num_minutes(),
                keeper.info().session,
                until(keeper)
            ),
            Renewal::Off { keeper, .. } => format!(
                "does not renew itself (auto-renew is off); `cmdrctl accounts edit {name} --auto-renew on` renews it through sso-session {}, `cmdrctl renew {name}` once",
                keeper.info().session
            ),
            Renewal::Cannot(why) => format!("does not renew itself: {why}"),
        }
    }
}

impl Engine {
    /// When cmdrd next renews `account`'s token by itself, before that token ends and with
    /// nobody's help; `None` when it will not (then its expiry is an alarm). A pasted
    /// block: its scheduled renewal (now, while one is under way), if its portal will
    /// still be signed in then — refreshable, or signed in past that time — and no
    /// renewal has failed since (a retry may fail again). An SSO profile: the keeper's
    /// next refresh of the portal's token, which is the account's token.
    pub(in crate::engine) fn renews_at(
        &self,
        account: &cmdr_core::Account,
    ) -> Option<DateTime<Utc>> {
        let end = account.accepted.expiry.as_ref().and_then(|e| e.when())?;
        let signed_in = |keeper: &KeeperHandle, at: DateTime<Utc>| {
            let info = keeper.info();
            info.state == "signed_in"
                && (info.refreshable
                    || info
                        .signed_in_until
                        .as_deref()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|until| until > at))
        };
        let at = match self.renewal(account) {
            Renewal::Paste { keeper, .. } => {
                let at = match self.renewing.get(&account.name) {
                    Some(Pending::InFlight | Pending::Written(_)) => self.now(),
                    Some(Pending::Failed { .. }) => return None,
                    None => *self.renew_at.get(&account.name)?,
                };
                signed_in(&keeper, at).then_some(at)?
            }
            Renewal::Portal(keeper) => {
                let at = keeper.refresh_at()?;
                signed_in(&keeper, at).then_some(at)?
            }
            Renewal::Off { .. } | Renewal::Cannot(_) => return None,
        };
        (at < end).then_some(at)
    }

    /// Why an SSO profile on a kept portal gets no credentials while that portal is not
    /// signed in, with the sign-in that fixes it (not the profile: nothing is wrong with
    /// it). `None` while the portal is signed in, or for any other account.
    pub(in crate::engine) fn signin_reason(&self, account: &cmdr_core::Account) -> Option<String> {
        let Renewal::Portal(keeper) = self.renewal(account) else {
            return None;
        };
        let info = keeper.info();
        let name = &account.name;
        let (url, session) = (&info.start_url, &info.session);
        let what = match info.state.as_str() {
            "signed_in" => return None,
            "signin_required" => format!(
                "the sign-in to {url} (sso-session {session}) ended{}",
                info.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            _ => format!("not signed in to {url} (sso-session {session})"),
        };
        Some(format!(
            "{what}: run `cmdrctl login {session}` (or `cmdrctl renew {name}`); `{name}` gets credentials again by itself once signed in"
        ))
    }
}
