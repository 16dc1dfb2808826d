//! [`ConcurrencyLimiter`]: at most `capacity` permits out at once, handed to
//! waiters in arrival order.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::clock::{deadline_after, Clock, MonotonicClock};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, MutexGuard};
use crate::wait::Wake;
use crate::ConfigError;

/// State word: free permits in the low bits, and three flags.
const CLOSED: u64 = 1 << 63;
/// Someone waits: acquirers go to the queue (no barging), releasers hand over.
const QUEUED: u64 = 1 << 62;
/// A shrink is still owed permits: releasers pay it first.
const DEBT: u64 = 1 << 61;
const FREE: u64 = DEBT - 1;
/// The largest capacity (permits are counted in the state word's low bits).
const MAX_CAPACITY: u64 = 1 << 48;

/// A waiter's outcome, set once under the queue's lock.
const PENDING: usize = 0;
const GRANTED: usize = 1;
const REFUSED_CLOSED: usize = 2;
const REFUSED_SHRUNK: usize = 3;

/// Why an acquire did not return a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// The limiter was [closed](ConcurrencyLimiter::close).
    Closed,
    /// The timeout passed first.
    TimedOut,
    /// A `try_` acquire found too few permits free, or others waiting first.
    NoPermits,
    /// More permits than the capacity (now, or after a shrink while waiting):
    /// this request cannot pass as it is.
    ExceedsCapacity {
        /// Permits asked for.
        requested: u64,
        /// The capacity when refused.
        capacity: u64,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Closed => write!(f, "the concurrency limiter is closed"),
            AcquireError::TimedOut => write!(f, "timed out waiting for permits"),
            AcquireError::NoPermits => write!(f, "no permits free now"),
            AcquireError::ExceedsCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} permits can never be held at once under a capacity of {capacity}"
            ),
        }
    }
}

impl std::error::Error for AcquireError {}

struct Waiter {
    n: u64,
    outcome: AtomicUsize,
}

struct Entry {
    waiter: Arc<Waiter>,
    wake: Wake,
}

struct Queue {
    entries: VecDeque<Entry>,
    capacity: u64,
    /// Permits a shrink still waits for.
    debt: u64,
}

/// Limits how many permits are out at once.
///
/// The fast path is one compare-and-swap on one word (free permits and
/// flags). When a caller must wait it joins a FIFO queue, and from then on
/// every acquirer queues behind it and every release hands permits to the
/// queue's head first: a large request is never starved by small ones.
/// [`set_capacity`](Self::set_capacity) grows at once and shrinks as
/// permits come back (it never revokes one). [`close`](Self::close) wakes
/// every waiter with [`AcquireError::Closed`]; permits out may still be
/// returned.
///
/// ```
/// use sheaf::limit::{AcquireError, ConcurrencyLimiter};
///
/// let limiter = ConcurrencyLimiter::new(2)?;
/// let a = limiter.acquire().unwrap();
/// let b = limiter.try_acquire().unwrap();
/// assert_eq!(limiter.try_acquire().unwrap_err(), AcquireError::NoPermits);
/// assert_eq!((limiter.in_use(), limiter.available()), (2, 0));
/// drop(a);
/// let pair = limiter.try_acquire_many(1).unwrap();
/// drop((b, pair));
/// assert_eq!(limiter.available(), 2);
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct ConcurrencyLimiter<C: Clock = MonotonicClock> {
    state: CachePadded<AtomicU64>,
    queue: Mutex<Queue>,
    clock: C,
}

impl ConcurrencyLimiter<MonotonicClock> {
    /// A limiter of `capacity` permits.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"capacity"`) if `capacity` is 0 or over 2^48.
    pub fn new(capacity: u64) -> Result<Self, ConfigError> {
        Self::with_clock(capacity, MonotonicClock)
    }
}

fn check_capacity(capacity: u64) -> Result<(), ConfigError> {
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(ConfigError::new(
            "capacity",
            format!("{capacity} permits: give between 1 and 2^48"),
        ));
    }
    Ok(())
}

impl<C: Clock> ConcurrencyLimiter<C> {
    /// A limiter of `capacity` permits whose timed waits use `clock`.
    ///
    /// # Errors
    /// As [`new`](ConcurrencyLimiter::new).
    pub fn with_clock(capacity: u64, clock: C) -> Result<Self, ConfigError> {
        check_capacity(capacity)?;
        Ok(Self {
            state: CachePadded::new(AtomicU64::new(capacity)),
            queue: Mutex::new(Queue {
                entries: VecDeque::new(),
                capacity,
                debt: 0,
            }),
            clock,
        })
    }

    /// Waits for one permit.
    ///
    /// # Errors
    /// [`AcquireError::Closed`] if the limiter is or gets closed.
    pub fn acquire(&self) -> Result<Permit<'_, C>, AcquireError> {
        self.acquire_many(1)
    }

    /// Waits for `n` permits at once (queued in order: later callers wait behind it).
    ///
    /// # Errors
    /// [`AcquireError::Closed`]; [`AcquireError::ExceedsCapacity`] if `n`
    /// is over the capacity (at the call, or after a shrink while waiting).
    pub fn acquire_many(&self, n: u64) -> Result<Permit<'_, C>, AcquireError> {
        self.acquire_inner(n, Mode::Wait(None))
    }

    /// Takes one permit if one is free and nobody waits.
    ///
    /// # Errors
    /// [`AcquireError::NoPermits`], or [`AcquireError::Closed`].
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, AcquireError> {
        self.acquire_inner(1, Mode::Try)
    }

    /// Takes `n` permits if they are free and nobody waits.
    ///
    /// # Errors
    /// [`AcquireError::NoPermits`], [`AcquireError::Closed`] or
    /// [`AcquireError::ExceedsCapacity`].
    pub fn try_acquire_many(&self, n: u64) -> Result<Permit<'_, C>, AcquireError> {
        self.acquire_inner(n, Mode::Try)
    }

    /// Waits for one permit at most `timeout` on the limiter's clock
    /// (`Duration::MAX`: no limit).
    ///
    /// # Errors
    /// [`AcquireError::TimedOut`] or [`AcquireError::Closed`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_, C>, AcquireError> {
        self.acquire_many_timeout(1, timeout)
    }

    /// Waits for `n` permits at most `timeout`. A waiter that times out
    /// leaves the queue, letting those behind it be served.
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many), plus [`AcquireError::TimedOut`].
    pub fn acquire_many_timeout(
        &self,
        n: u64,
        timeout: Duration,
    ) -> Result<Permit<'_, C>, AcquireError> {
        let deadline = deadline_after(self.clock.now(), timeout);
        self.acquire_inner(n, Mode::Wait(deadline))
    }

    #[inline]
    fn acquire_inner(&self, n: u64, mode: Mode) -> Result<Permit<'_, C>, AcquireError> {
        if self.try_fast(n) {
            return Ok(Permit { limiter: self, n });
        }
        self.acquire_slow(n, mode)
    }

    /// One CAS when nobody waits and enough permits are free.
    #[inline]
    fn try_fast(&self, n: u64) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (CLOSED | QUEUED) != 0 || state & FREE < n {
                return false;
            }
            // Acquire pairs with the releasing store of whoever returned
            // these permits: what they did under the permit is visible.
            match self.state.compare_exchange_weak(
                state,
                state - n,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => state = current,
            }
        }
    }

    /// Takes `n` free permits if there are that many (under the queue lock
    /// or on the fast path; the word is the truth either way).
    fn take_free(&self, n: u64) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & FREE < n {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state - n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => state = current,
            }
        }
    }

    #[cold]
    fn acquire_slow(&self, n: u64, mode: Mode) -> Result<Permit<'_, C>, AcquireError> {
        let mut wakes = Vec::new();
        let mut queue = self.queue.lock();
        let queued = self.enqueue(
            &mut queue,
            n,
            mode.may_wait(),
            Wake::current_thread(),
            &mut wakes,
        );
        drop(queue);
        wake_all(wakes);
        let waiter = match queued? {
            None => return Ok(Permit { limiter: self, n }),
            Some(waiter) => waiter,
        };
        let Mode::Wait(deadline) = mode else {
            unreachable!("enqueue only queues waiting modes")
        };
        loop {
            match waiter.outcome.load(Ordering::Acquire) {
                PENDING => {}
                outcome => return self.finish(outcome, n),
            }
            if deadline.is_some_and(|d| self.clock.now() >= d) {
                let mut queue = self.queue.lock();
                let outcome = waiter.outcome.load(Ordering::Acquire);
                if outcome != PENDING {
                    drop(queue);
                    return self.finish(outcome, n);
                }
                let wakes = self.leave(&mut queue, &waiter);
                drop(queue);
                wake_all(wakes);
                return Err(AcquireError::TimedOut);
            }
            self.clock.park_until(deadline);
        }
    }

    /// Under the lock: takes permits at once (`Ok(None)`), refuses, or
    /// queues a waiter (`Ok(Some)`).
    fn enqueue(
        &self,
        queue: &mut Queue,
        n: u64,
        may_wait: bool,
        wake: Wake,
        wakes: &mut Vec<Wake>,
    ) -> Result<Option<Arc<Waiter>>, AcquireError> {
        if self.state.load(Ordering::Relaxed) & CLOSED != 0 {
            return Err(AcquireError::Closed);
        }
        if n > queue.capacity {
            return Err(AcquireError::ExceedsCapacity {
                requested: n,
                capacity: queue.capacity,
            });
        }
        if queue.entries.is_empty() && self.take_free(n) {
            return Ok(None);
        }
        if !may_wait {
            return Err(AcquireError::NoPermits);
        }
        let waiter = Arc::new(Waiter {
            n,
            outcome: AtomicUsize::new(PENDING),
        });
        queue.entries.push_back(Entry {
            waiter: Arc::clone(&waiter),
            wake,
        });
        // From here on, fast acquirers queue and fast releasers hand over;
        // a release that slipped in before the flag is seen by this dispatch
        // (both act on the one state word, so their order is total).
        self.state.fetch_or(QUEUED, Ordering::AcqRel);
        // This may grant our own entry at once (waking ourselves is a
        // harmless extra unpark token or re-poll).
        wakes.extend(self.dispatch(queue));
        Ok(Some(waiter))
    }

    fn finish(&self, outcome: usize, n: u64) -> Result<Permit<'_, C>, AcquireError> {
        match outcome {
            GRANTED => Ok(Permit { limiter: self, n }),
            REFUSED_CLOSED => Err(AcquireError::Closed),
            _ => Err(AcquireError::ExceedsCapacity {
                requested: n,
                capacity: self.capacity(),
            }),
        }
    }

    /// Under the lock: removes a pending waiter, then serves whoever it held up.
    fn leave(&self, queue: &mut Queue, waiter: &Arc<Waiter>) -> Vec<Wake> {
        if let Some(pos) = queue
            .entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.waiter, waiter))
        {
            queue.entries.remove(pos);
        }
        self.dispatch(queue)
    }

    /// Under the lock: grants permits to the queue's head while they suffice
    /// (strict FIFO: a head that does not fit holds the rest back), and
    /// drops the QUEUED flag once the queue is empty.
    fn dispatch(&self, queue: &mut Queue) -> Vec<Wake> {
        let mut wakes = Vec::new();
        while let Some(head) = queue.entries.front() {
            if !self.take_free(head.waiter.n) {
                break;
            }
            let entry = queue.entries.pop_front().expect("front exists");
            entry.waiter.outcome.store(GRANTED, Ordering::Release);
            wakes.push(entry.wake);
        }
        if queue.entries.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
        wakes
    }

    /// Returns `n` permits.
    #[inline]
    fn release(&self, n: u64) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (QUEUED | DEBT) != 0 {
                return self.release_slow(n);
            }
            // Release: the next holder sees what was done under this permit.
            match self.state.compare_exchange_weak(
                state,
                state + n,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => state = current,
            }
        }
    }

    #[cold]
    fn release_slow(&self, n: u64) {
        let mut queue = self.queue.lock();
        let paid = n.min(queue.debt);
        queue.debt -= paid;
        if queue.debt == 0 {
            self.state.fetch_and(!DEBT, Ordering::AcqRel);
        }
        self.state.fetch_add(n - paid, Ordering::AcqRel);
        let wakes = self.dispatch(&mut queue);
        drop(queue);
        wake_all(wakes);
    }

    /// Changes the capacity. Growing frees permits at once (serving
    /// waiters); shrinking takes free permits and waits for the rest to come
    /// back (no permit is revoked), so `in_use()` may exceed the capacity
    /// until then. Waiters for more than the new capacity are refused with
    /// [`AcquireError::ExceedsCapacity`].
    ///
    /// # Errors
    /// As [`new`](ConcurrencyLimiter::new) (nothing changes).
    pub fn set_capacity(&self, capacity: u64) -> Result<(), ConfigError> {
        check_capacity(capacity)?;
        let mut queue = self.queue.lock();
        let old = queue.capacity;
        queue.capacity = capacity;
        let mut wakes = Vec::new();
        if capacity >= old {
            let grow = capacity - old;
            let paid = grow.min(queue.debt);
            queue.debt -= paid;
            if queue.debt == 0 {
                self.state.fetch_and(!DEBT, Ordering::AcqRel);
            }
            self.state.fetch_add(grow - paid, Ordering::AcqRel);
        } else {
            // Flag first, so fast releases from now on pay the debt.
            self.state.fetch_or(DEBT, Ordering::AcqRel);
            let shrink = old - capacity;
            let mut state = self.state.load(Ordering::Relaxed);
            let taken = loop {
                let take = shrink.min(state & FREE);
                match self.state.compare_exchange_weak(
                    state,
                    state - take,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break take,
                    Err(current) => state = current,
                }
            };
            queue.debt += shrink - taken;
            if queue.debt == 0 {
                self.state.fetch_and(!DEBT, Ordering::AcqRel);
            }
            let mut kept = VecDeque::with_capacity(queue.entries.len());
            for entry in queue.entries.drain(..) {
                if entry.waiter.n > capacity {
                    entry
                        .waiter
                        .outcome
                        .store(REFUSED_SHRUNK, Ordering::Release);
                    wakes.push(entry.wake);
                } else {
                    kept.push_back(entry);
                }
            }
            queue.entries = kept;
        }
        wakes.extend(self.dispatch(&mut queue));
        drop(queue);
        wake_all(wakes);
        Ok(())
    }

    /// Refuses every waiter and every later acquire with
    /// [`AcquireError::Closed`]. Permits out stay valid and may be returned.
    /// Idempotent.
    pub fn close(&self) {
        let mut queue = self.queue.lock();
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let wakes: Vec<Wake> = queue
            .entries
            .drain(..)
            .map(|entry| {
                entry
                    .waiter
                    .outcome
                    .store(REFUSED_CLOSED, Ordering::Release);
                entry.wake
            })
            .collect();
        self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        drop(queue);
        wake_all(wakes);
    }

    /// `true` once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// Permits free now.
    pub fn available(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & FREE
    }

    /// Permits out now (may exceed the capacity just after a shrink).
    pub fn in_use(&self) -> u64 {
        let queue = self.queue.lock();
        (queue.capacity + queue.debt).saturating_sub(self.available())
    }

    /// The capacity in force.
    pub fn capacity(&self) -> u64 {
        self.queue.lock().capacity
    }

    /// Callers waiting now.
    pub fn waiting(&self) -> usize {
        self.queue.lock().entries.len()
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }
}

fn wake_all(wakes: Vec<Wake>) {
    for wake in wakes {
        match wake {
            Wake::Thread(t) => t.unpark(),
            Wake::Task(w) => w.wake(),
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Try,
    Wait(Option<std::time::Instant>),
}

impl Mode {
    fn may_wait(self) -> bool {
        matches!(self, Mode::Wait(_))
    }
}

impl<C: Clock> fmt::Debug for ConcurrencyLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Permits held; dropping it returns them.
#[must_use = "dropping a permit returns it at once"]
pub struct Permit<'a, C: Clock = MonotonicClock> {
    limiter: &'a ConcurrencyLimiter<C>,
    n: u64,
}

impl<C: Clock> Permit<'_, C> {
    /// How many permits this holds.
    pub fn count(&self) -> u64 {
        self.n
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.limiter.release(self.n);
        }
    }
}

impl<C: Clock> fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("count", &self.n).finish()
    }
}

/// Permits held through an `Arc` of the limiter (`'static`, so they can move
/// into spawned threads or tasks); dropping it returns them.
#[must_use = "dropping a permit returns it at once"]
pub struct OwnedPermit<C: Clock = MonotonicClock> {
    limiter: std::sync::Arc<ConcurrencyLimiter<C>>,
    n: u64,
}

impl<C: Clock> OwnedPermit<C> {
    /// How many permits this holds.
    pub fn count(&self) -> u64 {
        self.n
    }
}

impl<C: Clock> Drop for OwnedPermit<C> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.limiter.release(self.n);
        }
    }
}

impl<C: Clock> fmt::Debug for OwnedPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("count", &self.n)
            .finish()
    }
}

impl<C: Clock> ConcurrencyLimiter<C> {
    /// [`acquire_many`](Self::acquire_many) returning a permit that owns a
    /// clone of the `Arc`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let limiter = Arc::new(sheaf::limit::ConcurrencyLimiter::new(2).unwrap());
    /// let permit = limiter.acquire_many_owned(2).unwrap();
    /// std::thread::spawn(move || drop(permit)).join().unwrap();
    /// assert_eq!(limiter.available(), 2);
    /// ```
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many).
    pub fn acquire_many_owned(
        self: &std::sync::Arc<Self>,
        n: u64,
    ) -> Result<OwnedPermit<C>, AcquireError> {
        self.acquire_many(n).map(|permit| self.own(permit))
    }

    /// [`try_acquire_many`](Self::try_acquire_many) returning an [`OwnedPermit`].
    ///
    /// # Errors
    /// As [`try_acquire_many`](Self::try_acquire_many).
    pub fn try_acquire_many_owned(
        self: &std::sync::Arc<Self>,
        n: u64,
    ) -> Result<OwnedPermit<C>, AcquireError> {
        self.try_acquire_many(n).map(|permit| self.own(permit))
    }

    /// [`acquire_many_timeout`](Self::acquire_many_timeout) returning an [`OwnedPermit`].
    ///
    /// # Errors
    /// As [`acquire_many_timeout`](Self::acquire_many_timeout).
    pub fn acquire_many_timeout_owned(
        self: &std::sync::Arc<Self>,
        n: u64,
        timeout: Duration,
    ) -> Result<OwnedPermit<C>, AcquireError> {
        self.acquire_many_timeout(n, timeout)
            .map(|permit| self.own(permit))
    }

    fn own(self: &std::sync::Arc<Self>, permit: Permit<'_, C>) -> OwnedPermit<C> {
        let n = permit.n;
        std::mem::forget(permit);
        OwnedPermit {
            limiter: std::sync::Arc::clone(self),
            n,
        }
    }
}

#[cfg(feature = "async")]
mod future {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// The future of [`ConcurrencyLimiter::acquire_async`]. Dropping it while
    /// queued leaves the queue (serving whoever it held up); dropping it
    /// after it was granted returns the permits.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireFuture<'a, C: Clock = MonotonicClock> {
        pub(super) limiter: &'a ConcurrencyLimiter<C>,
        pub(super) n: u64,
        pub(super) waiter: Option<Arc<Waiter>>,
        pub(super) done: bool,
    }

    impl<'a, C: Clock> Future for AcquireFuture<'a, C> {
        type Output = Result<Permit<'a, C>, AcquireError>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = &mut *self;
            let limiter = this.limiter;
            let n = this.n;
            if this.done {
                return Poll::Pending;
            }
            match &this.waiter {
                None => {
                    if limiter.try_fast(n) {
                        this.done = true;
                        return Poll::Ready(Ok(Permit { limiter, n }));
                    }
                    let mut queue = limiter.lock_queue();
                    let wake = Wake::Task(cx.waker().clone());
                    let mut wakes = Vec::new();
                    let queued = limiter.enqueue(&mut queue, n, true, wake, &mut wakes);
                    drop(queue);
                    wake_all(wakes);
                    match queued {
                        Err(e) => {
                            this.done = true;
                            Poll::Ready(Err(e))
                        }
                        Ok(None) => {
                            this.done = true;
                            Poll::Ready(Ok(Permit { limiter, n }))
                        }
                        Ok(Some(waiter)) => {
                            let outcome = waiter.outcome.load(Ordering::Acquire);
                            this.waiter = Some(waiter);
                            if outcome == PENDING {
                                Poll::Pending
                            } else {
                                this.done = true;
                                Poll::Ready(limiter.finish(outcome, n))
                            }
                        }
                    }
                }
                Some(waiter) => {
                    let mut queue = limiter.lock_queue();
                    let outcome = waiter.outcome.load(Ordering::Acquire);
                    if outcome == PENDING {
                        if let Some(entry) = queue
                            .entries
                            .iter_mut()
                            .find(|e| Arc::ptr_eq(&e.waiter, waiter))
                        {
                            match &mut entry.wake {
                                Wake::Task(w) if w.will_wake(cx.waker()) => {}
                                wake => *wake = Wake::Task(cx.waker().clone()),
                            }
                        }
                        return Poll::Pending;
                    }
                    drop(queue);
                    this.done = true;
                    Poll::Ready(limiter.finish(outcome, n))
                }
            }
        }
    }

    impl<C: Clock> Drop for AcquireFuture<'_, C> {
        fn drop(&mut self) {
            if self.done {
                return;
            }
            let Some(waiter) = self.waiter.take() else {
                return;
            };
            let mut queue = self.limiter.lock_queue();
            match waiter.outcome.load(Ordering::Acquire) {
                PENDING => {
                    let wakes = self.limiter.leave(&mut queue, &waiter);
                    drop(queue);
                    wake_all(wakes);
                }
                GRANTED => {
                    drop(queue);
                    self.limiter.release(self.n);
                }
                _ => {}
            }
        }
    }

    impl<C: Clock> fmt::Debug for AcquireFuture<'_, C> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AcquireFuture").field("n", &self.n).finish()
        }
    }

    impl<C: Clock> ConcurrencyLimiter<C> {
        /// Waits for `n` permits without blocking the thread (in order with
        /// blocking waiters).
        ///
        /// ```
        /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        /// # rt.block_on(async {
        /// let limiter = sheaf::limit::ConcurrencyLimiter::new(3).unwrap();
        /// let permit = limiter.acquire_async(2).await.unwrap();
        /// assert_eq!(limiter.available(), 1);
        /// drop(permit);
        /// # });
        /// ```
        ///
        /// # Errors
        /// The future resolves to the errors of [`acquire_many`](Self::acquire_many).
        pub fn acquire_async(&self, n: u64) -> AcquireFuture<'_, C> {
            AcquireFuture {
                limiter: self,
                n,
                waiter: None,
                done: false,
            }
        }
    }
}

#[cfg(feature = "async")]
pub use future::AcquireFuture;
