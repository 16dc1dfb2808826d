//! A worker pool on sheaf's bounded [`crate::channel`]: pinned
//! per-core workers, an explicit [`Overflow`] policy, results that wait in
//! their [`Task`] handle until read, caught panics, cooperative timeouts,
//! and a shutdown with a deadline that drains or aborts and reports.
//!
//! ```
//! use std::time::Duration;
//! use sheaf::pool::{ShutdownMode, WorkerPool};
//!
//! let pool = WorkerPool::builder().workers(2).build()?;
//! let tasks: Vec<_> = (0..10u64).map(|i| pool.submit(move || i * i).unwrap()).collect();
//! let sum: u64 = tasks.into_iter().map(|t| t.join().unwrap()).sum();
//! assert_eq!(sum, 285);
//!
//! let boom = pool.submit(|| -> u64 { panic!("boom") }).unwrap();
//! assert!(boom.join().is_err()); // the panic comes back; the worker lives on
//!
//! let report = pool.shutdown(Duration::from_secs(5), ShutdownMode::Drain);
//! assert_eq!((report.completed, report.panicked), (10, 1));
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # What happens to a task
//!
//! Every accepted task ends in exactly one of: run (its value or its panic
//! reaches the [`Task`]), cancelled before it started ([`Task::cancel`]),
//! dropped by a dropping overflow policy (counted in `dropped`), or handed
//! back unrun by a shutdown ([`PoolReport::unrun`]). A task that is not
//! accepted comes back to the caller in [`Rejected`].

mod packed;
mod task;
mod worker;

#[cfg(all(test, not(sheaf_loom)))]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::channel::{self, Receiver, Sender, Unsent};
use crate::clock::{deadline_after, Clock, SharedClock};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::thread::JoinHandle;
use crate::sync::{Arc, Mutex};
use crate::wait::{Waiters, Wake};
use crate::{ConfigError, Overflow};

use packed::Packed;
pub use task::{Cancel, Task, TaskError};
use task::{Erased, Slot};

/// Builds a [`WorkerPool`]; see [`WorkerPool::builder`].
#[derive(Debug, Clone)]
pub struct WorkerPoolBuilder {
    workers: Option<usize>,
    pin: bool,
    queue_capacity: usize,
    overflow: Overflow,
    task_timeout: Option<Duration>,
    clock: Option<SharedClock>,
    thread_name: String,
}

impl WorkerPoolBuilder {
    /// Worker threads (default: one per physical core, from
    /// [`topology`](crate::topology)).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Pin worker `i` to the `i`-th physical core (wrapping), default
    /// `false`. Where pinning is refused the worker just runs unpinned.
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Tasks the queue holds before the [`overflow`](Self::overflow) policy
    /// applies (default 4096).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// What [`submit`](WorkerPool::submit) does when the queue is full
    /// (default [`Overflow::Block`]). [`Overflow::Reject`] and an expired
    /// [`Overflow::BlockTimeout`] hand the task back in [`Rejected`];
    /// [`Overflow::DropNewest`] / [`Overflow::DropOldest`] drop a task,
    /// count it in `dropped`, and its [`Task`] gets [`TaskError::NotRun`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How long a task may run (default: no limit; `Duration::MAX` means
    /// none). Cooperative: past it, the task's [`Cancel`] token reports
    /// cancelled; a task that finishes late is counted in `timed_out` and
    /// flagged ([`Task::overran`]), and its value is still delivered. No
    /// thread is ever killed.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = (timeout != Duration::MAX).then_some(timeout);
        self
    }

    /// The clock for task timeouts, busy time and shutdown deadlines
    /// (default: the system's [`MonotonicClock`](crate::clock::MonotonicClock)).
    pub fn clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Name prefix of the worker threads (default `"sheaf-pool"`).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`ConfigError`] if `workers` or `queue_capacity` is 0, or a worker
    /// thread could not be started (then none is left running).
    pub fn build(self) -> Result<WorkerPool, ConfigError> {
        let workers = match self.workers {
            Some(0) => {
                return Err(ConfigError::new(
                    "workers",
                    "0 workers would never run a task; give at least 1",
                ))
            }
            Some(n) => n,
            None => default_workers(),
        };
        if matches!(self.overflow, Overflow::Spill(_)) {
            return Err(ConfigError::new(
                "overflow",
                "a pool's tasks cannot be encoded: Overflow::Spill is for channels built with channel::spilling",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::new(
                "queue_capacity",
                "a queue of 0 holds no task; give at least 1",
            ));
        }
        let (tx, rx) = channel::builder()
            .capacity(self.queue_capacity)
            .overflow(self.overflow)
            .build::<Packed>()
            .map_err(|e| ConfigError::new("queue_capacity", e.to_string()))?;
        let inner = Arc::new(Inner {
            tx,
            rx,
            abort: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            live: AtomicUsize::new(workers),
            changed: Waiters::default(),
            counters: (0..workers)
                .map(|_| CachePadded::new(WorkerCounters::default()))
                .collect(),
            rejected: AtomicU64::new(0),
            not_run: AtomicU64::new(0),
            handed: Mutex::new(HandBack {
                open: true,
                tasks: Vec::new(),
            }),
            shutdown: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            clock: self.clock.unwrap_or_else(crate::clock::monotonic),
            task_timeout: self.task_timeout,
        });
        worker::start(&inner, workers, self.pin, &self.thread_name)?;
        Ok(WorkerPool { inner })
    }
}

fn default_workers() -> usize {
    if cfg!(sheaf_loom) {
        2
    } else {
        crate::topology::Topology::detect()
            .physical_cores()
            .len()
            .max(1)
    }
}

/// A pool of worker threads running submitted closures.
///
/// Clones are handles to the same pool. Dropping the last handle without
/// [`shutdown`](Self::shutdown) closes the pool to new tasks and lets the
/// workers finish the queue in the background.
///
/// Do not submit from inside a task under [`Overflow::Block`] into a full
/// queue: the worker would wait for itself.
pub struct WorkerPool {
    inner: Arc<Inner>,
}

/// How [`WorkerPool::shutdown`] treats queued tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Run every queued task (within the deadline; past it, the rest are
    /// handed back as with `Abort`).
    Drain,
    /// Run nothing new: queued tasks are handed back in
    /// [`PoolReport::unrun`], and running tasks see their [`Cancel`] fire.
    Abort,
}

/// Why a task was not accepted; the task comes back in [`Rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The queue was full under [`Overflow::Reject`].
    Full,
    /// The queue was still full when [`Overflow::BlockTimeout`] ran out.
    TimedOut,
    /// The pool is shut down (or shutting down).
    ShutDown,
}

/// A task the pool did not accept, handed back with the reason.
pub struct Rejected<F> {
    task: F,
    reason: RejectReason,
}

impl<F> Rejected<F> {
    /// The closure that was not accepted.
    pub fn into_inner(self) -> F {
        self.task
    }

    /// Why it was not accepted.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }
}

impl<F> fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            RejectReason::Full => f.write_str("the pool's queue is full; the task was handed back"),
            RejectReason::TimedOut => f.write_str(
                "the pool's queue stayed full past the timeout; the task was handed back",
            ),
            RejectReason::ShutDown => {
                f.write_str("the pool is shut down; the task was handed back")
            }
        }
    }
}

impl<F> std::error::Error for Rejected<F> {}

/// A queued task that a shutdown handed back unrun.
///
/// [`run`](Self::run) it on the current thread (its value reaches its
/// [`Task`]), or drop it: its `Task` then gets [`TaskError::NotRun`].
pub struct QueuedTask {
    job: Packed,
}

impl QueuedTask {
    /// Runs the task on the calling thread, panics caught as in the pool.
    /// Returns `false` if it had been cancelled and did not run.
    pub fn run(mut self) -> bool {
        let never = AtomicBool::new(false);
        let ran = self
            .job
            .job()
            .run(&never, None, &crate::clock::MonotonicClock, &mut |_, _| {});
        !matches!(ran, task::Ran::Skipped)
    }
}

impl fmt::Debug for QueuedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueuedTask(..)")
    }
}

/// Counters of a pool; see [`WorkerPool::stats`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks in the queue now.
    pub queued: usize,
    /// Tasks running now.
    pub running: usize,
    /// Tasks that ran and returned.
    pub completed: u64,
    /// Tasks that ran and panicked.
    pub panicked: u64,
    /// Tasks (returned or panicked) that ran past the task timeout.
    pub timed_out: u64,
    /// Tasks cancelled before they started (counted when a worker dequeues them).
    pub cancelled: u64,
    /// Tasks handed back to the caller by `submit` (full, timed out, shut down).
    pub rejected: u64,
    /// Tasks dropped by [`Overflow::DropNewest`] / [`Overflow::DropOldest`].
    pub dropped: u64,
    /// Tasks handed back unrun by a shutdown (or dropped unrun after it).
    pub not_run: u64,
    /// Time each worker spent busy, by worker index: from taking a task
    /// after a wait until the queue next ran dry (updated at the end of
    /// each busy period; exact once the pool is shut down).
    pub busy: Vec<Duration>,
}

/// What [`WorkerPool::shutdown`] did. Counts cover the pool's whole life.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct PoolReport {
    /// Tasks that ran and returned.
    pub completed: u64,
    /// Tasks that ran and panicked.
    pub panicked: u64,
    /// Tasks that ran past the task timeout.
    pub timed_out: u64,
    /// Tasks cancelled before they started.
    pub cancelled: u64,
    /// Tasks dropped by a dropping overflow policy.
    pub dropped: u64,
    /// Tasks not run: the length of `unrun` (on the first report).
    pub not_run: u64,
    /// The queued tasks handed back unrun (on the first report only; a
    /// repeated shutdown returns the counts with an empty list).
    pub unrun: Vec<QueuedTask>,
    /// Tasks still running when the report was made (deadline missed):
    /// they finish in the background and their values reach their handles.
    pub still_running: usize,
    /// `true` if the deadline passed before every worker stopped.
    pub deadline_missed: bool,
}

impl PoolReport {
    fn repeat(&self) -> Self {
        self.clone()
    }
}

impl Clone for PoolReport {
    /// Clones the counts; the handed-back tasks stay with the original.
    fn clone(&self) -> Self {
        Self {
            completed: self.completed,
            panicked: self.panicked,
            timed_out: self.timed_out,
            cancelled: self.cancelled,
            dropped: self.dropped,
            not_run: self.not_run,
            unrun: Vec::new(),
            still_running: self.still_running,
            deadline_missed: self.deadline_missed,
        }
    }
}

#[derive(Default)]
struct WorkerCounters {
    started: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    busy_nanos: AtomicU64,
}

struct HandBack {
    /// `false` once a shutdown report took the list: later hand-backs are
    /// dropped (their handles get `NotRun`) and only counted.
    open: bool,
    tasks: Vec<QueuedTask>,
}

struct Inner {
    /// Closed (to senders) once the pool accepts no more tasks: a submit
    /// then gets its task back, and workers exit once the queue is empty.
    tx: Sender<Packed>,
    /// The pool's own receiver: keeps the channel open and lets a shutdown
    /// drain the queue.
    rx: Receiver<Packed>,
    /// Abort: workers hand tasks back instead of running them, and running
    /// tasks see their `Cancel` fire.
    abort: AtomicBool,
    handles: AtomicUsize,
    /// Workers not yet exited.
    live: AtomicUsize,
    /// Notified when a worker exits.
    changed: Waiters,
    counters: Box<[CachePadded<WorkerCounters>]>,
    rejected: AtomicU64,
    not_run: AtomicU64,
    handed: Mutex<HandBack>,
    /// The first shutdown's report; held locked while a shutdown runs, so
    /// a concurrent second call waits for it and returns its counts.
    shutdown: Mutex<Option<PoolReport>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    clock: SharedClock,
    task_timeout: Option<Duration>,
}

impl WorkerPool {
    /// A builder with the defaults: one worker per physical core, unpinned,
    /// a queue of 4096 under [`Overflow::Block`], no task timeout.
    pub fn builder() -> WorkerPoolBuilder {
        WorkerPoolBuilder {
            workers: None,
            pin: false,
            queue_capacity: 4096,
            overflow: Overflow::Block,
            task_timeout: None,
            clock: None,
            thread_name: "sheaf-pool".to_owned(),
        }
    }

    /// Queues `f` and returns the handle to its result.
    ///
    /// # Errors
    /// [`Rejected`] hands `f` back when the queue refused it (see
    /// [`WorkerPoolBuilder::overflow`]) or the pool is shut down.
    pub fn submit<F, R>(&self, f: F) -> Result<Task<R>, Rejected<F>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(f, |f, _| f(), true)
            .map(|t| t.expect("a slot was asked for"))
    }

    /// As [`submit`](Self::submit), for a task that polls its [`Cancel`]
    /// token (cancel, timeout, abort).
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn submit_with_cancel<F, R>(&self, f: F) -> Result<Task<R>, Rejected<F>>
    where
        F: FnOnce(&Cancel<'_>) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.enqueue(f, |f, cancel| f(cancel), true)
            .map(|t| t.expect("a slot was asked for"))
    }

    /// Queues `f` with no handle: fire and forget. A panic is caught and
    /// counted in [`stats`](Self::stats).
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn spawn<F>(&self, f: F) -> Result<(), Rejected<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        self.enqueue(f, |f, _| f(), false).map(drop)
    }

    /// As [`spawn`](Self::spawn), for a task that polls its [`Cancel`] token.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn spawn_with_cancel<F>(&self, f: F) -> Result<(), Rejected<F>>
    where
        F: FnOnce(&Cancel<'_>) + Send + 'static,
    {
        self.enqueue(f, |f, cancel| f(cancel), false).map(drop)
    }

    fn enqueue<F, R>(
        &self,
        f: F,
        call: fn(F, &Cancel<'_>) -> R,
        with_slot: bool,
    ) -> Result<Option<Task<R>>, Rejected<F>>
    where
        F: Send + 'static,
        R: Send + 'static,
    {
        let inner = &*self.inner;
        let slot = with_slot.then(|| Arc::new(Slot::new()));
        let job = Packed::new(Erased {
            f: Some(f),
            call,
            slot: slot.clone(),
        });
        match inner.tx.send_telling(job) {
            Ok(()) => Ok(slot.map(Task::new)),
            Err((mut job, unsent)) => {
                let erased = job
                    .job()
                    .as_any()
                    .downcast_mut::<Erased<F, R>>()
                    .expect("the job submitted just now");
                erased.slot = None;
                let f = erased.f.take().expect("not run");
                // The channel counted a Reject / BlockTimeout refusal itself.
                let reason = match unsent {
                    Unsent::Disconnected => {
                        inner.rejected.fetch_add(1, Ordering::Relaxed);
                        RejectReason::ShutDown
                    }
                    Unsent::Full => RejectReason::Full,
                    Unsent::TimedOut => RejectReason::TimedOut,
                };
                Err(Rejected { task: f, reason })
            }
        }
    }

    /// The pool's counters now (racy while tasks run; exact once shut down).
    pub fn stats(&self) -> PoolStats {
        let inner = &*self.inner;
        let channel = inner.tx.stats();
        let sum = |pick: fn(&WorkerCounters) -> &AtomicU64| -> u64 {
            inner
                .counters
                .iter()
                .map(|c| pick(c).load(Ordering::Relaxed))
                .sum()
        };
        PoolStats {
            queued: channel.len,
            running: {
                // Finished first: a worker counts a start before its finish.
                let finished = sum(|c| &c.completed) + sum(|c| &c.panicked) + sum(|c| &c.cancelled);
                usize::try_from(sum(|c| &c.started).saturating_sub(finished)).unwrap_or(usize::MAX)
            },
            completed: sum(|c| &c.completed),
            panicked: sum(|c| &c.panicked),
            timed_out: sum(|c| &c.timed_out),
            cancelled: sum(|c| &c.cancelled),
            rejected: inner.rejected.load(Ordering::Relaxed) + channel.rejected + channel.timed_out,
            dropped: channel.dropped_newest + channel.dropped_oldest,
            not_run: inner.not_run.load(Ordering::Relaxed),
            busy: inner
                .counters
                .iter()
                .map(|c| Duration::from_nanos(c.busy_nanos.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Worker threads the pool was built with.
    pub fn workers(&self) -> usize {
        self.inner.counters.len()
    }

    /// `true` once a shutdown has begun (or the pool was closed).
    pub fn is_shut_down(&self) -> bool {
        // The pool's receiver lives as long as the pool: "disconnected"
        // here means closed to senders.
        self.inner.tx.is_disconnected()
    }

    /// Stops the pool: no new tasks are accepted; `mode` says what becomes
    /// of the queued ones; returns when every worker has stopped or
    /// `timeout` (on the pool's clock; `Duration::MAX`: forever) has passed.
    /// Never hangs past the deadline: tasks still running then finish in the
    /// background ([`PoolReport::still_running`]).
    ///
    /// Idempotent: a second call (or one racing the first) returns the
    /// first report's counts, without the handed-back tasks.
    pub fn shutdown(&self, timeout: Duration, mode: ShutdownMode) -> PoolReport {
        let inner = &*self.inner;
        let mut done = inner.shutdown.lock();
        if let Some(report) = done.as_ref() {
            return report.repeat();
        }
        let deadline = deadline_after(inner.clock.now(), timeout);
        if mode == ShutdownMode::Abort {
            inner.abort.store(true, Ordering::SeqCst);
        }
        // Closed, the queue takes nothing more; workers finish (or, under
        // abort, hand back) what it holds, a push mid-way included, and exit
        // once it is empty.
        inner.tx.close();
        if mode == ShutdownMode::Abort {
            inner.drain_queue();
        }
        let on_time = wait_on(&*inner.clock, &inner.changed, deadline, || {
            inner.live.load(Ordering::SeqCst) == 0
        });
        if !on_time {
            // Past the deadline: run nothing more, hand the queue back.
            inner.abort.store(true, Ordering::SeqCst);
            inner.drain_queue();
        }
        if inner.live.load(Ordering::SeqCst) == 0 {
            for thread in inner.threads.lock().drain(..) {
                let _ = thread.join();
            }
        }
        let unrun = {
            let mut handed = inner.handed.lock();
            handed.open = false;
            std::mem::take(&mut handed.tasks)
        };
        let stats = self.stats();
        let report = PoolReport {
            completed: stats.completed,
            panicked: stats.panicked,
            timed_out: stats.timed_out,
            cancelled: stats.cancelled,
            dropped: stats.dropped,
            not_run: unrun.len() as u64,
            unrun,
            still_running: stats.running,
            deadline_missed: !on_time,
        };
        *done = Some(report.repeat());
        report
    }
}

impl Inner {
    /// Takes every queued task out and hands it back (the queue is closed;
    /// a push still mid-way is left to the workers, which hand it back
    /// under abort).
    fn drain_queue(&self) {
        while let Ok(job) = self.rx.try_recv() {
            self.hand_back(job);
        }
    }

    fn hand_back(&self, job: Packed) {
        self.not_run.fetch_add(1, Ordering::Relaxed);
        let mut handed = self.handed.lock();
        if handed.open {
            handed.tasks.push(QueuedTask { job });
        } else {
            drop(handed);
            drop(job); // its handle learns NotRun
        }
    }
}

impl Clone for WorkerPool {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last handle: nobody can submit any more. Close, and let
            // the workers finish the queue and exit in the background.
            self.inner.tx.close();
        }
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.workers())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Waits until `ready()` or until `deadline` passes on `clock` (`None`:
/// forever); returns `ready()`'s last answer. The state `ready` reads must
/// change before a `notify_*` on `waiters`.
pub(crate) fn wait_on(
    clock: &dyn Clock,
    waiters: &Waiters,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    // Loom has no clock: a timed wait is modelled as an untimed one.
    let deadline = if cfg!(sheaf_loom) { None } else { deadline };
    loop {
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| clock.now() >= d) {
            return false;
        }
        let ticket = waiters.register(Wake::current_thread());
        if ready() {
            waiters.unregister(ticket, false);
            return true;
        }
        if !ticket.notified.load(Ordering::Acquire) {
            clock.park_until(deadline);
        }
        let notified = ticket.notified.load(Ordering::Acquire);
        waiters.unregister(ticket, notified);
    }
}
