//! Deadlines for many live items: a hierarchical timer [`Wheel`] with
//! 100 µs ticks ([`RESOLUTION`]), and a [`Timer`] that drives one from a [`Clock`] on
//! its own thread.
//!
//! - [`Wheel<T>`]: the engine, single-threaded. `insert`, `cancel` and
//!   `reschedule` in O(1); `advance(now)` costs O(entries due + 6). Six
//!   levels of 64 slots cover about 79 days of ticks; later deadlines wait
//!   at the top. Components that already hold a lock (the
//!   group batcher) keep a wheel per shard under it.
//! - [`Timer<T>`]: a wheel behind a lock and a driver thread that calls
//!   `on_fire(value)` when a deadline passes. The driver never polls: it
//!   parks with [`Clock::park_until`] until the next slot with work, and an
//!   insert that is due earlier than that wakes it.
//!
//! # Moving deadlines cost a store
//!
//! A deadline that only moves later (a grace period reset by every new
//! item, an idle timeout) should not pay an unlink and re-link per move.
//! Keep the new deadline beside the entry and let the old one fire: when it
//! does, the wheel asks the entry and re-arms it, under the same key, if its
//! deadline moved ([`Wheel::advance`]'s callback returns `Some`). With a
//! [`Timer`], [`insert_movable`](Timer::insert_movable) returns a
//! [`MovableDeadline`] whose [`postpone`](MovableDeadline::postpone) is one
//! atomic `fetch_max`.
//!
//! # Example
//!
//! ```
//! use std::sync::{mpsc, Arc};
//! use std::time::Duration;
//! use sheaf::clock::{Clock, ManualClock};
//! use sheaf::timer::Timer;
//!
//! let clock = ManualClock::new();
//! let (fired, fires) = mpsc::channel();
//! let timer = Timer::start(Arc::new(clock.clone()), move |name: &str| {
//!     fired.send(name).unwrap();
//! })?;
//! let start = clock.now();
//! timer.insert(start + Duration::from_millis(10), "ten").unwrap();
//! let (_, idle) = timer
//!     .insert_movable(start + Duration::from_millis(20), "idle")
//!     .unwrap();
//! let cancelled = timer.insert(start + Duration::from_millis(5), "never").unwrap();
//! assert_eq!(timer.cancel(cancelled), Some("never"));
//!
//! clock.advance(Duration::from_millis(9));
//! timer.settle(); // the driver has seen t = 9 ms: nothing is due yet
//! assert!(fires.try_recv().is_err());
//!
//! clock.advance(Duration::from_millis(1));
//! assert_eq!(fires.recv().unwrap(), "ten"); // at exactly 10 ms
//!
//! idle.postpone(start + Duration::from_millis(30)); // a store
//! clock.advance(Duration::from_millis(10)); // 20 ms: re-armed, not fired
//! timer.settle();
//! assert!(fires.try_recv().is_err());
//! clock.advance(Duration::from_millis(10));
//! assert_eq!(fires.recv().unwrap(), "idle");
//!
//! assert!(timer.shutdown().is_empty()); // nothing left pending
//! # Ok::<(), sheaf::ConfigError>(())
//! ```

mod alarm;
#[cfg(test)]
mod tests;
mod wheel;

use std::fmt;
use std::time::{Duration, Instant};

pub(crate) use alarm::Alarm;
pub use wheel::{TimerKey, Wheel};

use crate::clock::{Clock, SharedClock};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{thread, Arc, Mutex};
use crate::ConfigError;

/// A point in time as whole ticks of [`RESOLUTION`] since an origin instant.
pub type Tick = u64;

/// The length of one [`Tick`]: 100 µs. Rounding a deadline up to its tick
/// is part of every entry's lateness, so the tick is well below the
/// millisecond that schedulers promise; a finer one only adds wake-ups.
pub const RESOLUTION: Duration = Duration::from_micros(100);

/// [`RESOLUTION`] in nanoseconds, for components that keep time as `u64`
/// nanoseconds.
pub(crate) const TICK_NANOS: u64 = 100_000;

const _: () = assert!(RESOLUTION.as_nanos() == TICK_NANOS as u128);

/// The tick of a deadline, rounded up, so an entry due at it never fires
/// before `deadline`. Deadlines before `origin` are tick 0.
#[inline]
pub fn deadline_tick(origin: Instant, deadline: Instant) -> Tick {
    let since = deadline.saturating_duration_since(origin).as_nanos();
    u64::try_from(since.div_ceil(u128::from(TICK_NANOS))).unwrap_or(u64::MAX)
}

/// The tick `now` lies in, rounded down.
#[inline]
pub fn now_tick(origin: Instant, now: Instant) -> Tick {
    let since = now.saturating_duration_since(origin).as_nanos();
    u64::try_from(since / u128::from(TICK_NANOS)).unwrap_or(u64::MAX)
}

/// The instant a tick starts at; `None` when not representable.
#[inline]
pub fn tick_instant(origin: Instant, tick: Tick) -> Option<Instant> {
    origin.checked_add(Duration::from_nanos(tick.checked_mul(TICK_NANOS)?))
}

/// A deadline that can be moved later with one store; see
/// [`Timer::insert_movable`].
#[derive(Clone)]
pub struct MovableDeadline {
    tick: Arc<AtomicU64>,
    origin: Instant,
}

impl MovableDeadline {
    /// Moves the deadline to `to` if that is later than it is now (a
    /// deadline never moves earlier this way: use [`Timer::reschedule`]).
    #[inline]
    pub fn postpone(&self, to: Instant) {
        self.tick
            .fetch_max(deadline_tick(self.origin, to), Ordering::Relaxed);
    }

    /// The current deadline (rounded up to the tick).
    pub fn get(&self) -> Instant {
        tick_instant(self.origin, self.tick.load(Ordering::Relaxed)).unwrap_or(self.origin)
    }
}

impl fmt::Debug for MovableDeadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MovableDeadline")
            .field("tick", &self.tick.load(Ordering::Relaxed))
            .finish()
    }
}

struct Armed<T> {
    value: T,
    moved: Option<Arc<AtomicU64>>,
}

struct Shared<T> {
    clock: SharedClock,
    origin: Instant,
    wheel: Mutex<Wheel<Armed<T>>>,
    alarm: Alarm,
    fired: AtomicU64,
    panics: AtomicU64,
    last_panic: Mutex<Option<String>>,
}

/// A [`Wheel`] driven by its own thread: `on_fire(value)` runs on that
/// thread once the value's deadline has passed on the clock. See the
/// [module docs](self).
///
/// `on_fire` runs outside the wheel's lock, so it may insert, cancel or
/// reschedule; a panic in it is caught and counted
/// ([`panics`](Self::panics)) and the timer goes on.
pub struct Timer<T> {
    shared: Arc<Shared<T>>,
    driver: Mutex<Option<thread::JoinHandle<()>>>,
}

impl<T> fmt::Debug for Timer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("pending", &self.len())
            .field("fired", &self.fired())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Timer<T> {
    /// Starts the driver thread.
    ///
    /// # Errors
    /// [`ConfigError`] (setting `"thread"`) when the OS refuses the thread.
    pub fn start(
        clock: std::sync::Arc<dyn Clock>,
        on_fire: impl FnMut(T) + Send + 'static,
    ) -> Result<Self, ConfigError> {
        let origin = clock.now();
        let shared = Arc::new(Shared {
            clock,
            origin,
            wheel: Mutex::new(Wheel::new()),
            alarm: Alarm::new(),
            fired: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            last_panic: Mutex::new(None),
        });
        let driver = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("sheaf-timer".into())
                .spawn(move || drive(&shared, on_fire))
                .map_err(|e| {
                    ConfigError::new("thread", format!("cannot start the timer thread: {e}"))
                })?
        };
        Ok(Self {
            shared,
            driver: Mutex::new(Some(driver)),
        })
    }
}

impl<T> Timer<T> {
    /// Arms `value` to fire at `deadline` (at the first tick at or after it).
    ///
    /// # Errors
    /// The value comes back after [`shutdown`](Self::shutdown).
    pub fn insert(&self, deadline: Instant, value: T) -> Result<TimerKey, T> {
        self.insert_armed(deadline, Armed { value, moved: None })
            .map_err(|armed| armed.value)
    }

    /// Like [`insert`](Self::insert), with a handle that moves the
    /// deadline later by a store: when the original deadline comes the
    /// driver re-arms the entry (same key) at the moved one.
    ///
    /// # Errors
    /// The value comes back after [`shutdown`](Self::shutdown).
    pub fn insert_movable(
        &self,
        deadline: Instant,
        value: T,
    ) -> Result<(TimerKey, MovableDeadline), T> {
        let tick = Arc::new(AtomicU64::new(deadline_tick(self.shared.origin, deadline)));
        let armed = Armed {
            value,
            moved: Some(Arc::clone(&tick)),
        };
        let key = self
            .insert_armed(deadline, armed)
            .map_err(|armed| armed.value)?;
        Ok((
            key,
            MovableDeadline {
                tick,
                origin: self.shared.origin,
            },
        ))
    }

    fn insert_armed(&self, deadline: Instant, armed: Armed<T>) -> Result<TimerKey, Armed<T>> {
        let shared = &*self.shared;
        let tick = deadline_tick(shared.origin, deadline);
        let key = {
            let mut wheel = shared.wheel.lock();
            // Checked under the lock: shutdown drains the wheel under it.
            if shared.alarm.is_closed() {
                return Err(armed);
            }
            wheel.insert(tick, armed)
        };
        shared.alarm.request(tick);
        Ok(key)
    }

    /// Disarms a pending entry and returns its value; `None` once it fired
    /// (or is firing) or was cancelled.
    pub fn cancel(&self, key: TimerKey) -> Option<T> {
        self.shared
            .wheel
            .lock()
            .cancel(key)
            .map(|armed| armed.value)
    }

    /// Moves a pending entry to `deadline`, earlier or later; `false` if
    /// it already fired or was cancelled.
    pub fn reschedule(&self, key: TimerKey, deadline: Instant) -> bool {
        let tick = deadline_tick(self.shared.origin, deadline);
        let moved = {
            let mut wheel = self.shared.wheel.lock();
            if let Some(armed) = wheel.get_mut(key) {
                if let Some(moved) = &armed.moved {
                    moved.store(tick, Ordering::Relaxed);
                }
            }
            wheel.reschedule(key, tick)
        };
        if moved {
            self.shared.alarm.request(tick);
        }
        moved
    }

    /// Entries armed and not yet fired or cancelled.
    pub fn len(&self) -> usize {
        self.shared.wheel.lock().len()
    }

    /// `true` when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries fired so far (`on_fire` called, whether or not it panicked).
    pub fn fired(&self) -> u64 {
        self.shared.fired.load(Ordering::Relaxed)
    }

    /// Panics caught in `on_fire`.
    pub fn panics(&self) -> u64 {
        self.shared.panics.load(Ordering::Relaxed)
    }

    /// The message of the last panic caught in `on_fire`.
    pub fn last_panic(&self) -> Option<String> {
        self.shared.last_panic.lock().clone()
    }

    /// Blocks until the driver has run a pass that began after this call:
    /// everything due at the clock's current time (and inserted before the
    /// call) has fired and `on_fire` has returned. For tests that drive a
    /// [`ManualClock`](crate::clock::ManualClock). Returns at once after
    /// shutdown.
    pub fn settle(&self) {
        self.shared.alarm.settle();
    }

    /// Stops the driver and returns the values that had not fired, in
    /// deadline order. Later inserts hand their value back. Idempotent: a
    /// second call returns nothing.
    pub fn shutdown(&self) -> Vec<T> {
        self.shared.alarm.close();
        if let Some(driver) = self.driver.lock().take() {
            // The driver catches panics in `on_fire`; a join error cannot
            // carry anything to hand back.
            let _ = driver.join();
        }
        let pending = self.shared.wheel.lock().drain();
        pending.into_iter().map(|(_, armed)| armed.value).collect()
    }
}

impl<T> Drop for Timer<T> {
    fn drop(&mut self) {
        self.shared.alarm.close();
        if let Some(driver) = self.driver.lock().take() {
            let _ = driver.join();
        }
    }
}

fn drive<T>(shared: &Shared<T>, mut on_fire: impl FnMut(T)) {
    shared.alarm.register_driver();
    let mut due = Vec::new();
    loop {
        let pass = shared.alarm.begin_pass();
        if shared.alarm.is_closed() {
            shared.alarm.end_pass(pass);
            return;
        }
        let now = now_tick(shared.origin, shared.clock.now());
        let next = {
            let mut wheel = shared.wheel.lock();
            wheel.advance(now, |_, armed| {
                // The lazy re-check: a deadline that moved re-arms in place.
                let moved = armed
                    .moved
                    .as_ref()
                    .map_or(0, |m| m.load(Ordering::Relaxed));
                if moved > now {
                    return Some((moved, armed));
                }
                due.push(armed.value);
                None
            });
            wheel.next_due()
        };
        for value in due.drain(..) {
            shared.fired.fetch_add(1, Ordering::Relaxed);
            if let Err(message) = crate::unwind::catch(|| on_fire(value)) {
                shared.panics.fetch_add(1, Ordering::Relaxed);
                *shared.last_panic.lock() = Some(message);
            }
        }
        shared.alarm.end_pass(pass);
        let wake = shared.alarm.arm(next);
        shared
            .clock
            .park_until(wake.and_then(|tick| tick_instant(shared.origin, tick)));
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Timer<String>>();
    assert_send_sync::<Wheel<String>>();
    assert_send_sync::<MovableDeadline>();
    // A key fits in a word even as an `Option` (components store one per item).
    assert!(std::mem::size_of::<Option<TimerKey>>() == 8);
};
