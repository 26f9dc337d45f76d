//! The daemon's log, bounded: repeated lines are coalesced into a count per interval, and
//! the bytes written per interval are capped, so a file rewritten every few milliseconds
//! with a thousand accounts cannot fill the disk. `--log-file` writes to a file of its own
//! that is rotated by size (`log/file.rs`; the launchd agent uses it).
//!
//! Lines at info and above are coalesced per call site (and per `event` field, so each
//! event type has its own count): the first [`BURST`] of a kind in a [`WINDOW`] are
//! written, the rest counted. When the window ends, one summary line says how many of each
//! kind were left out, written by a task woken only when something was (no timer runs
//! while the log is quiet). Debug and trace lines are never coalesced or capped: they are
//! asked for.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter};

pub mod file;

/// The interval over which lines are counted.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one kind written per window before the rest are counted.
pub const BURST: u32 = 20;
/// Bytes of info-and-above lines written per window (the summaries come on top, each at
/// most [`SUMMARY_KINDS`] kinds long).
pub const BYTES_PER_WINDOW: usize = 64 * 1024;
/// Kinds named in one summary line; the others are added up.
const SUMMARY_KINDS: usize = 10;
/// The target of the summary lines (never coalesced themselves).
const TARGET: &str = "cmdrd::log";

/// A kind of line: its call site and its `event` field, if any.
type Kind = (tracing::callsite::Identifier, Option<String>);

#[derive(Default)]
struct Count {
    written: u32,
    left_out: u64,
    /// Where the line comes from, for the summary.
    label: String,
}

struct Window {
    started: Instant,
    kinds: HashMap<Kind, Count>,
    bytes: usize,
    /// Lines dropped for the byte cap in this window.
    over_cap: u64,
    /// Something was left out in this window: the flusher has been woken.
    woken: bool,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            started: now,
            kinds: HashMap::new(),
            bytes: 0,
            over_cap: 0,
            woken: false,
        }
    }

    /// The summary of what this window left out, if anything.
    fn summary(&self) -> Option<String> {
        let mut left: Vec<&Count> = self.kinds.values().filter(|c| c.left_out > 0).collect();
        if left.is_empty() && self.over_cap == 0 {
            return None;
        }
        left.sort_by(|a, b| b.left_out.cmp(&a.left_out).then(a.label.cmp(&b.label)));
        let mut text = String::new();
        for count in left.iter().take(SUMMARY_KINDS) {
            if !text.is_empty() {
                text.push_str(", ");
            }
            let _ = write!(text, "{} × {}", count.left_out, count.label);
        }
        if left.len() > SUMMARY_KINDS {
            let rest: u64 = left[SUMMARY_KINDS..].iter().map(|c| c.left_out).sum();
            let _ = write!(
                text,
                ", {rest} of {} other kinds",
                left.len() - SUMMARY_KINDS
            );
        }
        if self.over_cap > 0 {
            if !text.is_empty() {
                text.push_str("; ");
            }
            let _ = write!(text, "{} lines over the byte cap", self.over_cap);
        }
        Some(text)
    }
}

/// The current window and the summaries of ended ones not yet written.
struct Inner {
    window: Window,
    pending: Vec<String>,
}

impl Inner {
    /// Starts a new window if the current one is over, keeping its summary.
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.window.started) >= WINDOW {
            if let Some(summary) = self.window.summary() {
                self.pending.push(summary);
            }
            self.window = Window::new(now);
        }
    }

    /// Notes that something was left out; true when the flusher must be woken for it.
    fn left_out(&mut self) -> bool {
        !std::mem::replace(&mut self.window.woken, true)
    }
}

/// The coalescer `main.rs` set up logging with ([`Coalescer::install`]).
static INSTALLED: std::sync::OnceLock<Arc<Coalescer>> = std::sync::OnceLock::new();

/// What the filter, the writer and the flusher share.
pub struct Coalescer {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
}

impl Coalescer {
    pub fn new() -> Arc<Coalescer> {
        Arc::new(Coalescer {
            inner: Mutex::new(Inner {
                window: Window::new(Instant::now()),
                pending: Vec::new(),
            }),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The state, the current window started afresh if the last one is over.
    fn now(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.roll(Instant::now());
        inner
    }

    /// Whether a line of this kind is written now; counts it either way. (Nothing is
    /// logged from here: this runs while another line is being dispatched.)
    fn admit(&self, meta: &'static Metadata<'static>, event_field: Option<String>) -> bool {
        let mut inner = self.now();
        let count = inner
            .window
            .kinds
            .entry((meta.callsite(), event_field.clone()))
            .or_insert_with(|| Count {
                label: label(meta, event_field.as_deref()),
                ..Count::default()
            });
        let admitted = count.written < BURST;
        if admitted {
            count.written += 1;
        } else {
            count.left_out += 1;
        }
        let wake = !admitted && inner.left_out();
        drop(inner);
        if wake {
            self.wake.notify_one();
        }
        admitted
    }

    /// Whether `len` more bytes of info-and-above may be written in this window.
    fn spend(&self, len: usize) -> bool {
        let mut inner = self.now();
        if inner.window.bytes + len > BYTES_PER_WINDOW {
            inner.window.over_cap += 1;
            let wake = inner.left_out();
            drop(inner);
            if wake {
                self.wake.notify_one();
            }
            return false;
        }
        inner.window.bytes += len;
        true
    }

    /// Makes this the coalescer whose summaries `cmdrd::run` writes (a task of its
    /// tracker, in its shutdown order): `main.rs` installs the one its logging uses.
    pub fn install(self: &Arc<Self>) {
        let _ = INSTALLED.set(Arc::clone(self));
    }

    /// The installed coalescer, if logging was set up with one.
    pub fn installed() -> Option<Arc<Coalescer>> {
        INSTALLED.get().cloned()
    }

    /// Writes the summary of each window that left something out, once it ends, until
    /// `stop`. Sleeps on a notification until something is left out; no timer runs while
    /// the log is quiet.
    pub async fn flush(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = self.flush_windows() => {}
        }
    }

    async fn flush_windows(&self) {
        loop {
            self.wake.notified().await;
            loop {
                let ends = self.now().window.started + WINDOW;
                tokio::time::sleep_until(tokio::time::Instant::from_std(ends)).await;
                let mut inner = self.now();
                let summaries = std::mem::take(&mut inner.pending);
                let again = inner.window.woken;
                drop(inner);
                for summary in summaries {
                    emit(&summary);
                }
                if !again {
                    break;
                }
            }
        }
    }
}

fn emit(summary: &str) {
    tracing::warn!(target: TARGET, "repeated log lines left out in the last {} s: {summary}", WINDOW.as_secs());
}

fn label(meta: &Metadata<'_>, event_field: Option<&str>) -> String {
    let site = match (meta.file(), meta.line()) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        _ => meta.target().to_owned(),
    };
    match event_field {
        Some(event) => format!("event={event} ({site})"),
        None => site,
    }
}

/// The value of an event's `event` field.
#[derive(Default)]
struct EventField(Option<String>);

impl Visit for EventField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "event" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The per-layer filter that coalesces info-and-above lines.
pub struct Coalesce(pub Arc<Coalescer>);

impl<S: Subscriber> Filter<S> for Coalesce {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || meta.target() == TARGET {
            return true;
        }
        let mut field = EventField::default();
        event.record(&mut field);
        self.0.admit(meta, field.0)
    }
}

/// A writer maker that drops info-and-above lines over [`BYTES_PER_WINDOW`].
pub struct Capped<M> {
    pub inner: M,
    pub coalescer: Arc<Coalescer>,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Capped<M> {
    type Writer = CappedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        CappedWriter {
            inner: self.inner.make_writer(),
            cap: None,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let capped = *meta.level() <= Level::INFO && meta.target() != TARGET;
        CappedWriter {
            inner: self.inner.make_writer_for(meta),
            cap: capped.then(|| Arc::clone(&self.coalescer)),
        }
    }
}

/// One line's writer: the fmt layer writes each line with one `write_all`.
pub struct CappedWriter<W> {
    inner: W,
    cap: Option<Arc<Coalescer>>,
}

impl<W: Write> Write for CappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(cap) = &self.cap
            && !cap.spend(buf.len())
        {
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(cap) = &self.cap
            && !cap.spend(buf.len())
        {
            return Ok(());
        }
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_the_kinds_most_left_out_first() {
        let mut window = Window::new(Instant::now());
        assert_eq!(window.summary(), None);
        for (label, left_out) in [("a", 3), ("b", 30)] {
            window.kinds.insert(
                (
                    tracing::callsite::Identifier(&DUMMY),
                    Some(label.to_owned()),
                ),
                Count {
                    written: BURST,
                    left_out,
                    label: format!("event={label}"),
                },
            );
        }
        window.over_cap = 2;
        assert_eq!(
            window.summary().as_deref(),
            Some("30 × event=b, 3 × event=a; 2 lines over the byte cap")
        );
    }

    struct Dummy;
    impl tracing::callsite::Callsite for Dummy {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unimplemented!()
        }
    }
    static DUMMY: Dummy = Dummy;
}
