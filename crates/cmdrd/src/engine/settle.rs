//! Key pairs changed in one half: a writer that sets the access key, the secret and the
//! session token one at a time (`aws configure set` three times) passes through files
//! whose keys do not belong together. Such a profile keeps its previous token in the view
//! (no `token_changed`, nothing new to `accept` or hand out) until a later write completes
//! the pair, or [`PAIR_SETTLE`] passes without one.

use cmdr_core::Credentials;

use super::*;

/// How long a profile's half-changed keys are held after the last write that changed them.
pub(super) const PAIR_SETTLE: Duration = Duration::from_secs(5);

/// A profile held in its previous token: the keys the file has now, and when to believe
/// them anyway (by the wall clock).
pub(super) struct HeldPair {
    pub(super) profile: Profile,
    pub(super) until: DateTime<Utc>,
}

/// True when `new` changed only part of what a new token always changes together: AWS
/// issues a new secret only with a new access key id, and new session keys only with a new
/// session token. A session token changed on its own is believed (it cannot be told from a
/// renewal of the same keys).
pub(super) fn half_changed(old: &Credentials, new: &Credentials) -> bool {
    let key = old.access_key_id != new.access_key_id;
    let secret = old.secret_access_key != new.secret_access_key;
    let token_kept = old.session_token.is_some() && old.session_token == new.session_token;
    key != secret || (key && token_kept)
}

impl Engine {
    /// Puts back the previous profile of every bound profile whose keys changed in one
    /// half in `view`, and remembers the new one until [`PAIR_SETTLE`] after the last write
    /// that changed it. A profile complete again, or back as it was, is no longer held.
    pub(super) fn hold_half_pairs(&mut self, mut view: ProfileView) -> ProfileView {
        let before = std::mem::take(&mut self.held);
        let now = self.now();
        for name in self.bound_profiles() {
            let (Some(old), Some(new)) = (self.view.get(&name), view.profiles.get(&name)) else {
                continue;
            };
            let (Some(was), Some(is)) = (&old.credentials, &new.credentials) else {
                continue;
            };
            if !half_changed(was, is) {
                continue;
            }
            // Re-armed only by a write that changed the held keys again.
            let until = match before.get(&name) {
                Some(held) if held.profile.fingerprint == new.fingerprint => held.until,
                _ => now + chrono::Duration::from_std(PAIR_SETTLE).unwrap_or_default(),
            };
            tracing::info!(profile = %name, "keys changed in one half only: holding the previous token until the pair is complete");
            let held = view.profiles.insert(name.clone(), old.clone());
            if let Some(profile) = held {
                self.held.insert(name, HeldPair { profile, until });
            }
        }
        view
    }

    /// The earliest time a held profile is to be believed.
    pub(super) fn next_release(&self) -> Option<DateTime<Utc>> {
        self.held.values().map(|h| h.until).min()
    }

    /// Believes the held profiles whose time has come: the file has said the same for
    /// [`PAIR_SETTLE`], so it is what the user meant.
    pub(super) fn release_settled(&mut self) {
        let now = self.now();
        if self.next_release().is_none_or(|at| at > now) {
            return;
        }
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let mut view = self.view.clone();
        for name in due {
            if let Some(held) = self.held.remove(&name) {
                tracing::info!(profile = %name, "keys changed in one half stayed so: taking them");
                view.profiles.insert(name, held.profile);
            }
        }
        let healthy = self.health.values().iter().all(|h| h.error.is_none());
        let effects = self.follow(view, healthy);
        self.apply(effects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(key: &str, secret: &str, token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: key.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn one_half_of_a_pair_is_not_a_new_token() {
        let old = creds("ASIAOLD", "old-secret", Some("old-token"));
        // `aws configure set` one value at a time: key, then secret, then token.
        let key = creds("ASIANEW", "old-secret", Some("old-token"));
        let key_and_secret = creds("ASIANEW", "new-secret", Some("old-token"));
        let all = creds("ASIANEW", "new-secret", Some("new-token"));
        assert!(half_changed(&old, &key));
        assert!(half_changed(&old, &key_and_secret));
        assert!(!half_changed(&old, &all));
        // The secret alone, in either order.
        assert!(half_changed(
            &old,
            &creds("ASIAOLD", "new-secret", Some("old-token"))
        ));
        // Unchanged, a token alone, static keys replacing session keys, and back.
        assert!(!half_changed(&old, &old.clone()));
        assert!(!half_changed(
            &old,
            &creds("ASIAOLD", "old-secret", Some("t2"))
        ));
        let fixed = creds("AKIANEW", "static-secret", None);
        assert!(!half_changed(&old, &fixed));
        assert!(!half_changed(&fixed, &all));
        assert!(half_changed(&fixed, &creds("AKIANEW", "newer", None)));
    }
}
