//! [`CachedRateLimiter`]: one hot global limit that scales across cores.

use std::fmt;

use crossbeam_utils::CachePadded;

use super::{NotUntil, Quota, RateLimiter};
use crate::clock::{Clock, QuantaClock};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::ConfigError;

/// A GCRA limiter whose threads take cells from per-core caches, refilled
/// from the shared [`RateLimiter`] `chunk` cells at a time.
///
/// A check served from its cache costs one uncontended compare-and-swap
/// and **no clock read**; only one check in `chunk` touches the shared
/// state and the clock. Every cell is taken from the shared GCRA before it
/// is handed out, so over the limiter's life no more than
/// `burst + elapsed / T` pass, exactly as with [`RateLimiter`]. What the
/// caches change:
///
/// - a cell taken into a cache at `t₁` may be used at a later `t₂`, so in a
///   window that does not start at the limiter's creation up to
///   [`over_admission_bound`](Self::over_admission_bound)
///   `= slots · (chunk − 1)` cells more than the strict GCRA allows may pass;
/// - cells sitting in the cache of a thread that stopped checking are not
///   available to others (at most the same bound).
///
/// `chunk = 1` is the strict limiter. Pick `chunk` small against the burst.
///
/// ```
/// use sheaf::clock::ManualClock;
/// use sheaf::limit::{CachedRateLimiter, Quota};
///
/// let clock = ManualClock::new();
/// let limiter = CachedRateLimiter::with_clock(Quota::per_second(1_000)?, 8, clock)?;
/// let mut passed = 0;
/// while limiter.check().is_ok() {
///     passed += 1;
/// }
/// assert_eq!(passed, 1_000); // one thread: its cache drains the burst exactly
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct CachedRateLimiter<C: Clock = QuantaClock> {
    shared: RateLimiter<C>,
    /// Cells cached per slot; a thread uses slot `thread_slot() & mask`.
    slots: Box<[CachePadded<AtomicU64>]>,
    mask: usize,
    chunk: u64,
}

impl CachedRateLimiter<QuantaClock> {
    /// A cached limiter on the monotonic clock.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"chunk"`) if `chunk` is 0 or over the burst.
    pub fn new(quota: Quota, chunk: u64) -> Result<Self, ConfigError> {
        Self::with_clock(quota, chunk, QuantaClock::new())
    }
}

impl<C: Clock> CachedRateLimiter<C> {
    /// A cached limiter on `clock`, with one cache slot per CPU (rounded up
    /// to a power of two).
    ///
    /// # Errors
    /// As [`new`](CachedRateLimiter::new).
    pub fn with_clock(quota: Quota, chunk: u64, clock: C) -> Result<Self, ConfigError> {
        if chunk == 0 || chunk > quota.burst() {
            return Err(ConfigError::new(
                "chunk",
                format!(
                    "{chunk} cells per refill: give between 1 and the burst ({})",
                    quota.burst()
                ),
            ));
        }
        let slots = crate::sync::available_cpus().next_power_of_two();
        Ok(Self {
            shared: RateLimiter::with_clock(quota, clock),
            slots: (0..slots)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            mask: slots - 1,
            chunk,
        })
    }

    /// Takes one cell: from this thread's cache, else refills the cache
    /// from the shared state.
    ///
    /// # Errors
    /// [`NotUntil`] when the cache is empty and the shared state has no cell.
    #[inline]
    pub fn check(&self) -> Result<(), NotUntil> {
        let slot = &self.slots[crate::sync::thread_slot() & self.mask];
        let mut cached = slot.load(Ordering::Relaxed);
        // Relaxed: the count publishes nothing; each cell is counted once by
        // the RMWs on this one location.
        while cached > 0 {
            match slot.compare_exchange_weak(
                cached,
                cached - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => cached = current,
            }
        }
        self.refill(slot)
    }

    #[cold]
    fn refill(&self, slot: &AtomicU64) -> Result<(), NotUntil> {
        let taken = self.shared.take_up_to(self.chunk)?;
        if taken > 1 {
            slot.fetch_add(taken - 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The most cells beyond the strict GCRA that may pass in a window
    /// (and the most that may sit unused in caches): `slots · (chunk − 1)`.
    pub fn over_admission_bound(&self) -> u64 {
        self.slots.len() as u64 * (self.chunk - 1)
    }

    /// Cells sitting in the caches now.
    pub fn cached(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// The quota of the shared state.
    pub fn quota(&self) -> Quota {
        self.shared.quota()
    }
}

impl<C: Clock> fmt::Debug for CachedRateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRateLimiter")
            .field("quota", &self.quota())
            .field("chunk", &self.chunk)
            .field("slots", &self.slots.len())
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}
