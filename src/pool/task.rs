//! The handle side of a task: its result slot, the [`Task`] that reads it,
//! the [`Cancel`] token the task polls, and the type-erased job the queue
//! carries.

use std::fmt;
use std::time::{Duration, Instant};

use crate::clock::{deadline_after, Clock};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex};
use crate::wait::Waiters;
#[cfg(feature = "async")]
use crate::wait::Wake;

use super::wait_on;

/// Why a [`Task`] has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the panic message. The worker lived on.
    Panicked(String),
    /// [`Task::cancel`] was called before a worker started the task.
    Cancelled,
    /// The task never ran: the pool was shut down with
    /// [`ShutdownMode::Abort`](super::ShutdownMode::Abort) (or its drain
    /// deadline passed) and the handed-back [`QueuedTask`](super::QueuedTask) was dropped, or
    /// an [`Overflow::DropNewest`](crate::Overflow::DropNewest) /
    /// [`DropOldest`](crate::Overflow::DropOldest) queue dropped it.
    NotRun,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(message) => write!(f, "the task panicked: {message}"),
            TaskError::Cancelled => f.write_str("the task was cancelled before it started"),
            TaskError::NotRun => f.write_str("the task was never run (shutdown or overflow)"),
        }
    }
}

impl std::error::Error for TaskError {}

/// What a task polls to learn that it should stop early: its [`Task`] was
/// [cancelled](Task::cancel), its [`task_timeout`](super::WorkerPoolBuilder::task_timeout)
/// passed, or the pool is shutting down with
/// [`ShutdownMode::Abort`](super::ShutdownMode::Abort).
///
/// Cancellation is cooperative: nothing stops a task that does not look.
///
/// ```
/// use sheaf::pool::WorkerPool;
///
/// let pool = WorkerPool::builder().workers(1).build()?;
/// let task = pool
///     .submit_with_cancel(|cancel| {
///         let mut steps = 0u64;
///         while !cancel.is_cancelled() && steps < 1_000 {
///             steps += 1;
///         }
///         steps
///     })
///     .unwrap();
/// assert!(task.join().unwrap() <= 1_000);
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct Cancel<'a> {
    pub(super) task: Option<&'a AtomicBool>,
    pub(super) pool: &'a AtomicBool,
    pub(super) deadline: Option<Instant>,
    pub(super) clock: &'a dyn Clock,
}

impl Cancel<'_> {
    /// `true` once the task should stop: cancelled, past its timeout, or
    /// the pool is aborting.
    pub fn is_cancelled(&self) -> bool {
        self.task.is_some_and(|t| t.load(Ordering::Acquire))
            || self.pool.load(Ordering::Acquire)
            || self.is_past_deadline()
    }

    /// `true` once the task's timeout has passed (never without a timeout).
    pub fn is_past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| self.clock.now() >= d)
    }

    /// The instant the task's timeout passes, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

impl fmt::Debug for Cancel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Nobody has claimed the task yet.
const PENDING: usize = 0;
/// A worker, a cancel or an abandon claimed it; the value follows.
const CLAIMED: usize = 1;
/// The value is in the slot.
const DONE: usize = 2;

/// Where a task's outcome waits for its [`Task`] handle. Exactly one party
/// claims it (PENDING -> CLAIMED): the worker that runs it, a `cancel`
/// before it starts, or the code that drops it unrun. Only the claimant
/// writes the value, so it is never written twice nor lost.
pub(super) struct Slot<R> {
    state: AtomicUsize,
    cancel: AtomicBool,
    overran: AtomicBool,
    value: Mutex<Option<Result<R, TaskError>>>,
    waiters: Waiters,
}

impl<R> Slot<R> {
    pub(super) fn new() -> Self {
        Self {
            state: AtomicUsize::new(PENDING),
            cancel: AtomicBool::new(false),
            overran: AtomicBool::new(false),
            value: Mutex::new(None),
            waiters: Waiters::default(),
        }
    }

    pub(super) fn claim(&self) -> bool {
        self.state
            .compare_exchange(PENDING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(super) fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    pub(super) fn set_overran(&self) {
        self.overran.store(true, Ordering::Relaxed);
    }

    /// Stores the value of a claimed slot and wakes the handle.
    pub(super) fn complete(&self, value: Result<R, TaskError>) {
        *self.value.lock() = Some(value);
        self.state.store(DONE, Ordering::Release);
        self.waiters.notify_all();
    }

    fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    fn take(&self) -> Result<R, TaskError> {
        self.value
            .lock()
            .take()
            .expect("a task's value is taken once, by its only handle")
    }
}

/// The handle of a submitted task: wait for its result with
/// [`join`](Self::join) (or `.await` it, with the `async` feature).
///
/// The result stays in the handle until it is read: a slow reader never
/// makes the pool drop it. Dropping the handle discards the result when it
/// comes; the task still runs.
#[must_use = "a Task is the only way to its result; use `spawn` for fire-and-forget"]
pub struct Task<R> {
    pub(super) slot: Arc<Slot<R>>,
    #[cfg(feature = "async")]
    ticket: Option<crate::wait::Ticket>,
}

impl<R> Task<R> {
    pub(super) fn new(slot: Arc<Slot<R>>) -> Self {
        Self {
            slot,
            #[cfg(feature = "async")]
            ticket: None,
        }
    }

    /// Waits for the task's outcome.
    ///
    /// # Errors
    /// [`TaskError::Panicked`] with the panic message, [`TaskError::Cancelled`]
    /// if it was cancelled before it started, [`TaskError::NotRun`] if it
    /// was dropped unrun (abort, or a dropping overflow policy).
    pub fn join(self) -> Result<R, TaskError> {
        self.slot.waiters.wait_until(None, || self.slot.is_done());
        self.slot.take()
    }

    /// Waits up to `timeout` (on the real clock; `Duration::MAX` is forever).
    ///
    /// # Errors
    /// `Err(self)` hands the handle back when the task has not finished in
    /// time; `Ok(outcome)` carries what [`join`](Self::join) returns.
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<R, TaskError>, Self> {
        let deadline = deadline_after(Instant::now(), timeout);
        if self
            .slot
            .waiters
            .wait_until(deadline, || self.slot.is_done())
        {
            Ok(self.slot.take())
        } else {
            Err(self)
        }
    }

    /// Waits until `deadline` on `clock` (a [`ManualClock`](crate::clock::ManualClock)
    /// in tests).
    ///
    /// # Errors
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_until(
        self,
        clock: &dyn Clock,
        deadline: Instant,
    ) -> Result<Result<R, TaskError>, Self> {
        if wait_on(clock, &self.slot.waiters, Some(deadline), || {
            self.slot.is_done()
        }) {
            Ok(self.slot.take())
        } else {
            Err(self)
        }
    }

    /// Asks the task to stop. Returns `true` if it had not started: then it
    /// never runs and its outcome is [`TaskError::Cancelled`]. Otherwise
    /// (running or finished) it returns `false`, and a running task sees
    /// [`Cancel::is_cancelled`] turn `true`.
    pub fn cancel(&self) -> bool {
        self.slot.cancel.store(true, Ordering::Release);
        if self.slot.claim() {
            self.slot.complete(Err(TaskError::Cancelled));
            true
        } else {
            false
        }
    }

    /// `true` once the outcome is ready (`join` will not wait).
    pub fn is_finished(&self) -> bool {
        self.slot.is_done()
    }

    /// `true` if the task ran past the pool's
    /// [`task_timeout`](super::WorkerPoolBuilder::task_timeout). Its value
    /// is delivered all the same; the overrun is counted in the stats.
    pub fn overran(&self) -> bool {
        self.slot.overran.load(Ordering::Relaxed)
    }
}

impl<R> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(feature = "async")]
impl<R> std::future::Future for Task<R> {
    type Output = Result<R, TaskError>;

    /// # Panics
    /// If polled again after it returned `Ready`.
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.slot.is_done() {
                if let Some(ticket) = this.ticket.take() {
                    this.slot.waiters.unregister(ticket, true);
                }
                return Poll::Ready(this.slot.take());
            }
            match &this.ticket {
                Some(ticket) if this.slot.waiters.update(ticket, cx.waker()) => {
                    return Poll::Pending
                }
                Some(_) => {
                    // Notified: loop to read the value (or re-register).
                    let ticket = this.ticket.take().expect("checked");
                    this.slot.waiters.unregister(ticket, true);
                }
                None => {
                    this.ticket = Some(this.slot.waiters.register(Wake::Task(cx.waker().clone())));
                    if !this.slot.is_done() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

#[cfg(feature = "async")]
impl<R> Drop for Task<R> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.slot.waiters.unregister(ticket, false);
        }
    }
}

/// What running a job came to, for the worker's counters.
pub(super) enum Ran {
    Returned,
    Panicked,
    /// Cancelled (or otherwise claimed) before it started: not run.
    Skipped,
}

/// A queued job with its closure and result slot, type-erased for the queue.
pub(super) trait Job: Send {
    /// Runs the task (unless cancelled first), calls `account` with what
    /// happened, and only then hands the outcome to the task's handle, so
    /// counters read after a `join` include the task.
    ///
    /// Called once; what is left afterwards is dropped with nothing to do.
    fn run(
        &mut self,
        pool: &AtomicBool,
        deadline: Option<Instant>,
        clock: &dyn Clock,
        account: &mut dyn FnMut(&Ran, bool),
    ) -> Ran;
    /// The job as `Any`, so a refused submit can take its closure back.
    fn as_any(&mut self) -> &mut dyn std::any::Any;
}

pub(super) struct Erased<F, R> {
    pub(super) f: Option<F>,
    pub(super) call: fn(F, &Cancel<'_>) -> R,
    /// `None` for [`spawn`](super::WorkerPool::spawn)ed tasks.
    pub(super) slot: Option<Arc<Slot<R>>>,
}

impl<F: Send + 'static, R: Send + 'static> Job for Erased<F, R> {
    fn run(
        &mut self,
        pool: &AtomicBool,
        deadline: Option<Instant>,
        clock: &dyn Clock,
        account: &mut dyn FnMut(&Ran, bool),
    ) -> Ran {
        let slot = self.slot.take();
        if let Some(slot) = &slot {
            if !slot.claim() {
                account(&Ran::Skipped, false);
                return Ran::Skipped;
            }
        }
        let f = self.f.take().expect("a job runs once");
        let call = self.call;
        let cancel = Cancel {
            task: slot.as_deref().map(Slot::cancel_flag),
            pool,
            deadline,
            clock,
        };
        let outcome = crate::unwind::catch(|| call(f, &cancel));
        let overran = cancel.is_past_deadline();
        let ran = match &outcome {
            Ok(_) => Ran::Returned,
            Err(_) => Ran::Panicked,
        };
        account(&ran, overran);
        if let Some(slot) = slot {
            if overran {
                slot.set_overran();
            }
            slot.complete(outcome.map_err(TaskError::Panicked));
        }
        ran
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl<F, R> Drop for Erased<F, R> {
    fn drop(&mut self) {
        // Dropped without running (shutdown, overflow eviction, a dropped
        // `QueuedTask`): the handle learns it was not run, instead of waiting forever.
        if let Some(slot) = self.slot.take() {
            if self.f.is_some() && slot.claim() {
                slot.complete(Err(TaskError::NotRun));
            }
        }
    }
}
