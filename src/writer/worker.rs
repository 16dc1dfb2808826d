//! The writer thread: takes shard buffers, cuts them into coalesced sink
//! calls, flushes, runs the sync hook, answers flush tickets; and the
//! shared state it works on.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::queue::{
    Batch, Chunk, Queue, WaitList, AWAKE, CONTROL, IN_SINK, LINGERING, PARKED, SHARD_FREE_MAX,
};
use super::stats::{CloseReport, ErrorOrigin, ErrorRecord};
use super::{AsyncHook, SyncHook};
use crate::sync::atomic::fence;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::thread::{self, JoinHandle, Thread};
use crate::sync::{Arc, Mutex};
use crate::unwind::message as panic_message;

/// The sink as the writer thread sees it, its type erased.
pub(super) trait SinkOps: Send {
    /// Writes all of `data`; returns the bytes the sink took and the error
    /// that stopped it, if any.
    fn write_chunk(&mut self, data: &[u8]) -> (usize, Option<io::Error>);
    fn flush(&mut self) -> io::Result<()>;
    fn has_sync(&self) -> bool;
    fn sync(&mut self) -> io::Result<()>;
}

pub(super) struct Typed<W> {
    pub(super) sink: W,
    pub(super) sync: Option<SyncHook<W>>,
}

impl<W: Write + Send> SinkOps for Typed<W> {
    fn write_chunk(&mut self, data: &[u8]) -> (usize, Option<io::Error>) {
        let mut done = 0;
        while done < data.len() {
            match self.sink.write(&data[done..]) {
                Ok(0) => {
                    return (
                        done,
                        Some(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the sink accepted 0 bytes",
                        )),
                    )
                }
                Ok(n) => done += n.min(data.len() - done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    fn has_sync(&self) -> bool {
        self.sync.is_some()
    }

    fn sync(&mut self) -> io::Result<()> {
        match &mut self.sync {
            Some(hook) => hook(&mut self.sink),
            None => Ok(()),
        }
    }
}

pub(super) struct Settings {
    pub(super) coalesce: usize,
    pub(super) sync_period: Option<Duration>,
    pub(super) async_hook: Option<(Duration, Option<usize>, AsyncHook)>,
    pub(super) errors_kept: usize,
    pub(super) flush_when_idle: bool,
    pub(super) linger: Duration,
    pub(super) thread_name: String,
}

/// The writer thread's accounting, updated around every sink call. Close
/// reads it under the same lock, so its report is one consistent snapshot.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) written: u64,
    pub(super) written_bytes: u64,
    pub(super) failed: u64,
    pub(super) failed_bytes: u64,
    /// Taken from the shards, not yet in a sink call.
    pub(super) held: u64,
    pub(super) held_bytes: u64,
    /// In the sink call in progress.
    pub(super) in_call: u64,
    pub(super) in_call_bytes: u64,
    pub(super) unwritten: u64,
    pub(super) unwritten_bytes: u64,
    pub(super) sink_calls: u64,
    pub(super) sink_errors: u64,
    pub(super) sink_panics: u64,
    pub(super) sink_flushes: u64,
    pub(super) flush_errors: u64,
    pub(super) sync_runs: u64,
    pub(super) sync_errors: u64,
    /// Set by a close that ran out of time: no further sink call.
    pub(super) abandoned: bool,
    /// The last final pass (stop or close) flushed the sink successfully.
    pub(super) final_flush_ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TicketKind {
    Flush,
    Sync,
}

type Outcome = Result<(), (io::ErrorKind, String)>;

/// One `flush` / `sync_now` waiting for the writer thread.
pub(super) struct Ticket {
    pub(super) kind: TicketKind,
    /// 0 pending, 1 done, 2 failed (message in `error`).
    pub(super) state: AtomicUsize,
    pub(super) error: Mutex<Option<(io::ErrorKind, String)>>,
    pub(super) waiter: Thread,
}

impl Ticket {
    /// Answers once; later answers are ignored.
    pub(super) fn answer(&self, outcome: Outcome) {
        let mut error = self.error.lock();
        if self.state.load(Ordering::Acquire) != 0 {
            return;
        }
        let state = match outcome {
            Ok(()) => 1,
            Err(e) => {
                *error = Some(e);
                2
            }
        };
        self.state.store(state, Ordering::Release);
        drop(error);
        self.waiter.unpark();
    }
}

#[derive(Default)]
pub(super) struct Tickets {
    pub(super) pending: Vec<Arc<Ticket>>,
    pub(super) in_progress: Vec<Arc<Ticket>>,
    /// A writer thread is there to answer.
    pub(super) accepting: bool,
}

#[derive(Default)]
pub(super) struct HookCounters {
    pub(super) async_runs: AtomicU64,
    pub(super) async_skipped: AtomicU64,
    pub(super) async_panics: AtomicU64,
    pub(super) async_in_flight: AtomicUsize,
}

#[derive(Default)]
pub(super) struct Control {
    pub(super) running: bool,
    pub(super) started: Option<Instant>,
    pub(super) worker: Option<JoinHandle<()>>,
    pub(super) ticker: Option<JoinHandle<()>>,
}

pub(super) struct Inner {
    pub(super) queue: Queue,
    pub(super) settings: Settings,
    pub(super) counts: Mutex<Counts>,
    pub(super) tickets: Mutex<Tickets>,
    pub(super) errors: Mutex<VecDeque<ErrorRecord>>,
    pub(super) errors_total: AtomicU64,
    pub(super) hooks: HookCounters,
    /// The sink while no writer thread owns it.
    pub(super) sink: Mutex<Option<Box<dyn SinkOps>>>,
    pub(super) control: Mutex<Control>,
    /// Asks the writer thread (and the async ticker) to finish.
    pub(super) stop_flag: AtomicBool,
    pub(super) worker_alive: AtomicBool,
    pub(super) exit_waiters: WaitList,
    pub(super) close_done: AtomicBool,
    pub(super) close_report: Mutex<Option<CloseReport>>,
    pub(super) close_waiters: WaitList,
}

impl Inner {
    pub(super) fn new(queue: Queue, settings: Settings, sink: Box<dyn SinkOps>) -> Self {
        Self {
            queue,
            settings,
            counts: Mutex::new(Counts::default()),
            tickets: Mutex::new(Tickets::default()),
            errors: Mutex::new(VecDeque::new()),
            errors_total: AtomicU64::new(0),
            hooks: HookCounters::default(),
            sink: Mutex::new(Some(sink)),
            control: Mutex::new(Control::default()),
            stop_flag: AtomicBool::new(false),
            worker_alive: AtomicBool::new(false),
            exit_waiters: WaitList::default(),
            close_done: AtomicBool::new(false),
            close_report: Mutex::new(None),
            close_waiters: WaitList::default(),
        }
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
        errors.push_back(ErrorRecord {
            origin,
            message,
            kind,
            at: std::time::SystemTime::now(),
            records,
        });
    }
}

#[cfg(not(sheaf_loom))]
thread_local! {
    static ON_WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `true` on a writer thread (inside the sink or the sync hook), where
/// waiting for the writer thread would wait forever.
pub(super) fn on_writer_thread() -> bool {
    #[cfg(not(sheaf_loom))]
    return ON_WRITER_THREAD.try_with(|c| c.get()).unwrap_or(false);
    #[cfg(sheaf_loom)]
    return false;
}

fn mark_writer_thread() {
    #[cfg(not(sheaf_loom))]
    let _ = ON_WRITER_THREAD.try_with(|c| c.set(true));
}

/// Marks the writer thread gone, whatever way it leaves.
struct ExitGuard<'a> {
    inner: &'a Inner,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let inner = self.inner;
        let stragglers = {
            let mut tickets = inner.tickets.lock();
            tickets.accepting = false;
            let mut all = mem::take(&mut tickets.pending);
            all.append(&mut tickets.in_progress);
            all
        };
        let message = if inner.queue.closed.load(Ordering::Acquire) {
            (
                io::ErrorKind::BrokenPipe,
                "the writer was closed before the request was served".to_string(),
            )
        } else {
            (
                io::ErrorKind::Other,
                "the writer stopped before the request was served".to_string(),
            )
        };
        for ticket in stragglers {
            ticket.answer(Err(message.clone()));
        }
        *inner.queue.worker.lock() = None;
        inner.worker_alive.store(false, Ordering::SeqCst);
        inner.exit_waiters.notify_all();
    }
}

/// The body of a writer thread.
pub(super) fn run(inner: &Inner, sink: Box<dyn SinkOps>) {
    mark_writer_thread();
    *inner.queue.worker.lock() = Some(thread::current());
    let guard = ExitGuard { inner };
    let mut worker = Worker {
        inner,
        sink,
        batches: Vec::new(),
        spares: Vec::new(),
        stash: (0..inner.queue.shard_count()).map(|_| Vec::new()).collect(),
        co_buf: Vec::new(),
        co_ends: Vec::new(),
        next_sync: inner.settings.sync_period.map(|p| Instant::now() + p),
        unflushed: false,
        failed_seen: inner.counts.lock().failed,
        linger_bytes: (inner.settings.coalesce.max(1) as u64).min(super::DEFAULT_COALESCE as u64),
    };
    worker.run();
    let Worker { sink, stash, .. } = worker;
    for chunks in stash {
        inner.queue.recycle(chunks);
    }
    *inner.sink.lock() = Some(sink);
    drop(guard);
}

struct Worker<'a> {
    inner: &'a Inner,
    sink: Box<dyn SinkOps>,
    batches: Vec<Batch>,
    spares: Vec<Batch>,
    /// Written chunks, per shard, to hand back at the shard's next take.
    stash: Vec<Vec<Chunk>>,
    /// The coalescing buffer and the end offsets of its records.
    co_buf: Vec<u8>,
    co_ends: Vec<usize>,
    next_sync: Option<Instant>,
    /// A record reached the sink since its last flush.
    unflushed: bool,
    /// `Counts::failed` when tickets were last answered: a flush reports
    /// the records that failed since the previous flush was answered.
    failed_seen: u64,
    /// A cycle that takes fewer bytes than this lingers afterwards.
    linger_bytes: u64,
}

/// A coalescing buffer larger than this is dropped rather than kept.
const SPARE_MAX_BYTES: usize = 4 << 20;

impl Worker<'_> {
    fn run(&mut self) {
        let inner = self.inner;
        let queue = &inner.queue;
        loop {
            let stopping = inner.stop_flag.load(Ordering::SeqCst);
            let mut bits = queue.signal.swap(0, Ordering::SeqCst);
            if stopping && queue.closed.load(Ordering::SeqCst) {
                // Closed: nothing can be appended any more, but a producer
                // may not have set its shard's bit yet. Take every shard.
                bits |= queue.all_shards();
            }
            let (want_flush, want_sync) = if bits & CONTROL != 0 {
                self.begin_tickets()
            } else {
                (false, false)
            };
            let taken = match self.take_and_write(bits) {
                Some(bytes) => bytes,
                None => return,
            };
            let idle = queue.signal.load(Ordering::SeqCst) & !CONTROL == 0;
            let flush = want_flush
                || want_sync
                || stopping
                || (self.unflushed && idle && inner.settings.flush_when_idle);
            let mut flush_error = None;
            if flush {
                match self.flush_sink() {
                    None => return,
                    Some(result) => flush_error = result.err(),
                }
            }
            let mut sync_error = None;
            if want_sync || stopping {
                sync_error = self.run_sync().err();
            } else {
                self.sync_if_due();
            }
            if stopping {
                inner.counts.lock().final_flush_ok = flush_error.is_none();
            }
            self.finish_tickets(flush_error, sync_error);
            if stopping {
                return;
            }
            // A cycle that found less than a full sink call's worth lingers,
            // so that the next one finds more.
            self.sleep(taken > 0 && taken < self.linger_bytes);
        }
    }

    /// Sleeps until woken, the next sync tick, or (after a small cycle,
    /// `small`) the end of the linger.
    fn sleep(&mut self, small: bool) {
        let inner = self.inner;
        let queue = &inner.queue;
        let now = Instant::now();
        let linger = inner.settings.linger;
        let lingering = small && !linger.is_zero();
        let until = match (lingering, self.next_sync) {
            (true, Some(at)) => Some(at.min(now + linger)),
            (true, None) => Some(now + linger),
            (false, at) => at,
        };
        queue
            .sleeping
            .store(if lingering { LINGERING } else { PARKED }, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let signal = queue.signal.load(Ordering::SeqCst);
        let pending = if lingering {
            signal & CONTROL != 0
        } else {
            signal != 0
        };
        if !pending && !inner.stop_flag.load(Ordering::SeqCst) {
            match until {
                None => thread::park(),
                Some(at) => {
                    if at > now {
                        thread::park_timeout(at - now);
                    }
                }
            }
        }
        queue.sleeping.store(AWAKE, Ordering::SeqCst);
    }

    /// Moves the pending tickets to `in_progress`; returns whether any asks
    /// for a flush, and any for a sync.
    fn begin_tickets(&mut self) -> (bool, bool) {
        let mut tickets = self.inner.tickets.lock();
        let pending = mem::take(&mut tickets.pending);
        let flush = pending.iter().any(|t| t.kind == TicketKind::Flush);
        let sync = pending.iter().any(|t| t.kind == TicketKind::Sync);
        tickets.in_progress.extend(pending);
        (flush, sync)
    }

    fn finish_tickets(
        &mut self,
        flush_error: Option<(io::ErrorKind, String)>,
        sync_error: Option<(io::ErrorKind, String)>,
    ) {
        let done = mem::take(&mut self.inner.tickets.lock().in_progress);
        if done.is_empty() {
            return;
        }
        let failed = self.inner.counts.lock().failed;
        let newly_failed = failed - mem::replace(&mut self.failed_seen, failed);
        for ticket in done {
            let outcome = if let Some(e) = &flush_error {
                Err(e.clone())
            } else if newly_failed > 0 {
                Err((
                    io::ErrorKind::Other,
                    format!("{newly_failed} records failed in the sink since the previous flush; see SerialWriter::errors"),
                ))
            } else if let (TicketKind::Sync, Some(e)) = (ticket.kind, &sync_error) {
                Err(e.clone())
            } else {
                Ok(())
            };
            ticket.answer(outcome);
        }
    }

    /// Takes the shards in `bits` and writes them; returns the bytes taken,
    /// or `None` once abandoned.
    fn take_and_write(&mut self, bits: u64) -> Option<u64> {
        let inner = self.inner;
        let mut taken = 0;
        if bits & !CONTROL != 0 {
            let mut counts = inner.counts.lock();
            if counts.abandoned {
                return None;
            }
            let (records, bytes) =
                inner
                    .queue
                    .take(bits, &mut self.batches, &mut self.spares, &mut self.stash);
            counts.held += records;
            counts.held_bytes += bytes;
            taken = bytes;
        }
        let mut batches = mem::take(&mut self.batches);
        let mut ok = true;
        for mut batch in batches.drain(..) {
            if ok {
                ok = self.write_batch(&mut batch);
            } else {
                inner.queue.recycle(batch.chunks.drain(..));
            }
            batch.head = 0;
            if self.spares.len() < inner.queue.shard_count() {
                self.spares.push(batch);
            }
        }
        self.batches = batches;
        (ok && self.emit_coalesced()).then_some(taken)
    }

    /// Writes a batch chunk by chunk, then gives its chunks back to the pool.
    fn write_batch(&mut self, batch: &mut Batch) -> bool {
        let mut ok = true;
        for (i, chunk) in batch.chunks.iter().enumerate() {
            let first = if i == 0 { batch.head } else { 0 };
            if !self.write_records(chunk, first) {
                ok = false;
                break;
            }
        }
        let queue = &self.inner.queue;
        let stash = &mut self.stash[batch.shard];
        for mut chunk in batch.chunks.drain(..) {
            if stash.len() < SHARD_FREE_MAX && chunk.bytes.capacity() == queue.chunk_size() {
                chunk.bytes.clear();
                chunk.ends.clear();
                stash.push(chunk);
            } else {
                queue.recycle(std::iter::once(chunk));
            }
        }
        ok
    }

    /// Cuts a chunk's records (from `first`) into spans of at most
    /// `coalesce` bytes at record boundaries; large spans go to the sink as
    /// they are, small ones are gathered in the coalescing buffer.
    fn write_records(&mut self, chunk: &Chunk, first: usize) -> bool {
        let co = self.inner.settings.coalesce;
        let ends = &chunk.ends;
        let mut rec = first;
        let mut start = chunk.start_of(rec);
        while rec < ends.len() {
            let mut k = rec + 1;
            while k < ends.len() && ends[k] - start <= co {
                k += 1;
            }
            let end = ends[k - 1];
            let span = end - start;
            if span.saturating_mul(2) >= co {
                if !self.emit_coalesced()
                    || !self.call(&chunk.bytes[start..end], &ends[rec..k], start)
                {
                    return false;
                }
            } else {
                if self.co_buf.len() + span > co && !self.emit_coalesced() {
                    return false;
                }
                let base = self.co_buf.len();
                self.co_buf.extend_from_slice(&chunk.bytes[start..end]);
                self.co_ends
                    .extend(ends[rec..k].iter().map(|e| e - start + base));
            }
            start = end;
            rec = k;
        }
        true
    }

    fn emit_coalesced(&mut self) -> bool {
        if self.co_buf.is_empty() {
            return true;
        }
        let mut buf = mem::take(&mut self.co_buf);
        let mut ends = mem::take(&mut self.co_ends);
        let ok = self.call(&buf, &ends, 0);
        buf.clear();
        ends.clear();
        if buf.capacity() <= SPARE_MAX_BYTES {
            self.co_buf = buf;
            self.co_ends = ends;
        }
        ok
    }

    /// One sink call with whole records; `ends` are their end offsets, less
    /// `base`, in `data`. `false` once abandoned (nothing is written then).
    fn call(&mut self, data: &[u8], ends: &[usize], base: usize) -> bool {
        let inner = self.inner;
        let records = ends.len() as u64;
        let bytes = data.len() as u64;
        {
            let mut counts = inner.counts.lock();
            if counts.abandoned {
                return false;
            }
            counts.held -= records;
            counts.held_bytes -= bytes;
            counts.in_call = records;
            counts.in_call_bytes = bytes;
            counts.sink_calls += 1;
        }
        let sink = &mut self.sink;
        inner.queue.sleeping.store(IN_SINK, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| sink.write_chunk(data)));
        inner.queue.sleeping.store(AWAKE, Ordering::Relaxed);
        let (done, done_bytes, error) = match outcome {
            Ok((_, None)) => (records, bytes, None),
            Ok((n, Some(e))) => {
                let k = ends.partition_point(|&end| end - base <= n);
                let k_bytes = if k == 0 { 0 } else { ends[k - 1] - base };
                (
                    k as u64,
                    k_bytes as u64,
                    Some((ErrorOrigin::SinkWrite, e.to_string(), Some(e.kind()))),
                )
            }
            Err(panic) => (
                0,
                0,
                Some((ErrorOrigin::SinkPanic, panic_message(panic.as_ref()), None)),
            ),
        };
        {
            let mut counts = inner.counts.lock();
            counts.in_call = 0;
            counts.in_call_bytes = 0;
            counts.written += done;
            counts.written_bytes += done_bytes;
            counts.failed += records - done;
            counts.failed_bytes += bytes - done_bytes;
            match error.as_ref().map(|e| e.0) {
                Some(ErrorOrigin::SinkPanic) => counts.sink_panics += 1,
                Some(_) => counts.sink_errors += 1,
                None => {}
            }
        }
        inner.queue.give_back(records as usize, data.len());
        self.unflushed = true;
        if let Some((origin, message, kind)) = error {
            inner.record_error(origin, message, kind, records - done);
        }
        self.sync_if_due();
        true
    }

    /// Flushes the sink: `None` once abandoned, else the outcome.
    fn flush_sink(&mut self) -> Option<Outcome> {
        let inner = self.inner;
        if inner.counts.lock().abandoned {
            return None;
        }
        let sink = &mut self.sink;
        inner.queue.sleeping.store(IN_SINK, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| sink.flush()));
        inner.queue.sleeping.store(AWAKE, Ordering::Relaxed);
        let mut counts = inner.counts.lock();
        counts.sink_flushes += 1;
        let result = match outcome {
            Ok(Ok(())) => {
                self.unflushed = false;
                Ok(())
            }
            Ok(Err(e)) => {
                counts.flush_errors += 1;
                drop(counts);
                inner.record_error(ErrorOrigin::SinkFlush, e.to_string(), Some(e.kind()), 0);
                Err((e.kind(), format!("the sink's flush failed: {e}")))
            }
            Err(panic) => {
                counts.sink_panics += 1;
                counts.flush_errors += 1;
                drop(counts);
                let message = panic_message(panic.as_ref());
                inner.record_error(ErrorOrigin::SinkPanic, message.clone(), None, 0);
                Err((
                    io::ErrorKind::Other,
                    format!("the sink panicked in flush: {message}"),
                ))
            }
        };
        Some(result)
    }

    fn sync_if_due(&mut self) {
        if self.next_sync.is_some_and(|at| Instant::now() >= at) {
            let _ = self.run_sync();
        }
    }

    /// Runs the sync hook (if any) and schedules the next periodic run.
    fn run_sync(&mut self) -> Outcome {
        if let Some(period) = self.inner.settings.sync_period {
            self.next_sync = Some(Instant::now() + period);
        }
        if !self.sink.has_sync() {
            return Ok(());
        }
        let inner = self.inner;
        if inner.counts.lock().abandoned {
            return Ok(());
        }
        let sink = &mut self.sink;
        inner.queue.sleeping.store(IN_SINK, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| sink.sync()));
        inner.queue.sleeping.store(AWAKE, Ordering::Relaxed);
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((ErrorOrigin::SyncHook, e.to_string(), Some(e.kind()))),
            Err(panic) => Some((
                ErrorOrigin::SyncHookPanic,
                panic_message(panic.as_ref()),
                None,
            )),
        };
        {
            let mut counts = inner.counts.lock();
            counts.sync_runs += 1;
            if failure.is_some() {
                counts.sync_errors += 1;
            }
        }
        match failure {
            None => Ok(()),
            Some((origin, message, kind)) => {
                inner.record_error(origin, message.clone(), kind, 0);
                Err((
                    kind.unwrap_or(io::ErrorKind::Other),
                    format!("the sync hook failed: {message}"),
                ))
            }
        }
    }
}

/// The body of the async-hook ticker thread: every `period`, starts the
/// hook on a thread of its own unless `max` runs are in progress.
pub(super) fn run_ticker(
    inner: &Arc<Inner>,
    period: Duration,
    max: Option<usize>,
    hook: &AsyncHook,
) {
    let hooks = &inner.hooks;
    let mut next = Instant::now() + period;
    while !inner.stop_flag.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            thread::park_timeout(next - now);
            continue;
        }
        next += period;
        if next <= now {
            next = now + period;
        }
        // Only this thread raises the count, so check-then-add cannot overshoot.
        if max.is_some_and(|m| hooks.async_in_flight.load(Ordering::SeqCst) >= m) {
            hooks.async_skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        hooks.async_in_flight.fetch_add(1, Ordering::SeqCst);
        hooks.async_runs.fetch_add(1, Ordering::Relaxed);
        let runner_inner = Arc::clone(inner);
        let runner_hook = std::sync::Arc::clone(hook);
        let spawned = thread::Builder::new()
            .name(format!("{}-async", inner.settings.thread_name))
            .spawn(move || {
                let inner = runner_inner;
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| runner_hook())) {
                    inner.hooks.async_panics.fetch_add(1, Ordering::Relaxed);
                    inner.record_error(
                        ErrorOrigin::AsyncHookPanic,
                        panic_message(panic.as_ref()),
                        None,
                        0,
                    );
                }
                inner.hooks.async_in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            hooks.async_in_flight.fetch_sub(1, Ordering::SeqCst);
            hooks.async_runs.fetch_sub(1, Ordering::Relaxed);
            inner.record_error(ErrorOrigin::AsyncSpawn, e.to_string(), Some(e.kind()), 0);
        }
    }
}
