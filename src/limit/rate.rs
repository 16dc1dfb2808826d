//! [`RateLimiter`]: GCRA on one atomic.

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::gcra::{decide, refund};
use super::{CheckError, NotUntil, Quota};
use crate::clock::{Clock, Origin, QuantaClock};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;
use crate::ConfigError;

/// A GCRA rate limiter: `burst` cells at once, one more every emission
/// interval. One `AtomicU64` holds the whole state; a check is a clock read,
/// a load and (when it passes) one compare-and-swap.
///
/// ```
/// use std::time::Duration;
/// use sheaf::clock::ManualClock;
/// use sheaf::limit::{CheckError, Quota, RateLimiter};
///
/// let clock = ManualClock::new();
/// let limiter = RateLimiter::with_clock(Quota::per_second(4)?, clock.clone());
/// assert!(limiter.check_n(4).is_ok());
/// assert!(limiter.check().is_err());
/// // Five can never pass a burst of four: an error says so.
/// assert_eq!(
///     limiter.check_n(5),
///     Err(CheckError::ExceedsBurst { requested: 5, burst: 4 })
/// );
/// clock.advance(Duration::from_millis(500));
/// assert!(limiter.check_n(2).is_ok());
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
pub struct RateLimiter<C: Clock = QuantaClock> {
    /// Theoretical arrival time, in ns after `origin`. Alone on its line:
    /// the only word checks write.
    tat: CachePadded<AtomicU64>,
    /// `T` and `burst · T` in ns: read by every check, written only by the
    /// setters, so they stay shared in every core's cache.
    interval: AtomicU64,
    capacity: AtomicU64,
    /// Serializes the setters (and remembers the quota they agreed on).
    quota: Mutex<Quota>,
    clock: C,
    origin: Origin,
}

impl RateLimiter<QuantaClock> {
    /// A limiter on the time-stamp counter ([`QuantaClock`]), starting full.
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, QuantaClock::new())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter on `clock`, starting full (a whole burst may pass at once).
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        let origin = Origin::now(&clock);
        Self {
            tat: CachePadded::new(AtomicU64::new(0)),
            interval: AtomicU64::new(quota.interval_ns()),
            capacity: AtomicU64::new(quota.capacity_ns()),
            quota: Mutex::new(quota),
            clock,
            origin,
        }
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        *self.quota.lock()
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        self.origin.elapsed(&self.clock)
    }

    /// Takes one cell if it is there now.
    ///
    /// # Errors
    /// [`NotUntil`] with the instant at which it will be.
    #[inline]
    pub fn check(&self) -> Result<(), NotUntil> {
        let interval = self.interval.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed);
        self.take(interval, capacity)
            .map_err(|earliest| NotUntil::at(self.origin.instant(), earliest))
    }

    /// Takes `n` cells at once if they are all there now (`n == 0` always passes).
    ///
    /// # Errors
    /// [`CheckError::Wait`] if they will be later; [`CheckError::ExceedsBurst`]
    /// if `n` is over the burst, so they never will.
    #[inline]
    pub fn check_n(&self, n: u64) -> Result<(), CheckError> {
        let (increment, capacity) = self.increment(n)?;
        self.take(increment, capacity)
            .map_err(|earliest| CheckError::Wait(NotUntil::at(self.origin.instant(), earliest)))
    }

    /// `(n·T, burst·T)`, or the error for `n > burst`.
    #[inline]
    fn increment(&self, n: u64) -> Result<(u64, u64), CheckError> {
        let interval = self.interval.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed);
        match n.checked_mul(interval) {
            Some(increment) if increment <= capacity => Ok((increment, capacity)),
            _ => Err(CheckError::ExceedsBurst {
                requested: n,
                burst: capacity / interval,
            }),
        }
    }

    /// The CAS loop: `Err(earliest ns)` when denied.
    #[inline]
    fn take(&self, increment: u64, capacity: u64) -> Result<(), u64> {
        let now = self.now_ns();
        // Relaxed is enough: the TAT publishes no other memory, and the
        // exact count comes from every CAS acting on one location (its
        // modification order is total). A stale `now` (an older clock read
        // than another thread's) only makes this check stricter.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new = decide(tat, now, increment, capacity)?;
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Takes as many cells as are there now, up to `max` (at least one), and
    /// says how many; `Err(earliest ns)` when not even one is.
    #[inline]
    pub(crate) fn take_up_to(&self, max: u64) -> Result<u64, NotUntil> {
        let interval = self.interval.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed);
        let now = self.now_ns();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now);
            let room = capacity.saturating_sub(base - now) / interval;
            if room == 0 {
                let earliest = (base + interval).saturating_sub(capacity);
                return Err(NotUntil::at(self.origin.instant(), earliest));
            }
            let taken = room.min(max);
            match self.tat.compare_exchange_weak(
                tat,
                base + taken * interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(taken),
                Err(current) => tat = current,
            }
        }
    }

    /// Blocks until one cell is taken, parking on the clock between tries.
    pub fn until_ready(&self) {
        while let Err(not_until) = self.check() {
            self.clock.park_until(Some(not_until.earliest()));
        }
    }

    /// Blocks until `n` cells are taken at once.
    ///
    /// # Errors
    /// [`CheckError::ExceedsBurst`] at once if `n` is over the burst (it would never pass).
    pub fn until_n_ready(&self, n: u64) -> Result<(), CheckError> {
        loop {
            match self.check_n(n) {
                Ok(()) => return Ok(()),
                Err(CheckError::Wait(not_until)) => {
                    self.clock.park_until(Some(not_until.earliest()))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes `n` cells now, however far ahead that runs the limiter, and
    /// says when they may be used: at [`Reservation::ready_at`]. A
    /// reservation not wanted after all is [cancelled](Reservation::cancel)
    /// to give back the cells it still holds.
    ///
    /// ```
    /// use sheaf::clock::{Clock, ManualClock};
    /// use sheaf::limit::{Quota, RateLimiter};
    ///
    /// let clock = ManualClock::new();
    /// let limiter = RateLimiter::with_clock(Quota::per_second(2)?, clock.clone());
    /// let first = limiter.reserve(2).unwrap();
    /// assert_eq!(first.ready_at(), clock.now()); // a full burst: ready now
    /// let second = limiter.reserve(1).unwrap();
    /// assert!(second.ready_at() > clock.now()); // must wait half a second
    /// second.cancel();
    /// first.cancel(); // both cancelled: the limiter is full again
    /// assert!(limiter.check_n(2).is_ok());
    /// # Ok::<(), sheaf::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`CheckError::ExceedsBurst`] if `n` is over the burst.
    pub fn reserve(&self, n: u64) -> Result<Reservation<'_, C>, CheckError> {
        let (increment, capacity) = self.increment(n)?;
        let now = self.now_ns();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new = tat.max(now) + increment;
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        limiter: self,
                        increment,
                        reserved_tat: new,
                        ready_ns: new.saturating_sub(capacity).max(now),
                    })
                }
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back what a reservation still holds (see [`gcra::refund`](super::gcra::refund)).
    fn cancel(&self, increment: u64, reserved_tat: u64) {
        let now = self.now_ns();
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                match refund(tat, now, increment, reserved_tat) {
                    0 => None,
                    back => Some(tat - back),
                }
            });
    }

    /// Changes the rate to `cells` per `period`, keeping the burst. Time
    /// already owed stays owed; later checks use the new interval.
    ///
    /// A check racing the change may combine the old interval with the new
    /// capacity (or the reverse) for that one check; every check that starts
    /// after this returns uses the new pair.
    ///
    /// # Errors
    /// As [`Quota::new`] (nothing changes).
    pub fn set_rate(&self, cells: u64, period: Duration) -> Result<(), ConfigError> {
        let mut quota = self.quota.lock();
        let new = Quota::new(cells, period)?.with_burst(quota.burst())?;
        self.store(&mut quota, new);
        Ok(())
    }

    /// Changes the burst, keeping the rate (same caveat as [`set_rate`](Self::set_rate)).
    ///
    /// # Errors
    /// As [`Quota::with_burst`] (nothing changes).
    pub fn set_burst(&self, burst: u64) -> Result<(), ConfigError> {
        let mut quota = self.quota.lock();
        let new = quota.with_burst(burst)?;
        self.store(&mut quota, new);
        Ok(())
    }

    /// Replaces rate and burst at once.
    pub fn set_quota(&self, new: Quota) {
        let mut quota = self.quota.lock();
        self.store(&mut quota, new);
    }

    fn store(&self, quota: &mut Quota, new: Quota) {
        *quota = new;
        self.interval.store(new.interval_ns(), Ordering::Relaxed);
        self.capacity.store(new.capacity_ns(), Ordering::Relaxed);
    }

    /// Cells that could pass at once right now (0 to burst).
    pub fn available(&self) -> u64 {
        let now = self.now_ns();
        let interval = self.interval.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed);
        let owed = self.tat.load(Ordering::Relaxed).saturating_sub(now);
        capacity.saturating_sub(owed) / interval
    }
}

impl<C: Clock> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota())
            .field("available", &self.available())
            .finish_non_exhaustive()
    }
}

/// Cells taken by [`RateLimiter::reserve`], usable from
/// [`ready_at`](Self::ready_at). Dropping it keeps the cells taken;
/// [`cancel`](Self::cancel) gives back what it still holds.
#[must_use = "a reservation is ready at `ready_at`; cancel it if it is not used"]
pub struct Reservation<'a, C: Clock = QuantaClock> {
    limiter: &'a RateLimiter<C>,
    increment: u64,
    reserved_tat: u64,
    ready_ns: u64,
}

impl<C: Clock> Reservation<'_, C> {
    /// When the reserved cells may be used.
    pub fn ready_at(&self) -> Instant {
        self.limiter.origin.instant_at(self.ready_ns)
    }

    /// `true` once [`ready_at`](Self::ready_at) has passed.
    pub fn is_ready(&self) -> bool {
        self.limiter.now_ns() >= self.ready_ns
    }

    /// Blocks until [`ready_at`](Self::ready_at), parking on the limiter's clock.
    pub fn wait(self) {
        let ready = self.ready_at();
        while self.limiter.clock.now() < ready {
            self.limiter.clock.park_until(Some(ready));
        }
    }

    /// Gives the cells back: those not yet drained by time and not already
    /// counted on by takes made after this reservation (so cancelling never
    /// lets more pass than the quota allows).
    pub fn cancel(self) {
        self.limiter.cancel(self.increment, self.reserved_tat);
    }
}

impl<C: Clock> fmt::Debug for Reservation<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("ready_at", &self.ready_at())
            .finish_non_exhaustive()
    }
}
