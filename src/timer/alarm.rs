//! The rendezvous between a driver thread that sleeps until its next due
//! tick and the threads that add earlier deadlines (or work) meanwhile.
//!
//! # The protocol
//!
//! `at` is the tick the driver will sleep until (`u64::MAX`: forever or
//! "scanning"). A pass of the driver:
//!
//! 1. [`begin_pass`](Alarm::begin_pass): `at = MAX`, then a new pass number
//!    under the `passes` lock, then it reads the clock and scans its wheels
//!    (under their locks);
//! 2. [`arm`](Alarm::arm)`(next)`: `at = min(at, next)` and sleeps until the
//!    result.
//!
//! A thread that inserted a deadline `d` (under a wheel's lock, released)
//! calls [`request`](Alarm::request)`(d)`: if `d < at` it lowers `at` and
//! unparks the driver. Either the driver's scan took that wheel's lock
//! after the insert (and saw it), or the scan came first; then `at = MAX`
//! happens-before the request through the wheel's lock, so the request sees
//! `MAX` (or a later `arm` value above `d`) and unparks. An unpark before the
//! driver parks is kept as the thread's token, so the park returns at once.
//! No wake-up is lost and a request costs one load when the driver already
//! wakes early enough.
//!
//! [`close`](Alarm::close) sets a flag and unparks. The driver checks the
//! flag when a pass begins and again in `arm`, after the pass: a pass that
//! parked (a callback blocked on a full output) may have used up the
//! unpark, and the second check is what keeps the driver from sleeping on.
//!
//! [`settle`](Alarm::settle) waits for a pass that began after the call,
//! which is how tests driving a manual clock know the driver has seen
//! their last step.

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::Mutex;
use crate::wait::Waiters;

use super::Tick;

pub(crate) struct Alarm {
    at: AtomicU64,
    driver: Mutex<Option<Thread>>,
    /// Number of the last pass begun.
    passes: Mutex<u64>,
    /// Number of the last pass finished.
    finished: AtomicU64,
    settled: Waiters,
    closed: AtomicBool,
}

impl Alarm {
    pub(crate) fn new() -> Self {
        Self {
            at: AtomicU64::new(u64::MAX),
            driver: Mutex::new(None),
            passes: Mutex::new(0),
            finished: AtomicU64::new(0),
            settled: Waiters::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Called by the driver thread once, before its first pass.
    pub(crate) fn register_driver(&self) {
        *self.driver.lock() = Some(thread::current());
    }

    /// Starts a pass; the caller reads the clock and scans after this.
    /// Returns the pass number for [`end_pass`](Self::end_pass).
    pub(crate) fn begin_pass(&self) -> u64 {
        self.at.store(u64::MAX, Ordering::SeqCst);
        let mut passes = self.passes.lock();
        *passes += 1;
        *passes
    }

    /// Ends a pass: wakes [`settle`](Self::settle) callers.
    pub(crate) fn end_pass(&self, pass: u64) {
        self.finished.store(pass, Ordering::Release);
        self.settled.notify_all();
    }

    /// The tick to sleep until: the earlier of `next` and any request made
    /// since the pass began (`None`: until woken); tick 0, "do not sleep",
    /// once closed.
    ///
    /// The close is checked here, after the pass, because a pass may park
    /// (a callback waiting on a full channel) and so take the unpark that
    /// [`close`](Self::close) sent: that close happened before the park
    /// returned, so this load sees it.
    pub(crate) fn arm(&self, next: Option<Tick>) -> Option<Tick> {
        let next = next.unwrap_or(u64::MAX);
        let earlier = self.at.fetch_min(next, Ordering::SeqCst).min(next);
        if self.closed.load(Ordering::SeqCst) {
            return Some(0);
        }
        (earlier != u64::MAX).then_some(earlier)
    }

    /// Asks the driver to run a pass by `tick`; wakes it if it planned to
    /// sleep longer.
    #[inline]
    pub(crate) fn request(&self, tick: Tick) {
        if tick < self.at.load(Ordering::SeqCst) && tick < self.at.fetch_min(tick, Ordering::SeqCst)
        {
            self.wake();
        }
    }

    /// Unparks the driver (if it has registered).
    pub(crate) fn wake(&self) {
        if let Some(driver) = &*self.driver.lock() {
            driver.unpark();
        }
    }

    /// Waits until a pass that began after this call has finished, or the
    /// driver is closed. Only for components that run a driver.
    pub(crate) fn settle(&self) {
        let begun = *self.passes.lock();
        self.request(0);
        self.settled.wait_until(None, || {
            self.finished.load(Ordering::Acquire) > begun || self.closed.load(Ordering::Acquire)
        });
    }

    /// Tells the driver to stop; it sees it at its next pass.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake();
        self.settled.notify_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
