//! Rate and concurrency limits: a GCRA [`RateLimiter`], a [`LeakyBucket`]
//! that spaces callers evenly, a [`ConcurrencyLimiter`] with RAII
//! [`Permit`]s, and a [`KeyedLimiter`] whose memory tracks the keys in use.
//!
//! Every limiter reads time through a [`Clock`](crate::clock::Clock), so
//! tests drive a [`ManualClock`](crate::clock::ManualClock) and get exact
//! answers. The limiters that read the clock on every check (rate, keyed,
//! leaky) default to [`QuantaClock`](crate::clock::QuantaClock), the CPU's
//! time-stamp counter, as governor does: a `clock_gettime` would be over
//! half of a check's cost (DESIGN.md, "The limiters"). The concurrency
//! limiter reads a clock only for timeouts and keeps
//! [`MonotonicClock`](crate::clock::MonotonicClock).
//!
//! ```
//! use std::time::Duration;
//! use sheaf::clock::{Clock, ManualClock};
//! use sheaf::limit::{Quota, RateLimiter};
//!
//! let clock = ManualClock::new();
//! // 10 cells a second, at most 3 at once.
//! let limiter = RateLimiter::with_clock(Quota::per_second(10)?.with_burst(3)?, clock.clone());
//! for _ in 0..3 {
//!     assert!(limiter.check().is_ok());
//! }
//! let wait = limiter.check().unwrap_err();
//! assert_eq!(wait.wait_time_from(clock.now()), Duration::from_millis(100));
//! clock.advance(Duration::from_millis(100));
//! assert!(limiter.check().is_ok());
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # The GCRA
//!
//! A [`Quota`] of `burst` cells replenished at one cell per *emission
//! interval* `T` is kept as one number, the theoretical arrival time `TAT`
//! (nanoseconds on the limiter's clock). Taking `n` cells at time `t`:
//!
//! ```text
//! new = max(TAT, t) + n·T
//! allowed  iff  new − t ≤ burst·T        (i.e. t ≥ new − τ − T, τ = (burst − 1)·T)
//! on allow: TAT = new;  on deny: nothing changes, retry at new − burst·T
//! ```
//!
//! From a full limiter, the number of single cells admitted in `[0, E]` is
//! exactly `burst + ⌊E / T⌋`, and `n > burst` can never pass (an error
//! says so rather than a silent "never"). The same arithmetic, with test
//! vectors in `tests/vectors/gcra.txt`, is what a distributed limiter must
//! reproduce: `redis::RedisRateLimiter` (feature `redis`) does, against a
//! real server. DESIGN.md ("The limiters") has the memory orderings and
//! measurements.

mod cached;
mod concurrency;
mod gcra;
mod keyed;
mod leaky;
mod rate;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(all(test, not(sheaf_loom)))]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

use crate::ConfigError;

pub use cached::CachedRateLimiter;
#[cfg(feature = "async")]
pub use concurrency::AcquireFuture;
pub use concurrency::{AcquireError, ConcurrencyLimiter, OwnedPermit, Permit};
pub use keyed::{KeyedLimiter, KeyedLimiterBuilder, KeyedStats, WhenFull};
pub use leaky::{LeakyBucket, LeakyBucketBuilder, LeakyError};
pub use rate::{RateLimiter, Reservation};

/// Emission intervals and bursts are kept so that `burst · interval` stays
/// below this (about 146 years), leaving headroom for `max(TAT, t) + n·T`.
const MAX_CAPACITY_NS: u64 = 1 << 62;

/// A rate: one cell every emission interval, with up to `burst` cells at once.
///
/// The interval is `period / cells`, in whole nanoseconds (rounded down).
///
/// ```
/// use std::time::Duration;
/// use sheaf::limit::Quota;
///
/// let q = Quota::per_second(100)?;
/// assert_eq!(q.interval(), Duration::from_millis(10));
/// assert_eq!(q.burst(), 100); // a quota's burst defaults to its cells
/// let q = q.with_burst(5)?;
/// assert_eq!(q.burst(), 5);
/// assert!(Quota::per_second(0).is_err());
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    interval_ns: u64,
    burst: u64,
}

impl Quota {
    /// `cells` per `period`, with a burst of `cells`.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"quota"`) if `cells` is 0, or the interval
    /// `period / cells` is under one nanosecond, or `cells · interval` is
    /// over about 146 years.
    pub fn new(cells: u64, period: Duration) -> Result<Self, ConfigError> {
        if cells == 0 {
            return Err(ConfigError::new(
                "quota",
                "0 cells per period admits nothing; give at least 1",
            ));
        }
        let period_ns = crate::clock::saturating_nanos(period);
        let interval_ns = period_ns / cells;
        if interval_ns == 0 {
            return Err(ConfigError::new(
                "quota",
                format!(
                    "{cells} cells per {period:?} is more than one per nanosecond; use fewer cells or a longer period"
                ),
            ));
        }
        Self::from_parts(interval_ns, cells, "quota")
    }

    /// `cells` per second (burst `cells`). See [`new`](Self::new).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn per_second(cells: u64) -> Result<Self, ConfigError> {
        Self::new(cells, Duration::from_secs(1))
    }

    /// `cells` per minute (burst `cells`). See [`new`](Self::new).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn per_minute(cells: u64) -> Result<Self, ConfigError> {
        Self::new(cells, Duration::from_secs(60))
    }

    /// One cell per `interval`, burst 1.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"quota"`) if `interval` is under a nanosecond
    /// or over about 146 years.
    pub fn with_interval(interval: Duration) -> Result<Self, ConfigError> {
        let interval_ns = crate::clock::saturating_nanos(interval);
        if interval_ns == 0 {
            return Err(ConfigError::new(
                "quota",
                "an emission interval of zero admits without limit; give at least 1 ns",
            ));
        }
        Self::from_parts(interval_ns, 1, "quota")
    }

    /// The same rate with up to `burst` cells at once.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"burst"`) if `burst` is 0 or
    /// `burst · interval` is over about 146 years.
    pub fn with_burst(self, burst: u64) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::new(
                "burst",
                "a burst of 0 admits nothing; give at least 1",
            ));
        }
        Self::from_parts(self.interval_ns, burst, "burst")
    }

    fn from_parts(
        interval_ns: u64,
        burst: u64,
        setting: &'static str,
    ) -> Result<Self, ConfigError> {
        match interval_ns.checked_mul(burst) {
            Some(capacity) if capacity <= MAX_CAPACITY_NS => Ok(Self { interval_ns, burst }),
            _ => Err(ConfigError::new(
                setting,
                format!(
                    "a burst of {burst} cells {interval_ns} ns apart spans more than 146 years; lower the burst or the interval"
                ),
            )),
        }
    }

    /// The emission interval `T`: one cell is replenished every `T`.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// The most cells that can pass at once, after an idle period.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// `burst · T` in nanoseconds: how far ahead of now `TAT` may run.
    #[inline]
    pub(crate) fn capacity_ns(&self) -> u64 {
        self.interval_ns * self.burst
    }

    #[inline]
    pub(crate) fn interval_ns(&self) -> u64 {
        self.interval_ns
    }
}

/// A denied check: the cells may pass at [`earliest`](Self::earliest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUntil {
    /// Kept as the limiter's origin and an offset: building the `Instant`
    /// costs a few nanoseconds a denied check need not pay.
    origin: Instant,
    earliest_ns: u64,
}

impl NotUntil {
    #[inline]
    pub(crate) fn at(origin: Instant, earliest_ns: u64) -> Self {
        Self {
            origin,
            earliest_ns,
        }
    }

    /// The earliest instant, on the limiter's clock, at which the same
    /// request would pass (if nothing else takes cells meanwhile).
    pub fn earliest(&self) -> Instant {
        self.origin + Duration::from_nanos(self.earliest_ns)
    }

    /// How long after `now` that is (zero if already past).
    pub fn wait_time_from(&self, now: Instant) -> Duration {
        self.earliest().saturating_duration_since(now)
    }
}

impl fmt::Display for NotUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited; retry at {:?}", self.earliest())
    }
}

impl std::error::Error for NotUntil {}

/// Why a check of `n` cells did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// Not now: the cells may pass later.
    Wait(NotUntil),
    /// More cells than the burst: this request can never pass as it is.
    ExceedsBurst {
        /// Cells asked for.
        requested: u64,
        /// The limiter's burst when asked.
        burst: u64,
    },
    /// A [`KeyedLimiter`] at its `max_keys` under [`WhenFull::RefuseNewKey`]
    /// refused to start tracking a new key.
    KeysFull,
}

impl CheckError {
    /// The [`NotUntil`] of a [`Wait`](Self::Wait), if it is one.
    pub fn not_until(&self) -> Option<NotUntil> {
        match self {
            CheckError::Wait(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<NotUntil> for CheckError {
    fn from(n: NotUntil) -> Self {
        CheckError::Wait(n)
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Wait(n) => n.fmt(f),
            CheckError::ExceedsBurst { requested, burst } => write!(
                f,
                "{requested} cells can never pass a limiter whose burst is {burst}"
            ),
            CheckError::KeysFull => {
                write!(
                    f,
                    "the keyed limiter tracks max_keys keys and refuses new ones"
                )
            }
        }
    }
}

impl std::error::Error for CheckError {}
