//! The writer thread: takes shards, cuts their records into coalesced
//! sink calls, flushes, runs the sync hook and answers requests.

use std::io::{self, Write};
use std::mem;
use std::time::Instant;

use std::collections::VecDeque;

use super::queue::{mark_writer_thread, Batch, Chunk, CONTROL};
use super::shared::{closed_failure, Failure, Shared, CLOSING, EXITED, RUNNING, STOPPED, STOPPING};
use super::spill::Unspilled;
use super::stats::ErrorOrigin;
use crate::clock::deadline_after;
use crate::sync::atomic::Ordering;
use crate::sync::Arc;
use crate::unwind::catch;
use crate::wait::Wake;

/// The sync hook, run on the writer thread with the sink.
pub(super) type SyncHook<W> = Box<dyn FnMut(&mut W) -> io::Result<()> + Send>;

/// A coalescing buffer larger than this is dropped rather than kept.
const SPARE_MAX_BYTES: usize = 4 << 20;

/// The body of the writer thread; returns once closed (or abandoned).
pub(super) fn run<W: Write>(shared: Arc<Shared>, sink: W, sync: Option<SyncHook<W>>) {
    mark_writer_thread();
    let shared = &*shared;
    let _exit = Exit(shared);
    let mut worker = Worker {
        shared,
        sink,
        sync,
        batches: Vec::new(),
        spares: Vec::new(),
        co_buf: Vec::new(),
        co_ends: Vec::new(),
        next_sync: (shared.settings.sync_period).and_then(|p| deadline_after(shared.started()?, p)),
        unflushed: false,
        failed_seen: 0,
        unspilled: Unspilled::default(),
        spill_error: None,
    };
    while worker.cycle() {}
}

/// Marks the writer thread gone, whatever way it leaves, and fails the
/// requests it will never answer.
struct Exit<'a>(&'a Shared);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        let tickets = shared.tickets.lock();
        shared.mode.store(EXITED, Ordering::SeqCst);
        drop(tickets);
        shared.fail_tickets(closed_failure());
    }
}

struct Worker<'a, W> {
    shared: &'a Shared,
    sink: W,
    sync: Option<SyncHook<W>>,
    batches: Vec<Batch>,
    /// Empty chunk lists, to swap in for the ones taken.
    spares: Vec<VecDeque<Chunk>>,
    /// The coalescing buffer and the end offsets of its records.
    co_buf: Vec<u8>,
    co_ends: Vec<usize>,
    next_sync: Option<Instant>,
    /// A record reached the sink since its last flush.
    unflushed: bool,
    /// `Counts::failed` when requests were last answered: a flush reports
    /// the records that failed since the previous one.
    failed_seen: u64,
    /// Records read back from the spill log, reused.
    unspilled: Unspilled,
    /// The last spill read failed: reported to this pass's requests, and
    /// the thread sleeps before trying again.
    spill_error: Option<Failure>,
}

/// How long the writer thread waits before reading the spill log again
/// after an I/O error.
const SPILL_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

impl<W: Write> Worker<'_, W> {
    /// One pass: requests, shards, sink calls, flush, sync; then sleep.
    /// `false` once the thread should exit.
    fn cycle(&mut self) -> bool {
        let shared = self.shared;
        let queue = &shared.queue;
        // Clear the request bit before reading the requests: one made from
        // here on sets it again and gets the next pass.
        queue.signal.fetch_and(!CONTROL, Ordering::SeqCst);
        let mode = shared.mode();
        if mode == STOPPED {
            shared.sleep(None, || shared.mode() != STOPPED);
            return true;
        }
        let last_pass = mode != RUNNING;
        // Requests first, then the shard bits: every record accepted before
        // a request was made has its shard's bit set by now.
        let (want_flush, want_sync) = {
            let mut tickets = shared.tickets.lock();
            let pending = mem::take(&mut tickets.pending);
            let sync = pending.iter().any(|t| t.sync);
            let flush = !pending.is_empty();
            tickets.in_pass.extend(pending);
            (flush, sync)
        };
        // The spill log is read before the shards are taken, and written
        // after them: see `writer/spill.rs` for why that keeps the order.
        let from_disk = self.read_spilled();
        let mut bits = queue.signal.fetch_and(CONTROL, Ordering::SeqCst) & !CONTROL;
        if mode == CLOSING {
            bits |= queue.all_shards();
        }
        let Some(taken) = self.take_and_write(bits) else {
            return false;
        };
        if !self.write_spilled(from_disk) {
            return false;
        }
        // A flush covers what was on disk when it was asked; the last pass
        // covers everything.
        if (want_flush || last_pass) && !self.drain_spilled() {
            return false;
        }
        let idle = queue.signal.load(Ordering::SeqCst) & !CONTROL == 0;
        let mut flush_error = self.spill_error.clone();
        if want_flush || last_pass || (self.unflushed && idle && shared.settings.flush_when_idle) {
            match self.flush_sink() {
                None => return false,
                Some(result) => flush_error = result.err().or(flush_error),
            }
        }
        if last_pass {
            if let Some(Err(e)) = queue.spill.as_ref().map(|s| s.sync()) {
                shared.record_error(ErrorOrigin::SpillLog, e.to_string(), Some(e.kind()), 0);
            }
        }
        let sync_error = if want_sync || last_pass {
            self.run_sync().err()
        } else {
            self.sync_if_due();
            None
        };
        if last_pass {
            shared.counts.lock().final_flush_ok = flush_error.is_none();
        }
        self.answer(flush_error, sync_error);
        match mode {
            CLOSING => return false,
            STOPPING => {
                let mut tickets = shared.tickets.lock();
                let stopped = (shared.mode)
                    .compare_exchange(STOPPING, STOPPED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                let late = if stopped {
                    mem::take(&mut tickets.pending)
                } else {
                    Vec::new()
                };
                drop(tickets);
                for ticket in late {
                    ticket.answer(Err((io::ErrorKind::Other, "the writer stopped".into())));
                }
                shared.answers.notify_all();
            }
            _ => self.sleep(taken > 0 && taken < shared.settings.linger_bytes),
        }
        true
    }

    /// Sleeps until records arrive (unless `lingering`, after a small
    /// cycle: then only requests wake it), the linger ends, or the sync hook
    /// is due.
    fn sleep(&mut self, small: bool) {
        let shared = self.shared;
        let queue = &shared.queue;
        let stalled = self.spill_error.take().is_some();
        let disk = || !stalled && queue.spill.as_ref().is_some_and(|s| s.engaged());
        if disk() {
            return; // more on disk: no sleep
        }
        let linger = shared.settings.linger;
        let lingering = small && !linger.is_zero();
        let retry = stalled
            .then(|| deadline_after(shared.clock.now(), SPILL_RETRY))
            .flatten();
        let until = match (self.next_sync, lingering) {
            (Some(sync), true) => {
                let end = deadline_after(shared.clock.now(), linger);
                Some(end.map_or(sync, |end| end.min(sync)))
            }
            (None, true) => deadline_after(shared.clock.now(), linger),
            (sync, false) => sync,
        };
        let until = match (until, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let records = (!lingering).then(|| queue.records.register(Wake::current_thread()));
        let mask = if lingering { CONTROL } else { u64::MAX };
        shared.sleep(until, || {
            queue.signal.load(Ordering::SeqCst) & mask != 0 || (!lingering && disk())
        });
        if let Some(ticket) = records {
            queue.records.unregister(ticket, true);
        }
    }

    /// Answers the requests of this pass.
    fn answer(&mut self, flush_error: Option<Failure>, sync_error: Option<Failure>) {
        let done = mem::take(&mut self.shared.tickets.lock().in_pass);
        if done.is_empty() {
            return;
        }
        let failed = self.shared.counts.lock().stats.failed;
        let newly_failed = failed - mem::replace(&mut self.failed_seen, failed);
        for ticket in done {
            let outcome = match (&flush_error, &sync_error) {
                (Some(e), _) => Err(e.clone()),
                _ if newly_failed > 0 => Err((
                    io::ErrorKind::Other,
                    format!("{newly_failed} records failed in the sink since the previous flush; see SerialWriter::errors"),
                )),
                (_, Some(e)) if ticket.sync => Err(e.clone()),
                _ => Ok(()),
            };
            ticket.answer(outcome);
        }
        self.shared.answers.notify_all();
    }

    /// Takes the shards in `bits` and writes them; returns the bytes taken,
    /// or `None` once abandoned.
    fn take_and_write(&mut self, bits: u64) -> Option<u64> {
        let shared = self.shared;
        let mut taken = 0;
        if bits & !CONTROL != 0 {
            let mut counts = shared.counts.lock();
            if counts.abandoned {
                return None;
            }
            let (records, bytes) = shared.queue.take(bits, &mut self.batches, &mut self.spares);
            counts.held += records;
            counts.held_bytes += bytes;
            taken = bytes;
        }
        let mut batches = mem::take(&mut self.batches);
        let mut ok = true;
        for mut batch in batches.drain(..) {
            let mut first = batch.head;
            for chunk in &batch.chunks {
                ok = ok && self.write_records(chunk, mem::take(&mut first));
            }
            shared.queue.recycle(batch.chunks.drain(..));
            if self.spares.len() < shared.queue.shard_count() {
                self.spares.push(batch.chunks);
            }
        }
        self.batches = batches;
        (ok && self.emit_coalesced()).then_some(taken)
    }

    /// Cuts a chunk's records (from `first`) into spans of at most
    /// `coalesce` bytes at record boundaries; spans of half that or more go
    /// to the sink as they are, smaller ones into the coalescing buffer.
    fn write_records(&mut self, buf: &Chunk, first: usize) -> bool {
        let co = self.shared.settings.coalesce;
        let ends = &buf.ends;
        let mut rec = first;
        let mut start = buf.start_of(rec);
        while rec < ends.len() {
            let mut k = rec + 1;
            while k < ends.len() && ends[k] - start <= co {
                k += 1;
            }
            let end = ends[k - 1];
            let span = end - start;
            if span.saturating_mul(2) >= co {
                if !self.emit_coalesced()
                    || !self.call(&buf.bytes[start..end], &ends[rec..k], start, true)
                {
                    return false;
                }
            } else {
                if self.co_buf.len() + span > co && !self.emit_coalesced() {
                    return false;
                }
                let base = self.co_buf.len();
                self.co_buf.extend_from_slice(&buf.bytes[start..end]);
                (self.co_ends).extend(ends[rec..k].iter().map(|e| e - start + base));
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
        let (mut buf, mut ends) = (mem::take(&mut self.co_buf), mem::take(&mut self.co_ends));
        let ok = self.call(&buf, &ends, 0, true);
        if buf.capacity() <= SPARE_MAX_BYTES {
            buf.clear();
            ends.clear();
            (self.co_buf, self.co_ends) = (buf, ends);
        }
        ok
    }

    /// One sink call with whole records; `ends` are their end offsets, less
    /// `base`, in `data`; `queued`: they hold queue credit (they were not
    /// read back from the spill log). `false` once abandoned (nothing is
    /// written then).
    fn call(&mut self, data: &[u8], ends: &[usize], base: usize, queued: bool) -> bool {
        let shared = self.shared;
        let (records, bytes) = (ends.len() as u64, data.len() as u64);
        {
            let mut counts = shared.counts.lock();
            if counts.abandoned {
                return false;
            }
            counts.held -= records;
            counts.held_bytes -= bytes;
            (counts.in_call, counts.in_call_bytes) = (records, bytes);
            counts.stats.sink_calls += 1;
        }
        let (sink, mut done_bytes) = (&mut self.sink, 0);
        let fault = run_user(ErrorOrigin::SinkWrite, ErrorOrigin::SinkPanic, || {
            write_all(sink, data, &mut done_bytes)
        });
        if fault
            .as_ref()
            .is_some_and(|f| f.0 == ErrorOrigin::SinkPanic)
        {
            done_bytes = 0;
        }
        // Records the sink took whole count written; the rest failed.
        let done = ends.partition_point(|&end| end - base <= done_bytes);
        let (done, done_bytes) = match done {
            0 => (0, 0),
            k => (k as u64, (ends[k - 1] - base) as u64),
        };
        {
            let mut counts = shared.counts.lock();
            (counts.in_call, counts.in_call_bytes) = (0, 0);
            counts.stats.written += done;
            counts.stats.written_bytes += done_bytes;
            counts.stats.failed += records - done;
            counts.stats.failed_bytes += bytes - done_bytes;
            match fault.as_ref().map(|f| f.0) {
                Some(ErrorOrigin::SinkPanic) => counts.stats.sink_panics += 1,
                Some(_) => counts.stats.sink_errors += 1,
                None => {}
            }
        }
        if queued {
            shared.queue.give_back(records as usize, data.len());
        }
        self.unflushed = true;
        if let Some((origin, message, kind)) = fault {
            shared.record_error(origin, message, kind, records - done);
        }
        self.sync_if_due();
        true
    }

    /// Reads up to one sink call's worth of records back from the spill log
    /// (under the counts' lock, so a close that runs out of time counts
    /// them unwritten, or finds them still on disk). Returns how many.
    fn read_spilled(&mut self) -> u64 {
        let shared = self.shared;
        let Some(spill) = shared.queue.spill.as_ref().filter(|s| s.engaged()) else {
            return 0;
        };
        let mut counts = shared.counts.lock();
        if counts.abandoned {
            return 0;
        }
        let max = shared.settings.coalesce.max(1);
        let read = spill.read(max, &mut self.unspilled);
        counts.held += read;
        counts.held_bytes += self.unspilled.bytes.len() as u64;
        drop(counts);
        if let Some(message) = self.unspilled.error.take() {
            shared.record_error(ErrorOrigin::SpillLog, message.clone(), None, 0);
            let what = format!("reading the spill log failed: {message}");
            self.spill_error = Some((io::ErrorKind::Other, what));
        }
        read
    }

    /// Writes the `read` records [`read_spilled`](Self::read_spilled) read,
    /// behind what the coalescing buffer holds. `false` once abandoned.
    fn write_spilled(&mut self, read: u64) -> bool {
        let Some(spill) = self.shared.queue.spill.as_ref() else {
            return true;
        };
        if read == 0 {
            return true;
        }
        let records = mem::take(&mut self.unspilled);
        let ok = self.emit_coalesced() && self.call(&records.bytes, &records.ends, 0, false);
        self.unspilled = records;
        spill.done(read);
        ok
    }

    /// Reads and writes every record stored in the spill log before this
    /// call (a flush's or close's), with the shards that fill meanwhile
    /// taken in between to keep the order. `false` once abandoned.
    fn drain_spilled(&mut self) -> bool {
        let Some(spill) = self.shared.queue.spill.as_ref() else {
            return true;
        };
        let target = spill.stored();
        while spill.taken() < target {
            let before = spill.taken();
            let read = self.read_spilled();
            if spill.taken() == before {
                break; // an I/O error, reported to the requests
            }
            let queue = &self.shared.queue;
            let bits = queue.signal.fetch_and(CONTROL, Ordering::SeqCst) & !CONTROL;
            if self.take_and_write(bits).is_none() || !self.write_spilled(read) {
                return false;
            }
        }
        true
    }

    /// Flushes the sink: `None` once abandoned, else the outcome.
    fn flush_sink(&mut self) -> Option<Result<(), Failure>> {
        let shared = self.shared;
        if shared.counts.lock().abandoned {
            return None;
        }
        let sink = &mut self.sink;
        let fault = run_user(ErrorOrigin::SinkFlush, ErrorOrigin::SinkPanic, || {
            sink.flush()
        });
        let mut counts = shared.counts.lock();
        counts.stats.sink_flushes += 1;
        counts.stats.flush_errors += u64::from(fault.is_some());
        let panicked = fault
            .as_ref()
            .is_some_and(|f| f.0 == ErrorOrigin::SinkPanic);
        counts.stats.sink_panics += u64::from(panicked);
        drop(counts);
        self.unflushed &= fault.is_some();
        Some(self.report(fault, "the sink's flush failed"))
    }

    fn sync_if_due(&mut self) {
        if self
            .next_sync
            .is_some_and(|at| self.shared.clock.now() >= at)
        {
            let _ = self.run_sync();
        }
    }

    /// Runs the sync hook (if any) and schedules the next periodic run.
    fn run_sync(&mut self) -> Result<(), Failure> {
        let shared = self.shared;
        if let Some(period) = shared.settings.sync_period {
            self.next_sync = deadline_after(shared.clock.now(), period);
        }
        let Some(hook) = self.sync.as_mut() else {
            return Ok(());
        };
        if shared.counts.lock().abandoned {
            return Ok(());
        }
        let sink = &mut self.sink;
        let fault = run_user(ErrorOrigin::SyncHook, ErrorOrigin::SyncHookPanic, || {
            hook(sink)
        });
        let mut counts = shared.counts.lock();
        counts.stats.sync_runs += 1;
        counts.stats.sync_errors += u64::from(fault.is_some());
        drop(counts);
        self.report(fault, "the sync hook failed")
    }

    /// Records a fault of the sink or a hook; the failure a request reports.
    fn report(&self, fault: Option<Fault>, what: &str) -> Result<(), Failure> {
        let Some((origin, message, kind)) = fault else {
            return Ok(());
        };
        self.shared.record_error(origin, message.clone(), kind, 0);
        Err((
            kind.unwrap_or(io::ErrorKind::Other),
            format!("{what}: {message}"),
        ))
    }
}

/// Where a fault happened, its message, and its `io::ErrorKind` (none for a panic).
type Fault = (ErrorOrigin, String, Option<io::ErrorKind>);

/// Runs user code (sink or hook): its error or panic becomes a [`Fault`].
fn run_user(
    error: ErrorOrigin,
    panic: ErrorOrigin,
    f: impl FnOnce() -> io::Result<()>,
) -> Option<Fault> {
    match catch(f) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some((error, e.to_string(), Some(e.kind()))),
        Err(message) => Some((panic, message, None)),
    }
}

/// Writes all of `data`, counting in `done` the bytes the sink took.
fn write_all(sink: &mut impl Write, data: &[u8], done: &mut usize) -> io::Result<()> {
    while *done < data.len() {
        match sink.write(&data[*done..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the sink accepted 0 bytes",
                ))
            }
            Ok(n) => *done += n.min(data.len() - *done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
