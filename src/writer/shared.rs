//! The hub: what the handles, the lifecycle calls, the writer thread and
//! the hook threads share, and the calls that only flip its state and wait
//! (start, stop, close, flush requests), and the one place that starts
//! the writer's threads, so that `close` can join them. What the threads
//! run lives elsewhere (`worker`, `hooks`); this module imports neither.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::time::{Duration, Instant, SystemTime};

use super::queue::{on_writer_thread, Queue, CONTROL};
use super::stats::{CloseReport, ErrorOrigin, ErrorRecord, WriterStats};
use crate::clock::{deadline_after, Clock};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Arc, Mutex};
use crate::wait::{Waiters, Wake};

/// The writer thread's state, in [`Shared::mode`].
pub(super) const RUNNING: usize = 0;
/// Asked to make one pass (write, flush, sync) and then idle.
pub(super) const STOPPING: usize = 1;
pub(super) const STOPPED: usize = 2;
/// Asked to make a last pass over every shard and exit.
pub(super) const CLOSING: usize = 3;
pub(super) const EXITED: usize = 4;

/// The async hook: its period, its concurrency limit and the hook.
pub(super) type AsyncHook = (Duration, Option<usize>, Box<dyn Fn() + Send + Sync>);

pub(super) struct Settings {
    pub(super) coalesce: usize,
    pub(super) sync_period: Option<Duration>,
    pub(super) errors_kept: usize,
    pub(super) flush_when_idle: bool,
    pub(super) linger: Duration,
    /// A pass that takes fewer bytes than this lingers afterwards.
    pub(super) linger_bytes: u64,
    pub(super) thread_name: String,
}

/// The writer thread's accounting, updated around every sink call; close
/// reads it under the same lock, so its report is one consistent snapshot.
#[derive(Default)]
pub(super) struct Counts {
    /// The writer thread's counters (written, failed, sink and sync calls,
    /// unwritten); [`Shared::stats`] fills in the rest.
    pub(super) stats: WriterStats,
    pub(super) unwritten_bytes: u64,
    /// Taken from the shards, not yet in a sink call.
    pub(super) held: u64,
    pub(super) held_bytes: u64,
    /// In the sink call in progress.
    pub(super) in_call: u64,
    pub(super) in_call_bytes: u64,
    /// Set by a close that ran out of time: no further sink call.
    pub(super) abandoned: bool,
    /// The last stop or close pass flushed the sink successfully.
    pub(super) final_flush_ok: bool,
}

/// An error as a flush or sync request reports it.
pub(super) type Failure = (io::ErrorKind, String);

/// One `flush` or `sync_now` waiting for the writer thread.
pub(super) struct Ticket {
    pub(super) sync: bool,
    outcome: Mutex<Option<Result<(), Failure>>>,
}

impl Ticket {
    /// Answers once; later answers are ignored. Callers then notify `answers`.
    pub(super) fn answer(&self, outcome: Result<(), Failure>) {
        self.outcome.lock().get_or_insert(outcome);
    }
}

/// Flush and sync requests.
#[derive(Default)]
pub(super) struct Tickets {
    /// Not yet picked up by the writer thread.
    pub(super) pending: Vec<Arc<Ticket>>,
    /// In the writer thread's current pass.
    pub(super) in_pass: Vec<Arc<Ticket>>,
}

#[derive(Default)]
pub(super) struct HookCounts {
    pub(super) runs: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) panics: AtomicU64,
    /// Runs handed out and not finished.
    pub(super) in_flight: AtomicUsize,
    /// Runs handed out and not yet picked up by a hook thread.
    pub(super) queued: AtomicUsize,
}

pub(super) struct Shared {
    pub(super) queue: Queue,
    pub(super) settings: Settings,
    pub(super) clock: Box<dyn Clock>,
    pub(super) async_hook: Option<AsyncHook>,
    pub(super) counts: Mutex<Counts>,
    pub(super) tickets: Mutex<Tickets>,
    errors: Mutex<VecDeque<ErrorRecord>>,
    errors_total: AtomicU64,
    pub(super) hooks: HookCounts,
    /// [`RUNNING`], [`STOPPING`], [`STOPPED`], [`CLOSING`] or [`EXITED`].
    pub(super) mode: AtomicUsize,
    /// Whether started, and since when; held across lifecycle changes.
    started: Mutex<Option<Instant>>,
    /// The writer and hook threads wait here for requests and mode changes.
    pub(super) requests: Waiters,
    /// Hook threads wait here for runs.
    pub(super) hook_work: Waiters,
    /// Callers wait here for answers, mode changes and the end of hook runs.
    pub(super) answers: Waiters,
    close_report: Mutex<Option<CloseReport>>,
    /// Every thread started for this writer, joined by the first `close`.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Threads whose body has not returned yet.
    live: AtomicUsize,
}

/// Counts a thread's body out of [`Shared::live`], however it leaves.
struct Live<'a>(&'a Shared);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.answers.notify_all();
    }
}

/// Why a lifecycle call ([`start`](super::SerialWriter::start),
/// [`stop`](super::SerialWriter::stop), [`restart`](super::SerialWriter::restart))
/// did nothing or did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleError {
    /// `start` while the writer runs.
    AlreadyRunning,
    /// `stop` while the writer is not running.
    NotRunning,
    /// The writer was closed; it cannot start again.
    Closed,
    /// `stop` ran out of time: the writer thread is still writing (or stuck
    /// in the sink); it stops once done, or goes on if started again.
    TimedOut,
}

impl fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AlreadyRunning => "the writer is already running",
            Self::NotRunning => "the writer is not running",
            Self::Closed => "the writer is closed",
            Self::TimedOut => "the writer thread did not stop by the deadline (still in the sink)",
        })
    }
}

impl std::error::Error for LifecycleError {}

impl Shared {
    pub(super) fn new(
        queue: Queue,
        settings: Settings,
        clock: Box<dyn Clock>,
        async_hook: Option<AsyncHook>,
    ) -> Self {
        let started = Some(clock.now());
        Self {
            queue,
            settings,
            clock,
            async_hook,
            counts: Mutex::new(Counts::default()),
            tickets: Mutex::default(),
            errors: Mutex::new(VecDeque::new()),
            errors_total: AtomicU64::new(0),
            hooks: HookCounts::default(),
            mode: AtomicUsize::new(RUNNING),
            started: Mutex::new(started),
            requests: Waiters::default(),
            hook_work: Waiters::default(),
            answers: Waiters::default(),
            close_report: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
        }
    }

    /// Starts a thread named `name` running `body`, kept for `close` to join.
    pub(super) fn spawn(
        this: &Arc<Shared>,
        name: String,
        body: impl FnOnce(&Arc<Shared>) + Send + 'static,
    ) -> io::Result<()> {
        // Counted before it starts, so `close` never sees a thread that
        // runs but is not counted; the spawner is live until it pushes the
        // handle, so `live == 0` means every handle is in `threads`.
        this.live.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(this);
        let spawned = thread::Builder::new().name(name).spawn(move || {
            let _live = Live(&shared);
            body(&shared);
        });
        match spawned {
            Ok(handle) => {
                this.threads.lock().push(handle);
                Ok(())
            }
            Err(e) => {
                this.live.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Waits up to `end` for every thread of the writer but the caller to
    /// leave its body, then joins them. A thread stuck in the sink or a
    /// hook past `end` is left to finish on its own (detached).
    fn join_threads(&self, end: Option<Instant>) {
        let me = thread::current().id();
        let mine = self.threads.lock().iter().any(|h| h.thread().id() == me);
        let others_done = || self.live.load(Ordering::SeqCst) <= usize::from(mine);
        if !self.answers.wait_until(end, others_done) {
            return;
        }
        let handles = mem::take(&mut *self.threads.lock());
        for handle in handles {
            if handle.thread().id() != me {
                // The body has returned (panics are caught inside it): this
                // waits only for the thread's exit.
                let _ = handle.join();
            }
        }
    }

    pub(super) fn mode(&self) -> usize {
        self.mode.load(Ordering::SeqCst)
    }

    /// Asks the writer thread (and the hook ticker) to look at requests.
    pub(super) fn poke(&self) {
        self.queue.signal.fetch_or(CONTROL, Ordering::SeqCst);
        self.requests.notify_all();
    }

    /// Parks the calling thread until poked, or `deadline` on the clock;
    /// returns at once if `ready()`. Spurious returns happen.
    pub(super) fn sleep(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) {
        let ticket = self.requests.register(Wake::current_thread());
        if !ready() {
            self.clock.park_until(deadline);
        }
        self.requests.unregister(ticket, true);
    }

    pub(super) fn record_error(
        &self,
        origin: ErrorOrigin,
        message: String,
        kind: Option<io::ErrorKind>,
        records: u64,
    ) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let kept = self.settings.errors_kept;
        if kept == 0 {
            return;
        }
        let mut errors = self.errors.lock();
        if errors.len() >= kept {
            errors.pop_front();
        }
        let at = SystemTime::now();
        errors.push_back(ErrorRecord {
            origin,
            message,
            kind,
            at,
            records,
        });
    }

    pub(super) fn errors(&self) -> Vec<ErrorRecord> {
        self.errors.lock().iter().cloned().collect()
    }

    pub(super) fn last_error(&self) -> Option<ErrorRecord> {
        self.errors.lock().back().cloned()
    }

    pub(super) fn start(&self) -> Result<(), LifecycleError> {
        let mut started = self.started.lock();
        if self.queue.closed.load(Ordering::SeqCst) {
            return Err(LifecycleError::Closed);
        }
        if started.is_some() {
            return Err(LifecycleError::AlreadyRunning);
        }
        *started = Some(self.clock.now());
        self.mode.store(RUNNING, Ordering::SeqCst);
        self.poke();
        Ok(())
    }

    pub(super) fn stop(&self, deadline: Duration) -> Result<(), LifecycleError> {
        let end = deadline_after(Instant::now(), deadline);
        {
            let mut started = self.started.lock();
            if started.take().is_none() {
                return Err(LifecycleError::NotRunning);
            }
            self.mode.store(STOPPING, Ordering::SeqCst);
        }
        self.poke();
        let stopped = self.answers.wait_until(end, || self.mode() != STOPPING);
        self.wait_hooks(end);
        if stopped {
            Ok(())
        } else {
            Err(LifecycleError::TimedOut)
        }
    }

    /// Counts one async hook run in and queues it, unless the writer left
    /// `RUNNING`: under the lock stop and close change the state with, so
    /// a run they do not wait for never starts.
    pub(super) fn begin_hook_run(&self) -> bool {
        let _lifecycle = self.started.lock();
        if self.mode() != RUNNING {
            return false;
        }
        self.hooks.in_flight.fetch_add(1, Ordering::SeqCst);
        self.hooks.runs.fetch_add(1, Ordering::Relaxed);
        self.hooks.queued.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn wait_hooks(&self, end: Option<Instant>) {
        let hooks = &self.hooks;
        self.answers
            .wait_until(end, || hooks.in_flight.load(Ordering::SeqCst) == 0);
    }

    /// When the writer last started (on its clock), if it runs.
    pub(super) fn started(&self) -> Option<Instant> {
        *self.started.lock()
    }

    pub(super) fn is_running(&self) -> bool {
        self.started.lock().is_some()
    }

    pub(super) fn uptime(&self) -> Duration {
        let started = *self.started.lock();
        started.map_or(Duration::ZERO, |t| {
            self.clock.now().saturating_duration_since(t)
        })
    }

    pub(super) fn close(&self, deadline: Duration) -> CloseReport {
        let end = deadline_after(Instant::now(), deadline);
        if self.queue.closed.swap(true, Ordering::SeqCst) {
            let done = || self.close_report.lock().is_some();
            self.answers.wait_until(end, done);
            let report = self.close_report.lock().clone();
            return report.unwrap_or_else(|| CloseReport {
                timed_out: true,
                ..self.report()
            });
        }
        self.queue.close_barrier();
        {
            let mut started = self.started.lock();
            *started = None;
            self.mode.store(CLOSING, Ordering::SeqCst);
        }
        self.poke();
        self.hook_work.notify_all();
        let drained = self.answers.wait_until(end, || self.mode() == EXITED);
        if !drained {
            // Out of time: no further sink call; what the writer thread
            // holds and what the shards hold is counted unwritten.
            let mut counts = self.counts.lock();
            counts.abandoned = true;
            let (records, bytes) = self.queue.discard_all();
            counts.stats.unwritten += mem::take(&mut counts.held) + records;
            counts.unwritten_bytes += mem::take(&mut counts.held_bytes) + bytes;
            drop(counts);
            self.fail_tickets(closed_failure());
        }
        self.wait_hooks(end);
        self.join_threads(end);
        let report = CloseReport {
            timed_out: !drained,
            flushed: drained && self.counts.lock().final_flush_ok,
            ..self.report()
        };
        *self.close_report.lock() = Some(report.clone());
        self.answers.notify_all();
        report
    }

    /// Answers every request, pending or in progress, with `failure`.
    pub(super) fn fail_tickets(&self, failure: Failure) {
        let Tickets { pending, in_pass } = mem::take(&mut *self.tickets.lock());
        for ticket in pending.into_iter().chain(in_pass) {
            ticket.answer(Err(failure.clone()));
        }
        self.answers.notify_all();
    }

    /// Queues a flush (or sync) request and waits for the writer thread to
    /// answer it, up to `deadline`.
    pub(super) fn request(&self, sync: bool, deadline: Option<Instant>) -> io::Result<()> {
        if on_writer_thread() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "flush called on the writer thread (in the sink or a hook) would wait for itself",
            ));
        }
        let ticket = Arc::new(Ticket {
            sync,
            outcome: Mutex::new(None),
        });
        {
            let mut tickets = self.tickets.lock();
            match self.mode() {
                _ if self.queue.closed.load(Ordering::SeqCst) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the writer is closed",
                    ))
                }
                RUNNING | STOPPING => tickets.pending.push(Arc::clone(&ticket)),
                _ => {
                    return Err(io::Error::other(
                        "the writer is stopped; queued records wait for start()",
                    ))
                }
            }
        }
        self.poke();
        let answered = || ticket.outcome.lock().is_some();
        if !self.answers.wait_until(deadline, answered) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the flush did not complete in time",
            ));
        }
        let outcome = ticket.outcome.lock().take();
        outcome
            .unwrap_or(Ok(()))
            .map_err(|(kind, message)| io::Error::new(kind, message))
    }

    pub(super) fn report(&self) -> CloseReport {
        let counts = self.counts.lock();
        let s = self.stats_of(&counts);
        CloseReport {
            accepted: s.accepted,
            accepted_bytes: s.accepted_bytes,
            written: s.written,
            written_bytes: s.written_bytes,
            failed: s.failed,
            failed_bytes: s.failed_bytes,
            dropped_oldest: s.dropped_oldest,
            dropped_oldest_bytes: s.dropped_oldest_bytes,
            dropped_newest: s.dropped_newest,
            unwritten: s.queued - counts.in_call + counts.stats.unwritten,
            unwritten_bytes: s.queued_bytes - counts.in_call_bytes + counts.unwritten_bytes,
            in_flight: counts.in_call,
            in_flight_bytes: counts.in_call_bytes,
            recovered: s.recovered,
            recovered_bytes: s.recovered_bytes,
            on_disk: s.on_disk,
            on_disk_bytes: s.on_disk_bytes,
            spill_lost: s.spill_lost,
            spill_lost_bytes: s.spill_lost_bytes,
            timed_out: false,
            flushed: false,
        }
    }

    pub(super) fn stats(&self) -> WriterStats {
        self.stats_of(&self.counts.lock())
    }

    fn stats_of(&self, counts: &Counts) -> WriterStats {
        let [accepted, accepted_bytes, live, live_bytes] = self.queue.sums();
        let (waiting, waiting_bytes) = self.queue.waiting();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (losses, hooks) = (&self.queue.losses, &self.hooks);
        let spill = self.queue.spill.as_ref();
        let disk = |f: fn(&super::spill::SpillSide) -> &AtomicU64| spill.map_or(0, |s| load(f(s)));
        WriterStats {
            spilled: disk(|s| &s.spilled),
            spilled_bytes: disk(|s| &s.spilled_bytes),
            on_disk: disk(|s| &s.on_disk),
            on_disk_bytes: disk(|s| &s.on_disk_bytes),
            recovered: spill.map_or(0, |s| s.recovered),
            recovered_bytes: spill.map_or(0, |s| s.recovered_bytes),
            spill_lost: disk(|s| &s.lost),
            spill_lost_bytes: disk(|s| &s.lost_bytes),
            spill_failed: load(&losses.spill_failed),
            accepted,
            accepted_bytes,
            queued: live + counts.held + counts.in_call,
            queued_bytes: live_bytes + counts.held_bytes + counts.in_call_bytes,
            waiting,
            waiting_bytes,
            dropped_newest: load(&losses.dropped_newest),
            dropped_oldest: load(&losses.dropped_oldest),
            dropped_oldest_bytes: load(&losses.dropped_oldest_bytes),
            rejected: load(&losses.rejected),
            timed_out: load(&losses.timed_out),
            too_large: load(&losses.too_large),
            refused_closed: load(&losses.refused_closed),
            async_runs: load(&hooks.runs),
            async_skipped: load(&hooks.skipped),
            async_panics: load(&hooks.panics),
            async_running: hooks.in_flight.load(Ordering::Relaxed) as u64,
            errors: load(&self.errors_total),
            ..counts.stats.clone()
        }
    }
}

/// How requests fail once the writer is closed.
pub(super) fn closed_failure() -> Failure {
    (
        io::ErrorKind::BrokenPipe,
        "the writer was closed before the request was served".to_string(),
    )
}
