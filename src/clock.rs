//! The one time source every timed component takes: a [`Clock`].
//!
//! Grace periods, schedules, rates and deadlines read time through a
//! `Clock`, never through `Instant::now()` directly, so a test can drive a
//! [`ManualClock`] and assert exact outcomes without sleeping. Production
//! code uses [`MonotonicClock`] (the default everywhere).
//!
//! ```
//! use std::time::Duration;
//! use sheaf::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_millis(250));
//! assert_eq!(clock.now() - start, Duration::from_millis(250));
//! ```
//!
//! # Deadlines
//!
//! A duration too large to add to an instant (`Duration::MAX`, say) means
//! "forever": [`deadline_after`] returns `None` for it rather than
//! panicking, as std's and crossbeam's timed waits do.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, Mutex};

/// A source of monotonic and wall-clock time that can also put a thread to
/// sleep until one of its instants.
///
/// Implementations must be monotonic: `now()` never goes backwards.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time (for calendars: cron, time windows).
    fn wall(&self) -> SystemTime;

    /// Parks the calling thread until `deadline` on this clock has passed,
    /// or until the thread is unparked, or spuriously; callers re-check
    /// their condition in a loop. `None` parks until unparked.
    fn park_until(&self, deadline: Option<Instant>);

    /// Nanoseconds on this clock's time line since an origin of the
    /// clock's choosing: the same time as [`now`](Self::now), as one
    /// integer, for hot paths that only take differences (the limiters read
    /// nothing else per check). Never decreases.
    ///
    /// The default measures `now()` from a process-wide anchor taken at the
    /// first call of any clock's default `nanos` (saturating at 0 before
    /// it), so a clock whose `now()` can be earlier than that moment (a
    /// simulated clock, say) must override it, as [`ManualClock`] does.
    /// [`QuantaClock`] overrides it to skip the `Instant` altogether.
    #[inline]
    fn nanos(&self) -> u64 {
        nanos_between(anchor(), self.now())
    }
}

/// Parks for what is left until `deadline` on `clock` (a real clock: the
/// OS times the park), or until unparked.
fn park_until_on<C: Clock>(clock: &C, deadline: Option<Instant>) {
    match deadline {
        None => thread::park(),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(clock.now());
            if !left.is_zero() {
                thread::park_timeout(left);
            }
        }
    }
}

/// The instant the default [`Clock::nanos`] counts from.
fn anchor() -> Instant {
    static ANCHOR: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years: a
/// duration that long means "forever" wherever the crate keeps one as a
/// `u64`); cheaper than `as_nanos()`, which goes through a `u128`.
#[inline]
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// Nanoseconds from `earlier` to `later` (0 if `later` is earlier).
#[inline]
fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    saturating_nanos(later.saturating_duration_since(earlier))
}

/// A component's start on its clock, kept both ways: as an `Instant` (to
/// hand instants back to users) and as [`Clock::nanos`] (for the hot path,
/// which then works in plain `u64` nanoseconds after the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    instant: Instant,
    nanos: u64,
}

impl Origin {
    /// Now on `clock`.
    pub(crate) fn now<C: Clock + ?Sized>(clock: &C) -> Self {
        Self {
            instant: clock.now(),
            nanos: clock.nanos(),
        }
    }

    /// The origin as an instant.
    #[inline]
    pub(crate) fn instant(&self) -> Instant {
        self.instant
    }

    /// Nanoseconds from the origin to now on `clock`.
    #[inline]
    pub(crate) fn elapsed<C: Clock + ?Sized>(&self, clock: &C) -> u64 {
        clock.nanos().saturating_sub(self.nanos)
    }

    /// The instant `ns` nanoseconds after the origin.
    #[inline]
    pub(crate) fn instant_at(&self, ns: u64) -> Instant {
        self.instant + Duration::from_nanos(ns)
    }
}

/// The system's clocks: `Instant::now()` and `SystemTime::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn park_until(&self, deadline: Option<Instant>) {
        park_until_on(self, deadline);
    }
}

/// The CPU's time-stamp counter through [`quanta`](https://docs.rs/quanta):
/// the same monotonic time as [`MonotonicClock`] at about half the cost of
/// a read (no `clock_gettime`), the clock governor reads by default. The
/// default of the rate, keyed and leaky limiters and of the group batcher,
/// which read the clock on every call.
///
/// Calibrated against the OS clock once per process (on the first
/// `QuantaClock::new`); where no usable counter exists, quanta reads the OS
/// clock instead. [`now`](Clock::now) is the instant of construction plus
/// the counter's elapsed nanoseconds, so it and [`nanos`](Clock::nanos) are
/// one time line; against `Instant::now()` it may drift by the
/// calibration's error (parts per million), which is why components
/// compare only instants from the clock they were given. Reads on
/// different cores are ordered as far as the CPUs' invariant counters are
/// synchronized (quanta uses the counter only where it is invariant); a
/// read a hair behind the start is 0, never a wrapped value, and every
/// component here tolerates a read slightly behind another thread's (a
/// limiter's check only gets stricter).
///
/// ```
/// use sheaf::clock::{Clock, QuantaClock};
///
/// let clock = QuantaClock::new();
/// let start = clock.nanos();
/// let work: u64 = (1..=1_000u64).sum();
/// let took_ns = clock.nanos().saturating_sub(start);
/// println!("{work} in {took_ns} ns");
/// ```
#[derive(Clone, Debug)]
pub struct QuantaClock {
    counter: quanta::Clock,
    start: Instant,
    start_raw: u64,
}

impl QuantaClock {
    /// A clock reading the time-stamp counter. The first call in a
    /// process calibrates the counter against the OS clock (quanta spins
    /// for 0.5 ms up to 200 ms, until the estimate is stable); later calls
    /// reuse that calibration.
    pub fn new() -> Self {
        let counter = quanta::Clock::new();
        let start_raw = counter.raw();
        Self {
            counter,
            start: Instant::now(),
            start_raw,
        }
    }

    /// The instant `nanos` (a value of [`Clock::nanos`]) stands for.
    #[inline]
    fn at(&self, nanos: u64) -> Instant {
        self.start + Duration::from_nanos(nanos)
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> Instant {
        self.at(self.nanos())
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn park_until(&self, deadline: Option<Instant>) {
        park_until_on(self, deadline);
    }

    #[inline]
    fn nanos(&self) -> u64 {
        // `delta_as_nanos` is 0 for a read behind the start (a counter a
        // hair behind on another core), never a wrapped huge value.
        self.counter
            .delta_as_nanos(self.start_raw, self.counter.raw())
    }
}

/// A clock that moves only when told to, for exact tests.
///
/// Clones share one time line. Threads parked in
/// [`park_until`](Clock::park_until) are woken on every
/// [`advance`](Self::advance) or [`set`](Self::set), so a component's
/// background thread sees each step of the test.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sheaf::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.wall(), UNIX_EPOCH + Duration::from_secs(1_700_000_060));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    origin: Instant,
    wall_origin: SystemTime,
    /// Nanoseconds since `origin`.
    elapsed: AtomicU64,
    parked: Mutex<Vec<Thread>>,
}

impl ManualClock {
    /// A manual clock whose wall time starts at the real wall time now.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A manual clock whose wall time starts at `wall`.
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            inner: Arc::new(ManualInner {
                origin: Instant::now(),
                wall_origin: wall,
                elapsed: AtomicU64::new(0),
                parked: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves time forward by `by` (saturating at about 584 years) and
    /// wakes every thread parked on this clock.
    pub fn advance(&self, by: Duration) {
        let by = saturating_nanos(by);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .inner
            .elapsed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| {
                Some(e.saturating_add(by))
            });
        self.wake();
    }

    /// Sets the time to `elapsed` after the clock's start, if that is not
    /// earlier than now (the clock never goes back), and wakes parked threads.
    pub fn set(&self, elapsed: Duration) {
        let to = saturating_nanos(elapsed);
        self.inner.elapsed.fetch_max(to, Ordering::AcqRel);
        self.wake();
    }

    /// Time since the clock's start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.elapsed.load(Ordering::Acquire))
    }

    /// The instant the clock started at (its `now()` before any advance).
    pub fn origin(&self) -> Instant {
        self.inner.origin
    }

    fn wake(&self) {
        let parked = std::mem::take(&mut *self.inner.parked.lock());
        for thread in parked {
            thread.unpark();
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.origin + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.inner.wall_origin + self.elapsed()
    }

    fn nanos(&self) -> u64 {
        self.inner.elapsed.load(Ordering::Acquire)
    }

    fn park_until(&self, deadline: Option<Instant>) {
        // Register before the re-check, so an advance between the two still
        // unparks this thread (the parked list's lock orders them).
        {
            let me = thread::current();
            let mut parked = self.inner.parked.lock();
            if !parked.iter().any(|t| t.id() == me.id()) {
                parked.push(me);
            }
        }
        if deadline.is_some_and(|d| self.now() >= d) {
            return;
        }
        thread::park();
    }
}

/// `now + timeout`, or `None` ("forever") when that is not representable.
#[inline]
pub fn deadline_after(now: Instant, timeout: Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

/// A shared handle to the clock a component was built with. Always std's
/// `Arc` (loom's cannot hold a `dyn` value); the clock is configuration,
/// not a concurrency path the models explore.
#[allow(dead_code)]
pub(crate) type SharedClock = std::sync::Arc<dyn Clock>;

/// The default clock, shared.
#[allow(dead_code)]
pub(crate) fn monotonic() -> SharedClock {
    std::sync::Arc::new(MonotonicClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now() - t0, Duration::from_millis(5));
        clock.set(Duration::from_millis(3)); // never backwards
        assert_eq!(clock.elapsed(), Duration::from_millis(5));
        clock.set(Duration::from_millis(9));
        assert_eq!(clock.elapsed(), Duration::from_millis(9));
        clock.advance(Duration::MAX); // saturates, no panic
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn wall_time_follows_the_monotonic_time() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
        let clock = ManualClock::starting_at(start);
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(clock.wall(), start + Duration::from_secs(3_600));
    }

    #[test]
    fn advance_wakes_a_parked_thread() {
        let clock = ManualClock::new();
        let deadline = clock.now() + Duration::from_secs(10);
        let waiter = {
            let clock = clock.clone();
            std::thread::spawn(move || {
                while clock.now() < deadline {
                    clock.park_until(Some(deadline));
                }
                clock.now()
            })
        };
        // However the threads interleave, the waiter returns only once the
        // deadline has passed on the manual clock.
        for _ in 0..10 {
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(waiter.join().unwrap(), deadline);
    }

    #[test]
    fn nanos_is_the_same_time_line_as_now() {
        let clock = ManualClock::new();
        let origin = Origin::now(&clock);
        clock.advance(Duration::from_nanos(1_234_567));
        assert_eq!(clock.nanos(), 1_234_567);
        assert_eq!(origin.elapsed(&clock), 1_234_567);
        assert_eq!(origin.instant_at(1_234_567), clock.now());
        assert_eq!(origin.instant(), clock.origin());
    }

    /// A clock stopped at one instant: the trait's default `nanos` over it.
    #[derive(Debug)]
    struct Stopped(Instant);

    impl Clock for Stopped {
        fn now(&self) -> Instant {
            self.0
        }
        fn wall(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
        fn park_until(&self, _: Option<Instant>) {}
    }

    #[test]
    fn default_nanos_counts_from_one_anchor() {
        assert_eq!(anchor(), anchor());
        let later = anchor() + Duration::new(3, 7);
        assert_eq!(Stopped(later).nanos(), 3_000_000_007);
        assert_eq!(Stopped(anchor()).nanos(), 0);
        // Before the anchor: saturates at 0, never wraps.
        if let Some(before) = anchor().checked_sub(Duration::from_secs(1)) {
            assert_eq!(Stopped(before).nanos(), 0);
        }
        let origin = Origin::now(&Stopped(later));
        assert_eq!(origin.instant(), later);
        assert_eq!(origin.elapsed(&Stopped(later + Duration::from_nanos(5))), 5);
    }

    #[test]
    fn durations_become_nanoseconds_saturating() {
        assert_eq!(saturating_nanos(Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(saturating_nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(saturating_nanos(Duration::MAX), u64::MAX);
        assert_eq!(saturating_nanos(Duration::ZERO), 0);
    }

    #[test]
    fn quanta_clock_is_its_start_plus_its_nanos() {
        let clock = QuantaClock::new();
        assert_eq!(clock.at(0), clock.start);
        assert_eq!(
            clock.at(1_234_567),
            clock.start + Duration::from_nanos(1_234_567)
        );
        // Clones share the start, so they are one time line.
        let copy = clock.clone();
        assert_eq!((copy.start, copy.start_raw), (clock.start, clock.start_raw));
    }

    #[test]
    fn unrepresentable_deadline_means_forever() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Duration::MAX), None);
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            Some(now + Duration::from_secs(1))
        );
    }
}
