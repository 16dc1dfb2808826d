//! The pure part of the scheduler: when a job runs next, how many runs a
//! late firing makes, backoff delays, and time windows. No locks, no
//! threads: the engine in `mod.rs` calls these with times it read from its
//! clock, and the tests and the fuzz target call them directly.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use croner::parser::CronParser;
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::saturating_nanos;
use crate::ConfigError;

pub use jiff::civil::Weekday;

/// What a repeating job does when a firing comes so late that later
/// occurrences have also passed (the process was stopped, the machine
/// slept, the pool was saturated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misfire {
    /// Run none of the overdue occurrences; wait for the next one.
    Skip,
    /// Run once for all of them (the default).
    #[default]
    RunOnce,
    /// Run one per overdue occurrence, at most this many, back to back.
    CatchUp(u32),
}

/// How a job's firing times are computed.
#[derive(Clone)]
pub(crate) enum Cadence {
    /// Once, at the instant.
    Once(Instant),
    /// At `start`, `start + period`, `start + 2 period` ... (fixed rate: a
    /// late run never shifts the grid).
    Every { start: Instant, period: Duration },
    /// At the cron pattern's instants in a time zone.
    Cron(Box<CronCadence>),
}

#[derive(Clone)]
pub(crate) struct CronCadence {
    pub(crate) cron: Cron,
    pub(crate) zone: TimeZone,
    pub(crate) pattern: String,
}

impl fmt::Debug for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Once(at) => f.debug_tuple("Once").field(at).finish(),
            Cadence::Every { start, period } => f
                .debug_struct("Every")
                .field("start", start)
                .field("period", period)
                .finish(),
            Cadence::Cron(c) => c.fmt(f),
        }
    }
}

impl fmt::Debug for CronCadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cron")
            .field("pattern", &self.pattern)
            .field("zone", &self.zone.iana_name())
            .finish()
    }
}

/// Parses a cron pattern (5 fields, or 6 with seconds first) in the IANA
/// time zone `zone` ("UTC", "Europe/Berlin" ...).
pub(crate) fn parse_cron(pattern: &str, zone: &str) -> Result<CronCadence, ConfigError> {
    let cron = CronParser::new().parse(pattern).map_err(|e| {
        ConfigError::new(
            "cron",
            format!(
                "`{pattern}` is not a cron pattern ({e}); give 5 fields, or 6 with seconds first"
            ),
        )
    })?;
    let zone = TimeZone::get(zone).map_err(|e| {
        ConfigError::new(
            "tz",
            format!("`{zone}` is not a known time zone ({e}); give an IANA name such as \"Europe/Berlin\" or \"UTC\""),
        )
    })?;
    Ok(CronCadence {
        cron,
        zone,
        pattern: pattern.to_owned(),
    })
}

/// Wall time and monotonic time read at the same moment, to turn calendar
/// instants into clock instants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) instant: Instant,
    pub(crate) wall: SystemTime,
}

impl Now {
    /// The monotonic instant of a wall time (`None` if it lies too far away
    /// to represent).
    pub(crate) fn instant_of(&self, wall: SystemTime) -> Option<Instant> {
        match wall.duration_since(self.wall) {
            Ok(ahead) => self.instant.checked_add(ahead),
            Err(behind) => self.instant.checked_sub(behind.duration()),
        }
    }

    pub(crate) fn wall_of(&self, instant: Instant) -> Option<SystemTime> {
        if instant >= self.instant {
            self.wall.checked_add(instant - self.instant)
        } else {
            self.wall.checked_sub(self.instant - instant)
        }
    }
}

impl CronCadence {
    /// The first cron instant strictly after `after` (wall time).
    pub(crate) fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let ts = Timestamp::try_from(after).ok()?;
        let zoned = ts.to_zoned(self.zone.clone());
        let next: Zoned = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(SystemTime::from(next.timestamp()))
    }
}

/// What one firing of a job comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Runs to start now.
    pub(crate) runs: u32,
    /// Overdue occurrences not run.
    pub(crate) missed: u64,
    /// The next firing, if any.
    pub(crate) next: Option<Instant>,
}

/// Most overdue cron occurrences counted one by one; beyond it they are
/// counted as this many (a machine asleep for years).
const MAX_COUNTED: u64 = 100_000;

/// Plans the firing due at `scheduled`, happening at `now`.
pub(crate) fn plan(cadence: &Cadence, misfire: Misfire, scheduled: Instant, now: Now) -> Plan {
    match cadence {
        Cadence::Once(_) => Plan {
            runs: 1,
            missed: 0,
            next: None,
        },
        Cadence::Every { period, .. } => {
            let late = now.instant.saturating_duration_since(scheduled);
            // Later occurrences that have passed too.
            let extra = u64::try_from(late.as_nanos() / period.as_nanos()).unwrap_or(u64::MAX);
            let next = u32::try_from(extra + 1)
                .ok()
                .and_then(|k| period.checked_mul(k))
                .and_then(|d| scheduled.checked_add(d));
            apply(misfire, extra, next)
        }
        Cadence::Cron(cron) => {
            let Some(wall) = now.wall_of(scheduled) else {
                return Plan {
                    runs: 1,
                    missed: 0,
                    next: None,
                };
            };
            let mut extra = 0u64;
            let mut next = cron.next_after(wall);
            while let Some(at) = next.and_then(|w| now.instant_of(w)) {
                if at > now.instant || extra >= MAX_COUNTED {
                    break;
                }
                extra += 1;
                next = cron.next_after(next.expect("checked"));
            }
            if extra >= MAX_COUNTED {
                next = cron.next_after(now.wall);
            }
            apply(misfire, extra, next.and_then(|w| now.instant_of(w)))
        }
    }
}

fn apply(misfire: Misfire, extra: u64, next: Option<Instant>) -> Plan {
    if extra == 0 {
        return Plan {
            runs: 1,
            missed: 0,
            next,
        };
    }
    let overdue = extra + 1;
    let runs = match misfire {
        Misfire::Skip => 0,
        Misfire::RunOnce => 1,
        Misfire::CatchUp(max) => u32::try_from(overdue.min(u64::from(max))).unwrap_or(max),
    };
    Plan {
        runs,
        missed: overdue - u64::from(runs),
        next,
    }
}

/// The first firing of a job created at `now`.
pub(crate) fn first(cadence: &Cadence, now: Now) -> Option<Instant> {
    match cadence {
        Cadence::Once(at) => Some(*at),
        Cadence::Every { start, .. } => Some(*start),
        Cadence::Cron(cron) => cron.next_after(now.wall).and_then(|w| now.instant_of(w)),
    }
}

/// The first firing at or after `now` of a resumed job whose next firing
/// was `scheduled` (occurrences while paused are not run).
pub(crate) fn resumed(cadence: &Cadence, scheduled: Instant, now: Now) -> Option<Instant> {
    if scheduled >= now.instant {
        return Some(scheduled);
    }
    match cadence {
        Cadence::Once(_) => Some(now.instant),
        Cadence::Every { period, .. } => {
            let late = now.instant - scheduled;
            let k = late.as_nanos().div_ceil(period.as_nanos());
            u32::try_from(k)
                .ok()
                .and_then(|k| period.checked_mul(k))
                .and_then(|d| scheduled.checked_add(d))
        }
        Cadence::Cron(cron) => {
            let just_before = now.wall.checked_sub(Duration::from_nanos(1))?;
            cron.next_after(just_before).and_then(|w| now.instant_of(w))
        }
    }
}

/// Spreading of retry delays, so many failing jobs do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// The plain exponential delay.
    None,
    /// Uniform in `[0, delay]` (the default).
    #[default]
    Full,
    /// `delay / 2` plus uniform in `[0, delay / 2]`.
    Equal,
    /// Uniform in `[initial, 3 × previous delay]`, capped at `max`.
    Decorrelated,
}

/// Retries for a job that returns `Err`: the `n`-th retry (from 0) waits
/// `min(max, initial × multiplierⁿ)`, spread by the [`Jitter`], after the
/// failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Growth per retry (at least 1).
    pub multiplier: f64,
    /// Retries after the first failure; 0 means none.
    pub max_retries: u32,
    /// How delays are spread.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// 100 ms doubling to 30 s, 5 retries, full jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_retries: 5,
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(ConfigError::new(
                "multiplier",
                format!(
                    "{} would shrink or break the delays; give a finite value >= 1.0",
                    self.multiplier
                ),
            ));
        }
        if self.initial > self.max {
            return Err(ConfigError::new(
                "initial",
                "the first delay exceeds `max`; lower `initial` or raise `max`",
            ));
        }
        Ok(())
    }

    /// The retry delays a job with this RNG `seed` waits, in order (the
    /// sequence the scheduler uses for it: see
    /// [`Scheduler::job_seed`](super::Scheduler::job_seed)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sheaf::schedule::{Backoff, Jitter};
    ///
    /// let backoff = Backoff {
    ///     initial: Duration::from_millis(100),
    ///     max: Duration::from_secs(1),
    ///     multiplier: 2.0,
    ///     max_retries: 5,
    ///     jitter: Jitter::None,
    /// };
    /// let ms: Vec<u128> = backoff.delays(0).map(|d| d.as_millis()).collect();
    /// assert_eq!(ms, [100, 200, 400, 800, 1000]);
    /// ```
    pub fn delays(&self, seed: u64) -> impl Iterator<Item = Duration> + '_ {
        let mut state = BackoffState::new(seed);
        (0..self.max_retries).map(move |n| state.delay(self, n))
    }
}

/// A job's retry RNG and last delay.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    rng: SmallRng,
    previous: Option<Duration>,
}

impl BackoffState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            previous: None,
        }
    }

    /// The delay before retry `n` (from 0).
    pub(crate) fn delay(&mut self, backoff: &Backoff, n: u32) -> Duration {
        let exponential = backoff.initial.as_secs_f64()
            * backoff
                .multiplier
                .powi(i32::try_from(n).unwrap_or(i32::MAX));
        let base = if exponential.is_finite() && exponential < backoff.max.as_secs_f64() {
            Duration::from_secs_f64(exponential)
        } else {
            backoff.max
        };
        let delay = match backoff.jitter {
            Jitter::None => base,
            Jitter::Full => self.uniform(Duration::ZERO, base),
            Jitter::Equal => base / 2 + self.uniform(Duration::ZERO, base - base / 2),
            Jitter::Decorrelated => {
                let previous = self.previous.unwrap_or(backoff.initial);
                let high = previous
                    .saturating_mul(3)
                    .min(backoff.max)
                    .max(backoff.initial);
                self.uniform(backoff.initial, high)
            }
        };
        // Whole milliseconds: exact in tests, and a multiple of the timer's tick.
        let delay = Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self.previous = Some(delay);
        delay
    }

    fn uniform(&mut self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (saturating_nanos(low), saturating_nanos(high));
        if high <= low {
            return Duration::from_nanos(low);
        }
        Duration::from_nanos(self.rng.random_range(low..=high))
    }
}

/// When runs may happen: days of the week and time-of-day ranges in a time
/// zone. A firing outside is skipped and counted (`skipped_window`).
///
/// ```
/// use sheaf::schedule::{Weekday, Window};
///
/// // Weekdays 09:00-17:30 and 22:00-02:00 (over midnight), Berlin time.
/// let window = Window::in_zone("Europe/Berlin")?
///     .days(&[Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday, Weekday::Thursday, Weekday::Friday])
///     .between((9, 0), (17, 30))?
///     .between((22, 0), (2, 0))?;
/// # let _ = window;
/// # Ok::<(), sheaf::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Window {
    zone: TimeZone,
    /// Bit `d` for `Weekday::to_monday_zero_offset() == d`.
    days: u8,
    /// Seconds of the day, `[start, end)`; `end <= start` wraps past midnight.
    ranges: Vec<(u32, u32)>,
}

impl Window {
    /// An all-days, all-day window in the IANA time zone `zone`; narrow it
    /// with [`days`](Self::days) and [`between`](Self::between).
    ///
    /// # Errors
    /// [`ConfigError`] for an unknown zone.
    pub fn in_zone(zone: &str) -> Result<Self, ConfigError> {
        let zone = TimeZone::get(zone).map_err(|e| {
            ConfigError::new(
                "tz",
                format!(
                    "`{zone}` is not a known time zone ({e}); give an IANA name such as \"UTC\""
                ),
            )
        })?;
        Ok(Self {
            zone,
            days: 0x7f,
            ranges: Vec::new(),
        })
    }

    /// Only these days of the week (the local day of the run).
    pub fn days(mut self, days: &[Weekday]) -> Self {
        self.days = days
            .iter()
            .fold(0, |bits, d| bits | 1 << d.to_monday_zero_offset());
        self
    }

    /// Adds the local time-of-day range `[start, end)` as (hour, minute);
    /// `end` before `start` wraps past midnight. With no range, all day.
    ///
    /// # Errors
    /// [`ConfigError`] for an hour over 23 or a minute over 59, or an empty range.
    pub fn between(mut self, start: (u8, u8), end: (u8, u8)) -> Result<Self, ConfigError> {
        let secs = |(h, m): (u8, u8)| -> Result<u32, ConfigError> {
            if h > 23 || m > 59 {
                return Err(ConfigError::new(
                    "between",
                    format!("{h:02}:{m:02} is not a time of day; give hours 0-23 and minutes 0-59"),
                ));
            }
            Ok(u32::from(h) * 3600 + u32::from(m) * 60)
        };
        let (start, end) = (secs(start)?, secs(end)?);
        if start == end {
            return Err(ConfigError::new(
                "between",
                "the range is empty (start == end); give different times",
            ));
        }
        self.ranges.push((start, end));
        Ok(self)
    }

    /// `true` if a run at wall time `at` falls inside the window.
    pub fn contains(&self, at: SystemTime) -> bool {
        let Ok(ts) = Timestamp::try_from(at) else {
            return false;
        };
        let local = ts.to_zoned(self.zone.clone());
        if self.days & (1 << local.weekday().to_monday_zero_offset()) == 0 {
            return false;
        }
        if self.ranges.is_empty() {
            return true;
        }
        let second = u32::from(local.hour().unsigned_abs()) * 3600
            + u32::from(local.minute().unsigned_abs()) * 60
            + u32::from(local.second().unsigned_abs());
        self.ranges.iter().any(|&(start, end)| {
            if start < end {
                (start..end).contains(&second)
            } else {
                second >= start || second < end
            }
        })
    }
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window")
            .field("zone", &self.zone.iana_name())
            .field("days", &format_args!("{:07b}", self.days))
            .field("ranges", &self.ranges)
            .finish()
    }
}
