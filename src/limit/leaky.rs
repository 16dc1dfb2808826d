//! [`LeakyBucket`]: callers leave at a fixed spacing, in arrival order.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::NotUntil;
use crate::clock::{Clock, Origin, QuantaClock};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::ConfigError;

/// Why a [`LeakyBucket`] refused a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeakyError {
    /// `max_waiting` callers already wait for their slots.
    Full,
    /// The caller's slot is later than its timeout allows (refused at once,
    /// without waiting for nothing).
    TimedOut(NotUntil),
}

impl fmt::Display for LeakyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeakyError::Full => write!(f, "the leaky bucket's queue of waiters is full"),
            LeakyError::TimedOut(n) => write!(f, "slot too late for the timeout: {n}"),
        }
    }
}

impl std::error::Error for LeakyError {}

/// Smooths callers to one every `interval`: each gets the next free slot
/// (in arrival order, so waiters are served first come, first served) and
/// waits for it; when `max_waiting` callers already wait, a new one is
/// refused instead of queueing without bound.
///
/// Slots are handed out by one compare-and-swap on the next free slot's
/// time; a caller knows its slot before it waits, so a timeout that its slot
/// would exceed is refused at once.
///
/// ```
/// use std::time::Duration;
/// use sheaf::clock::ManualClock;
/// use sheaf::limit::{LeakyBucket, LeakyError};
///
/// let clock = ManualClock::new();
/// let bucket = LeakyBucket::builder()
///     .interval(Duration::from_millis(10))
///     .max_waiting(1)
///     .clock(clock.clone())
///     .build()?;
/// assert!(bucket.try_acquire().is_ok()); // slot 0: now
/// assert!(bucket.try_acquire().is_err()); // the next slot is at 10 ms
/// // A caller that will not wait 10 ms is refused at once, claiming nothing.
/// assert!(matches!(bucket.acquire_timeout(Duration::ZERO), Err(LeakyError::TimedOut(_))));
/// clock.advance(Duration::from_millis(10));
/// assert!(bucket.try_acquire().is_ok());
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct LeakyBucket<C: Clock = QuantaClock> {
    /// The next free slot, in ns after `origin`.
    next: CachePadded<AtomicU64>,
    interval: u64,
    max_waiting: u64,
    clock: C,
    origin: Origin,
}

/// Builds a [`LeakyBucket`].
#[derive(Debug, Clone)]
pub struct LeakyBucketBuilder<C> {
    interval: Option<Duration>,
    max_waiting: u64,
    clock: C,
}

impl LeakyBucket<QuantaClock> {
    /// A builder: set [`interval`](LeakyBucketBuilder::interval) (required).
    pub fn builder() -> LeakyBucketBuilder<QuantaClock> {
        LeakyBucketBuilder {
            interval: None,
            max_waiting: 1024,
            clock: QuantaClock::new(),
        }
    }
}

impl<C: Clock> LeakyBucketBuilder<C> {
    /// The spacing between callers.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// `cells` callers per `period`, evenly spaced.
    pub fn rate(self, cells: u32, period: Duration) -> Self {
        let interval = period.checked_div(cells).unwrap_or(Duration::ZERO);
        self.interval(interval)
    }

    /// At most this many callers wait for a slot at once; more are refused
    /// with [`LeakyError::Full`]. Default 1024; 0 means never wait.
    pub fn max_waiting(mut self, max_waiting: u64) -> Self {
        self.max_waiting = max_waiting;
        self
    }

    /// The clock to read and park on.
    pub fn clock<C2: Clock>(self, clock: C2) -> LeakyBucketBuilder<C2> {
        LeakyBucketBuilder {
            interval: self.interval,
            max_waiting: self.max_waiting,
            clock,
        }
    }

    /// Builds the bucket; its first slot is now.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"interval"`) if no interval was given or it
    /// is zero (a `rate` of 0 cells) or over about 146 years.
    pub fn build(self) -> Result<LeakyBucket<C>, ConfigError> {
        let interval = self.interval.ok_or_else(|| {
            ConfigError::new("interval", "no spacing given; call interval() or rate()")
        })?;
        let interval = crate::clock::saturating_nanos(interval);
        if interval == 0 || interval > super::MAX_CAPACITY_NS {
            return Err(ConfigError::new(
                "interval",
                "the spacing must be between 1 ns and about 146 years (and a rate at least 1 cell)",
            ));
        }
        let origin = Origin::now(&self.clock);
        Ok(LeakyBucket {
            next: CachePadded::new(AtomicU64::new(0)),
            interval,
            max_waiting: self.max_waiting,
            clock: self.clock,
            origin,
        })
    }
}

impl<C: Clock> LeakyBucket<C> {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.origin.elapsed(&self.clock)
    }

    /// Callers holding a slot later than now (waiting, or about to).
    pub fn waiting(&self) -> u64 {
        let now = self.now_ns();
        let next = self.next.load(Ordering::Relaxed);
        waiting_before(next, now, self.interval)
    }

    /// The spacing between callers.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// Claims the next slot if it is now (or already past).
    ///
    /// # Errors
    /// [`NotUntil`] with the next slot's instant; nothing was claimed.
    pub fn try_acquire(&self) -> Result<(), NotUntil> {
        self.claim(Some(0)).map(drop).map_err(|e| match e {
            LeakyError::TimedOut(n) => n,
            LeakyError::Full => unreachable!("a zero wait is refused by time, never by room"),
        })
    }

    /// Claims the next slot and blocks until it comes.
    ///
    /// # Errors
    /// [`LeakyError::Full`] if `max_waiting` callers already wait.
    pub fn acquire(&self) -> Result<(), LeakyError> {
        let slot = self.claim(None)?;
        self.wait_for(slot);
        Ok(())
    }

    /// Claims the next slot if it comes within `timeout`, and waits for it.
    /// `Duration::MAX` means no limit.
    ///
    /// # Errors
    /// [`LeakyError::TimedOut`] at once (without waiting) if the slot is later;
    /// [`LeakyError::Full`] if `max_waiting` callers already wait.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), LeakyError> {
        let within = u64::try_from(timeout.as_nanos()).ok();
        let slot = self.claim(within)?;
        self.wait_for(slot);
        Ok(())
    }

    /// Claims a slot no later than `within` ns from now (`None`: any), or
    /// refuses without claiming.
    fn claim(&self, within: Option<u64>) -> Result<u64, LeakyError> {
        let now = self.now_ns();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let slot = next.max(now);
            if slot > now {
                if within.is_some_and(|w| slot - now > w) {
                    return Err(LeakyError::TimedOut(NotUntil::at(
                        self.origin.instant(),
                        slot,
                    )));
                }
                if waiting_before(next, now, self.interval) >= self.max_waiting {
                    return Err(LeakyError::Full);
                }
            }
            // Relaxed: as for the rate limiter, one location, nothing published.
            match self.next.compare_exchange_weak(
                next,
                slot + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(slot),
                Err(current) => next = current,
            }
        }
    }

    fn wait_for(&self, slot: u64) {
        let at = self.origin.instant_at(slot);
        while self.clock.now() < at {
            self.clock.park_until(Some(at));
        }
    }
}

/// Slots handed out that are still later than `now`, given the next free one.
#[inline]
fn waiting_before(next: u64, now: u64, interval: u64) -> u64 {
    // Slots ..., next − 2T, next − T were handed out; those after now wait.
    next.saturating_sub(now)
        .div_ceil(interval)
        .saturating_sub(1)
}

impl<C: Clock> fmt::Debug for LeakyBucket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakyBucket")
            .field("interval", &self.interval())
            .field("max_waiting", &self.max_waiting)
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}
