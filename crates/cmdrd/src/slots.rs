//! Connection slots: how many sessions may be open, and whom to shed when a new one comes
//! and all are taken. Modelled on sshd's MaxStartups: connections that have not said hello
//! yet, then idle ones (hello said, no request running, not subscribed), go first, oldest
//! first, so a flood of silent or stalled clients cannot lock a real client out. Only when
//! every slot is busy or subscribed is a newcomer refused. The cap is also held under the
//! descriptor limit, with a reserve for the files, the state and the runtime.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Descriptors kept back from sessions: the AWS files, the SSO cache, the state file and
/// its temp file, inotify, the listener, the runtime's own, validation's HTTP sockets.
pub const FD_RESERVE: u64 = 64;
/// At most this share of the slots (in eighths) may be taken by connections that have not
/// said hello, so that a hello flood can never evict clients that did.
const PRE_HELLO_EIGHTHS: usize = 4;
/// Repeated warnings (refusals, sheds, accept errors) are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Where a session is in its life, as far as shedding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    PreHello = 0,
    Idle = 1,
    Busy = 2,
    Subscribed = 3,
}

/// One session's slot: it reports its phase here and leaves when `shed` is cancelled.
/// Dropping it frees the slot.
pub struct Slot {
    id: u64,
    phase: Arc<AtomicU8>,
    pub shed: CancellationToken,
    slots: Slots,
}

impl Slot {
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().entries.remove(&self.id);
    }
}

struct Entry {
    phase: Arc<AtomicU8>,
    shed: CancellationToken,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// By id, which is by age: the first match is the oldest.
    entries: BTreeMap<u64, Entry>,
}

/// The slot table, shared by the accept loop and the sessions.
#[derive(Clone)]
pub struct Slots {
    cap: usize,
    table: Arc<Mutex<Table>>,
}

/// What became of a newcomer.
pub enum Admission {
    Admitted(Slot),
    /// Every slot is busy or subscribed.
    Full,
}

impl Slots {
    pub fn new(cap: usize) -> Slots {
        Slots {
            cap: cap.max(1),
            table: Arc::default(),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection, shedding the oldest pre-hello (then idle) session if all
    /// slots are taken. Returns how many were shed (0 or 1) with the admission.
    pub fn admit(&self) -> (Admission, usize) {
        let mut table = self.lock();
        let phase_of = |e: &Entry| e.phase.load(Ordering::SeqCst);
        let pre_hello = table
            .entries
            .values()
            .filter(|e| phase_of(e) == Phase::PreHello as u8)
            .count();
        let mut shed = 0;
        // A newcomer starts pre-hello: over their share, the oldest of them gives way;
        // over the cap, the oldest pre-hello or else idle one does.
        let over_share = pre_hello + 1 > self.cap * PRE_HELLO_EIGHTHS / 8;
        let over_cap = table.entries.len() >= self.cap;
        if over_share || over_cap {
            let victim = [Phase::PreHello, Phase::Idle]
                .into_iter()
                .take(if over_cap { 2 } else { 1 })
                .find_map(|phase| {
                    table
                        .entries
                        .iter()
                        .find(|(_, e)| phase_of(e) == phase as u8)
                        .map(|(id, _)| *id)
                });
            match victim {
                Some(id) => {
                    if let Some(entry) = table.entries.remove(&id) {
                        entry.shed.cancel();
                        shed = 1;
                    }
                }
                None if over_cap => return (Admission::Full, 0),
                None => {}
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let phase = Arc::new(AtomicU8::new(Phase::PreHello as u8));
        let token = CancellationToken::new();
        table.entries.insert(
            id,
            Entry {
                phase: Arc::clone(&phase),
                shed: token.clone(),
            },
        );
        drop(table);
        let slot = Slot {
            id,
            phase,
            shed: token,
            slots: self.clone(),
        };
        (Admission::Admitted(slot), shed)
    }

    pub fn open(&self) -> usize {
        self.lock().entries.len()
    }
}

/// The connection cap: the configured one, held under the soft descriptor limit (raised to
/// the hard limit first) minus [`FD_RESERVE`].
pub fn effective_cap(configured: usize) -> usize {
    match descriptor_limit() {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
            let cap = configured.min(room.max(1));
            if cap < configured {
                tracing::info!(
                    configured,
                    cap,
                    descriptor_limit = limit,
                    "connection cap lowered to fit the descriptor limit"
                );
            }
            cap
        }
        None => configured,
    }
}

#[cfg(unix)]
fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<u64> {
    None
}

/// A warning that may repeat in a flood: logged at once, then at most every
/// [`LOG_EVERY`] with the number of repeats in between.
pub struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    pub const fn new(what: &'static str) -> Throttled {
        Throttled {
            what,
            last: None,
            suppressed: 0,
        }
    }

    /// Logs `detail` now, or counts it for the next line.
    pub fn warn(&mut self, detail: &dyn std::fmt::Display) {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        let what = self.what;
        let repeats = std::mem::take(&mut self.suppressed);
        if repeats > 0 {
            tracing::warn!(%detail, repeats_not_logged = repeats, "{what}");
        } else {
            tracing::warn!(%detail, "{what}");
        }
        self.last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(slots: &Slots) -> Slot {
        match slots.admit().0 {
            Admission::Admitted(slot) => slot,
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn sheds_pre_hello_then_idle_oldest_first_and_refuses_when_all_work() {
        let slots = Slots::new(4);
        let a = admitted(&slots);
        a.set(Phase::Subscribed);
        let b = admitted(&slots);
        b.set(Phase::Idle);
        let c = admitted(&slots);
        c.set(Phase::Busy);
        let d = admitted(&slots);
        // d is pre-hello, and over half the slots are not: no one is shed yet.
        assert!(!d.shed.is_cancelled());
        // Full: the pre-hello one goes before the idle one, although it is younger.
        let e = admitted(&slots);
        assert!(d.shed.is_cancelled() && !b.shed.is_cancelled());
        e.set(Phase::Busy);
        let f = admitted(&slots);
        assert!(b.shed.is_cancelled(), "then the idle one");
        f.set(Phase::Subscribed);
        // All busy or subscribed: refused.
        assert!(matches!(slots.admit().0, Admission::Full));
        assert!(!a.shed.is_cancelled() && !c.shed.is_cancelled());
        drop(c);
        let _g = admitted(&slots);
    }

    #[test]
    fn a_hello_flood_cannot_take_more_than_its_share() {
        let slots = Slots::new(8);
        let said_hello: Vec<Slot> = (0..4)
            .map(|_| {
                let s = admitted(&slots);
                s.set(Phase::Idle);
                s
            })
            .collect();
        let flood: Vec<Slot> = (0..100).map(|_| admitted(&slots)).collect();
        assert!(said_hello.iter().all(|s| !s.shed.is_cancelled()));
        assert_eq!(flood.iter().filter(|s| !s.shed.is_cancelled()).count(), 4);
        assert!(!flood[99].shed.is_cancelled(), "the newest stays");
    }
}
