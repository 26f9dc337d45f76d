//! Validation retries of `unvalidated` accounts (their target has not answered yet, e.g.
//! LocalStack started later): timer-driven with backoff, 2 s doubling to 5 min, reset
//! when the account changes. One timer for the earliest retry; none when nothing waits.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// The first delay after a validation that could not reach the target.
pub const FIRST: Duration = Duration::from_secs(2);
/// The longest delay between two attempts.
pub const MAX: Duration = Duration::from_secs(5 * 60);

/// When each waiting account is validated again, and the delay that led there.
#[derive(Debug, Default)]
pub struct Retries {
    due: HashMap<String, Instant>,
    /// The last delay of each account since its last change (kept while its attempt runs,
    /// so the next one doubles it).
    delay: HashMap<String, Duration>,
}

impl Retries {
    /// The next attempt of `name` after one that could not reach its target at `now`.
    pub fn schedule(&mut self, name: &str, now: Instant) -> Duration {
        let delay = self
            .delay
            .get(name)
            .map_or(FIRST, |last| last.saturating_mul(2).min(MAX));
        self.delay.insert(name.to_owned(), delay);
        self.due.insert(name.to_owned(), now + delay);
        delay
    }

    /// `name` needs no retry (confirmed, rejected, removed, validation off).
    pub fn clear(&mut self, name: &str) {
        self.due.remove(name);
        self.delay.remove(name);
    }

    /// Something about `name` changed (edit, accept): its next retry starts from
    /// [`FIRST`] again; one that is due stays due.
    pub fn reset(&mut self, name: &str) {
        self.delay.remove(name);
    }

    /// The earliest retry, if any: what the engine's timer sleeps until.
    pub fn next(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// The accounts whose retry is due at `now`, no longer scheduled (each is scheduled
    /// again, or cleared, by the outcome of its validation).
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut names: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        for name in &names {
            self.due.remove(name);
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes_and_resets() {
        let now = Instant::now();
        let mut retries = Retries::default();
        assert_eq!(retries.next(), None, "nothing waits: no timer");
        let delays: Vec<u64> = (0..10)
            .map(|_| retries.schedule("a", now).as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retries.next(), Some(now + MAX));
        retries.reset("a");
        assert_eq!(retries.schedule("a", now), FIRST);
        retries.clear("a");
        assert_eq!(retries.next(), None);
    }

    #[test]
    fn only_due_accounts_are_taken() {
        let now = Instant::now();
        let mut retries = Retries::default();
        retries.schedule("a", now);
        retries.schedule("b", now);
        retries.schedule("b", now);
        assert_eq!(retries.next(), Some(now + FIRST));
        assert!(retries.take_due(now).is_empty());
        assert_eq!(retries.take_due(now + FIRST), ["a"]);
        assert_eq!(retries.next(), Some(now + FIRST * 2));
        assert_eq!(retries.take_due(now + FIRST * 2), ["b"]);
        assert_eq!(retries.next(), None);
        // Taken but not cleared: the next failure doubles the delay.
        assert_eq!(retries.schedule("b", now), FIRST * 4);
    }
}
