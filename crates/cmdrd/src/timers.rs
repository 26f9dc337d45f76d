//! Expiry timers: `expiring_soon` at `warn_before`, `expired` at the deadline. Deadlines
//! are wall-clock times; the engine sleeps until the next one but never longer than
//! [`MAX_SLEEP`], so a suspend or a clock jump is caught soon after wake-up. Nothing due,
//! no timer at all.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cmdr_proto::EventKind;

use crate::wire::timestamp;

/// While a deadline is pending, the wall clock is re-read at least this often.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The wall clock, replaceable in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One account's deadline, as the engine sees it now.
pub struct Deadline<'a> {
    pub account: &'a str,
    pub profile: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy)]
struct Fired {
    at: DateTime<Utc>,
    warned: bool,
    expired: bool,
}

/// Which warnings were already given, so each fires once per token.
#[derive(Debug, Default)]
pub struct Timers {
    fired: HashMap<String, Fired>,
}

impl Timers {
    /// Events due at `now` for every account, and the next wall-clock deadline; accounts
    /// not among `deadlines` are forgotten.
    pub fn poll<'a>(
        &mut self,
        deadlines: impl IntoIterator<Item = Deadline<'a>>,
        now: DateTime<Utc>,
        warn_before: chrono::Duration,
    ) -> (Vec<EventKind>, Option<DateTime<Utc>>) {
        let mut events = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        let mut live = HashMap::new();
        for d in deadlines {
            let Some(at) = d.expires_at else { continue };
            let (fired, pending) = step(
                self.fired.get(d.account).copied(),
                &d,
                at,
                now,
                warn_before,
                &mut events,
            );
            if let Some(p) = pending {
                next = Some(next.map_or(p, |n| n.min(p)));
            }
            live.insert(d.account.to_owned(), fired);
        }
        self.fired = live;
        (events, next)
    }

    /// [`Timers::poll`] for one account that changed (`None`: it is gone), leaving the
    /// others as they are: the events due for it and its own next deadline.
    pub fn poll_one(
        &mut self,
        account: &str,
        deadline: Option<Deadline<'_>>,
        now: DateTime<Utc>,
        warn_before: chrono::Duration,
    ) -> (Vec<EventKind>, Option<DateTime<Utc>>) {
        let mut events = Vec::new();
        let Some((d, at)) = deadline.and_then(|d| d.expires_at.map(|at| (d, at))) else {
            self.fired.remove(account);
            return (events, None);
        };
        let (fired, pending) = step(
            self.fired.get(account).copied(),
            &d,
            at,
            now,
            warn_before,
            &mut events,
        );
        self.fired.insert(account.to_owned(), fired);
        (events, pending)
    }
}

impl Timers {
    /// Gives `account`'s `expiring_soon` again at the next poll if its token is still
    /// within `warn_before` (and not yet expired): the one given before was no alarm, since
    /// cmdrd was to renew it, and now its renewal failed.
    pub fn warn_again(&mut self, account: &str) {
        if let Some(fired) = self.fired.get_mut(account)
            && !fired.expired
        {
            fired.warned = false;
        }
    }
}

/// One account's timers at `now`: what fired before (`previous`), the events now due, and
/// its next deadline.
fn step(
    previous: Option<Fired>,
    d: &Deadline<'_>,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    warn_before: chrono::Duration,
    events: &mut Vec<EventKind>,
) -> (Fired, Option<DateTime<Utc>>) {
    let mut fired = match previous {
        // A new token (or a new expiry) re-arms both warnings.
        Some(f) if f.at == at => f,
        _ => Fired {
            at,
            warned: false,
            expired: false,
        },
    };
    if now >= at {
        if !fired.expired {
            events.push(EventKind::Expired {
                account: d.account.to_owned(),
                profile: d.profile.to_owned(),
                expires_at: timestamp(at),
            });
        }
        fired.expired = true;
        fired.warned = true;
    } else if now >= at - warn_before {
        if !fired.warned {
            events.push(EventKind::ExpiringSoon {
                account: d.account.to_owned(),
                profile: d.profile.to_owned(),
                expires_at: timestamp(at),
            });
        }
        fired.warned = true;
    }
    let pending = if !fired.warned {
        Some(at - warn_before)
    } else if !fired.expired {
        Some(at)
    } else {
        None
    };
    (fired, pending)
}

/// How long to sleep for a wall-clock deadline: until it, but at most [`MAX_SLEEP`].
pub fn sleep_for(deadline: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (deadline - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .min(MAX_SLEEP)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn t(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap() + chrono::Duration::minutes(minute)
    }

    fn names(events: &[EventKind]) -> Vec<String> {
        events.iter().map(EventKind::type_name).collect()
    }

    /// A warning given again (a renewal failed) fires once more while the token is within
    /// `warn_before`; never after it expired.
    #[test]
    fn a_warning_can_be_given_again() {
        let warn = chrono::Duration::minutes(15);
        let mut timers = Timers::default();
        let d = |exp| Deadline {
            account: "a",
            profile: "p",
            expires_at: Some(exp),
        };
        let (ev, _) = timers.poll([d(t(20))], t(10), warn);
        assert_eq!(names(&ev), ["expiring_soon"]);
        timers.warn_again("a");
        let (ev, _) = timers.poll([d(t(20))], t(11), warn);
        assert_eq!(names(&ev), ["expiring_soon"]);
        let (ev, _) = timers.poll([d(t(20))], t(12), warn);
        assert!(ev.is_empty());
        let (ev, _) = timers.poll([d(t(20))], t(21), warn);
        assert_eq!(names(&ev), ["expired"]);
        timers.warn_again("a");
        let (ev, _) = timers.poll([d(t(20))], t(22), warn);
        assert!(ev.is_empty(), "{:?}", names(&ev));
    }

    /// One account's change leaves the others' timers alone, and agrees with a full poll.
    #[test]
    fn poll_one_updates_one_account() {
        let warn = chrono::Duration::minutes(15);
        let mut timers = Timers::default();
        let d = |account, exp| Deadline {
            account,
            profile: "p",
            expires_at: Some(exp),
        };
        let (ev, _) = timers.poll([d("a", t(20)), d("b", t(120))], t(10), warn);
        assert_eq!(names(&ev), ["expiring_soon"], "a warned");
        // b gets a token expiring in 10 minutes: warned at once, a untouched.
        let (ev, next) = timers.poll_one("b", Some(d("b", t(20))), t(10), warn);
        assert_eq!(names(&ev), ["expiring_soon"]);
        assert_eq!(next, Some(t(20)));
        // A full poll now fires nothing again for either.
        let (ev, next) = timers.poll([d("a", t(20)), d("b", t(20))], t(11), warn);
        assert!(ev.is_empty(), "{:?}", names(&ev));
        assert_eq!(next, Some(t(20)));
        // Removed: forgotten, so a new account of that name starts afresh.
        let (ev, next) = timers.poll_one("b", None, t(11), warn);
        assert!(ev.is_empty() && next.is_none());
        let (ev, _) = timers.poll_one("b", Some(d("b", t(20))), t(11), warn);
        assert_eq!(names(&ev), ["expiring_soon"]);
    }

    #[test]
    fn fires_once_each_and_rearms_on_a_new_token() {
        let warn = chrono::Duration::minutes(15);
        let mut timers = Timers::default();
        let at = t(60);
        let d = |exp| Deadline {
            account: "acme",
            profile: "acme",
            expires_at: Some(exp),
        };
        let (ev, next) = timers.poll([d(at)], t(0), warn);
        assert!(ev.is_empty());
        assert_eq!(next, Some(t(45)));
        let (ev, next) = timers.poll([d(at)], t(45), warn);
        assert_eq!(names(&ev), ["expiring_soon"]);
        assert_eq!(next, Some(t(60)));
        let (ev, _) = timers.poll([d(at)], t(50), warn);
        assert!(ev.is_empty(), "fires once");
        let (ev, next) = timers.poll([d(at)], t(61), warn);
        assert_eq!(names(&ev), ["expired"]);
        assert_eq!(next, None, "nothing due: no timer");
        // A new token re-arms.
        let (ev, next) = timers.poll([d(t(180))], t(62), warn);
        assert!(ev.is_empty());
        assert_eq!(next, Some(t(165)));
        // A jump far past both deadlines gives only `expired`.
        let (ev, _) = timers.poll([d(t(180))], t(500), warn);
        assert_eq!(names(&ev), ["expired"]);
    }

    #[test]
    fn sleeps_are_capped() {
        assert_eq!(sleep_for(t(60), t(0)), MAX_SLEEP);
        assert_eq!(sleep_for(t(0), t(60)), Duration::ZERO);
        assert_eq!(
            sleep_for(t(0) + chrono::Duration::seconds(5), t(0)),
            Duration::from_secs(5)
        );
    }
}
