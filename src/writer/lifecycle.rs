//! Start, stop, close, flush requests and the counters' snapshot.

use std::io;
use std::mem;
use std::time::{Duration, Instant};

use super::queue::{far_future, CONTROL};
use super::stats::{CloseReport, WriterStats};
use super::worker::{self, Inner, Ticket, TicketKind};
use super::LifecycleError;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Arc, Mutex};

/// How often waits on async hook runs (which announce nothing) look again.
const ASYNC_POLL: Duration = Duration::from_millis(1);

fn deadline_after(d: Duration) -> Instant {
    Instant::now().checked_add(d).unwrap_or_else(far_future)
}

impl Inner {
    pub(super) fn start(this: &Arc<Self>) -> Result<(), LifecycleError> {
        let mut control = this.control.lock();
        if this.queue.closed.load(Ordering::Acquire) {
            return Err(LifecycleError::Closed);
        }
        if control.running {
            return Err(LifecycleError::AlreadyRunning);
        }
        if this.worker_alive.load(Ordering::SeqCst) {
            return Err(LifecycleError::StillStopping);
        }
        if let Some(old) = control.worker.take() {
            let _ = old.join();
        }
        this.stop_flag.store(false, Ordering::SeqCst);
        control.worker = Some(Self::spawn_worker(this).map_err(LifecycleError::Spawn)?);
        if let Some((period, max, hook)) = &this.settings.async_hook {
            let (inner, period, max, hook) =
                (Arc::clone(this), *period, *max, std::sync::Arc::clone(hook));
            let spawned = thread::Builder::new()
                .name(format!("{}-ticker", this.settings.thread_name))
                .spawn(move || worker::run_ticker(&inner, period, max, &hook));
            match spawned {
                Ok(ticker) => control.ticker = Some(ticker),
                Err(e) => {
                    let worker = control.worker.take();
                    drop(control);
                    this.stop_flag.store(true, Ordering::SeqCst);
                    this.queue.signal_bits(CONTROL);
                    if let Some(worker) = worker {
                        let _ = worker.join();
                    }
                    return Err(LifecycleError::Spawn(e));
                }
            }
        }
        control.running = true;
        control.started = Some(Instant::now());
        Ok(())
    }

    /// Starts a writer thread with the sink; `stop_flag` says whether it
    /// runs on or makes one pass and exits.
    fn spawn_worker(this: &Arc<Self>) -> io::Result<JoinHandle<()>> {
        let sink = this
            .sink
            .lock()
            .take()
            .ok_or_else(|| io::Error::other("the sink is still held by a writer thread"))?;
        this.worker_alive.store(true, Ordering::SeqCst);
        this.tickets.lock().accepting = true;
        // The sink goes through a slot so that it comes back if the spawn fails.
        let slot = Arc::new(Mutex::new(Some(sink)));
        let thread_slot = Arc::clone(&slot);
        let inner = Arc::clone(this);
        let spawned = thread::Builder::new()
            .name(this.settings.thread_name.clone())
            .spawn(move || {
                let sink = thread_slot.lock().take();
                drop(thread_slot);
                if let Some(sink) = sink {
                    worker::run(&inner, sink);
                }
            });
        match spawned {
            Ok(handle) => Ok(handle),
            Err(e) => {
                *this.sink.lock() = slot.lock().take();
                this.tickets.lock().accepting = false;
                this.worker_alive.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    pub(super) fn stop(&self, deadline: Duration) -> Result<(), LifecycleError> {
        let end = deadline_after(deadline);
        let (worker, ticker) = {
            let mut control = self.control.lock();
            if !control.running {
                return Err(LifecycleError::NotRunning);
            }
            control.running = false;
            control.started = None;
            (control.worker.take(), control.ticker.take())
        };
        self.stop_flag.store(true, Ordering::SeqCst);
        self.queue.signal_bits(CONTROL);
        if let Some(ticker) = ticker {
            ticker.thread().unpark();
            let _ = ticker.join();
        }
        let exited = self.wait_exit(end);
        if exited {
            if let Some(worker) = worker {
                let _ = worker.join();
            }
        } else {
            // start() joins it once it is done.
            self.control.lock().worker = worker;
        }
        self.wait_async(end);
        if exited {
            Ok(())
        } else {
            Err(LifecycleError::TimedOut)
        }
    }

    fn wait_exit(&self, end: Instant) -> bool {
        self.exit_waiters
            .wait(Some(end), || !self.worker_alive.load(Ordering::SeqCst))
    }

    /// Waits (polling) for the async hook runs in progress, up to `end`.
    fn wait_async(&self, end: Instant) {
        let in_flight: &AtomicUsize = &self.hooks.async_in_flight;
        while in_flight.load(Ordering::SeqCst) > 0 {
            let now = Instant::now();
            if now >= end {
                return;
            }
            thread::park_timeout((end - now).min(ASYNC_POLL));
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.control.lock().running
    }

    pub(super) fn uptime(&self) -> Duration {
        self.control
            .lock()
            .started
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    pub(super) fn close(this: &Arc<Self>, deadline: Duration) -> CloseReport {
        let end = deadline_after(deadline);
        if this.queue.closed.swap(true, Ordering::SeqCst) {
            this.close_waiters
                .wait(Some(end), || this.close_done.load(Ordering::SeqCst));
            return this.close_report.lock().clone().unwrap_or_else(|| {
                let mut report = this.report();
                report.timed_out = true;
                report
            });
        }
        this.queue.close_barrier();
        let (mut worker, ticker) = {
            let mut control = this.control.lock();
            control.running = false;
            control.started = None;
            (control.worker.take(), control.ticker.take())
        };
        this.stop_flag.store(true, Ordering::SeqCst);
        this.queue.signal_bits(CONTROL);
        if let Some(ticker) = ticker {
            ticker.thread().unpark();
            let _ = ticker.join();
        }
        if !this.worker_alive.load(Ordering::SeqCst) {
            // Stopped: a writer thread makes one last pass.
            worker = Self::spawn_worker(this).ok();
        }
        let mut drained = false;
        loop {
            if !this.wait_exit(end) {
                break;
            }
            if let Some(w) = worker.take() {
                let _ = w.join();
            }
            if !this.queue.has_data() && this.counts.lock().held == 0 {
                drained = true;
                break;
            }
            // Records queued after a stop's last pass: one more pass.
            if Instant::now() >= end {
                break;
            }
            match Self::spawn_worker(this) {
                Ok(w) => worker = Some(w),
                Err(_) => break,
            }
        }
        if !drained {
            this.abandon();
            // Still running (stuck in the sink): it leaves on its own.
            drop(worker);
        }
        let stragglers = {
            let mut tickets = this.tickets.lock();
            tickets.accepting = false;
            let mut all = mem::take(&mut tickets.pending);
            all.append(&mut tickets.in_progress);
            all
        };
        for ticket in stragglers {
            ticket.answer(Err((
                io::ErrorKind::BrokenPipe,
                "the writer was closed before the request was served".to_string(),
            )));
        }
        this.wait_async(end);
        let mut report = this.report();
        report.timed_out = !drained;
        report.flushed = drained && this.counts.lock().final_flush_ok;
        *this.close_report.lock() = Some(report.clone());
        this.close_done.store(true, Ordering::SeqCst);
        this.close_waiters.notify_all();
        report
    }

    /// Out of time: no further sink call; what the writer thread holds and
    /// what the shards hold is counted unwritten and dropped.
    fn abandon(&self) {
        let mut counts = self.counts.lock();
        counts.abandoned = true;
        counts.unwritten += mem::take(&mut counts.held);
        counts.unwritten_bytes += mem::take(&mut counts.held_bytes);
        let (records, bytes) = self.queue.discard_all();
        counts.unwritten += records;
        counts.unwritten_bytes += bytes;
    }

    pub(super) fn report(&self) -> CloseReport {
        let counts = self.counts.lock();
        let (accepted, accepted_bytes, live, live_bytes) = self.queue.sums();
        let losses = &self.queue.losses;
        CloseReport {
            accepted,
            accepted_bytes,
            written: counts.written,
            written_bytes: counts.written_bytes,
            failed: counts.failed,
            failed_bytes: counts.failed_bytes,
            dropped_oldest: losses.dropped_oldest.load(Ordering::Relaxed),
            dropped_oldest_bytes: losses.dropped_oldest_bytes.load(Ordering::Relaxed),
            dropped_newest: losses.dropped_newest.load(Ordering::Relaxed),
            unwritten: counts.unwritten + counts.held + live,
            unwritten_bytes: counts.unwritten_bytes + counts.held_bytes + live_bytes,
            in_flight: counts.in_call,
            in_flight_bytes: counts.in_call_bytes,
            timed_out: false,
            flushed: false,
        }
    }

    pub(super) fn stats(&self) -> WriterStats {
        let counts = self.counts.lock();
        let (accepted, accepted_bytes, live, live_bytes) = self.queue.sums();
        let (waiting, waiting_bytes) = self.queue.waiting();
        let losses = &self.queue.losses;
        let load = |a: &crate::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            accepted,
            accepted_bytes,
            written: counts.written,
            written_bytes: counts.written_bytes,
            failed: counts.failed,
            failed_bytes: counts.failed_bytes,
            queued: live + counts.held + counts.in_call,
            queued_bytes: live_bytes + counts.held_bytes + counts.in_call_bytes,
            waiting,
            waiting_bytes,
            sink_calls: counts.sink_calls,
            sink_errors: counts.sink_errors,
            sink_panics: counts.sink_panics,
            sink_flushes: counts.sink_flushes,
            flush_errors: counts.flush_errors,
            dropped_newest: load(&losses.dropped_newest),
            dropped_oldest: load(&losses.dropped_oldest),
            dropped_oldest_bytes: load(&losses.dropped_oldest_bytes),
            rejected: load(&losses.rejected),
            timed_out: load(&losses.timed_out),
            too_large: load(&losses.too_large),
            refused_closed: load(&losses.refused_closed),
            unwritten: counts.unwritten,
            sync_runs: counts.sync_runs,
            sync_errors: counts.sync_errors,
            async_runs: load(&self.hooks.async_runs),
            async_skipped: load(&self.hooks.async_skipped),
            async_panics: load(&self.hooks.async_panics),
            errors: load(&self.errors_total),
        }
    }

    /// Queues a flush (or sync) ticket and waits for the writer thread to
    /// answer it, up to `deadline`.
    pub(super) fn request(&self, kind: TicketKind, deadline: Option<Instant>) -> io::Result<()> {
        if worker::on_writer_thread() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "flush called on the writer thread (in the sink or a hook) would wait for itself",
            ));
        }
        let ticket = Arc::new(Ticket {
            kind,
            state: AtomicUsize::new(0),
            error: Mutex::new(None),
            waiter: thread::current(),
        });
        {
            let mut tickets = self.tickets.lock();
            if !tickets.accepting {
                return Err(if self.queue.closed.load(Ordering::Acquire) {
                    io::Error::new(io::ErrorKind::BrokenPipe, "the writer is closed")
                } else {
                    io::Error::other("the writer is stopped; queued records wait for start()")
                });
            }
            tickets.pending.push(Arc::clone(&ticket));
        }
        self.queue.signal_bits(CONTROL);
        let answered = super::park_until(deadline, || ticket.state.load(Ordering::Acquire) != 0);
        if !answered {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the flush did not complete in time",
            ));
        }
        match ticket.state.load(Ordering::Acquire) {
            1 => Ok(()),
            _ => {
                let (kind, message) = ticket
                    .error
                    .lock()
                    .clone()
                    .unwrap_or((io::ErrorKind::Other, "the flush failed".to_string()));
                Err(io::Error::new(kind, message))
            }
        }
    }
}
