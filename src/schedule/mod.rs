//! A scheduler that runs jobs on a [`WorkerPool`], timed by the
//! [timer wheel](crate::timer): one-shot ([`When::at`], [`When::after`]),
//! fixed-rate ([`When::every`], with a [`Misfire`] policy), cron patterns
//! with seconds in a time zone ([`When::cron`]), retries with exponential
//! [`Backoff`] and seeded [`Jitter`], and time [`Window`]s.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sheaf::clock::ManualClock;
//! use sheaf::schedule::{Scheduler, When};
//!
//! let clock = ManualClock::new();
//! let scheduler = Scheduler::builder().clock(Arc::new(clock.clone())).build()?;
//! let ticks = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&ticks);
//! let job = scheduler
//!     .schedule(When::every(Duration::from_secs(10)), move || {
//!         counter.fetch_add(1, Ordering::Relaxed);
//!     })
//!     .unwrap();
//! clock.advance(Duration::from_secs(30));
//! scheduler.settle(); // everything due at the manual clock's time has run
//! assert_eq!(ticks.load(Ordering::Relaxed), 1); // late by two periods: one run (Misfire::RunOnce)
//! assert!(scheduler.cancel(job));
//! let report = scheduler.shutdown(Duration::from_secs(1));
//! assert_eq!((report.runs, report.missed), (1, 2));
//! # Ok::<(), sheaf::ConfigError>(())
//! ```
//!
//! # Time
//!
//! Every time is read from the [`Clock`] given to the builder: monotonic
//! instants for `at`, `after`, `every` and retries, the clock's wall time
//! for cron patterns and windows. Firing times are exact to the timer's
//! 100 µs resolution (never early).
//!
//! # Daylight saving time (cron)
//!
//! Cron times are local times in the pattern's zone, resolved by `croner`
//! over `jiff`'s time zone database:
//! - a local time skipped by a spring-forward transition runs once, at the
//!   first valid instant after the gap (02:30 on a night that jumps from
//!   02:00 to 03:00 runs at 03:00);
//! - a local time repeated by a fall-back transition runs once, at its
//!   first (earlier) instant, for patterns with a fixed second, minute and
//!   hour. Patterns that repeat within the hour (`0 */5 * * * *`) keep their
//!   real-time cadence through the repeated hour: its instants are distinct
//!   moments, so each runs.
//!
//! # Misfires
//!
//! A fixed-rate job never drifts: its n-th firing is due at
//! `start + n × period` whatever the lateness of earlier runs, and the next
//! firing is always in the future (a late tick never stops a job, the
//! defect of tokio-cron-scheduler #113). When a firing comes so late that
//! later occurrences have passed too, the job's [`Misfire`] policy decides
//! how many runs it makes; the rest are counted in `missed`.

mod plan;
#[cfg(all(test, not(sheaf_loom)))]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::clock::{deadline_after, Clock, SharedClock};
use crate::hash::FastBuildHasher;
use crate::pool::{wait_on, ShutdownMode, WorkerPool};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::Mutex;
use crate::timer::{Timer, TimerKey};
use crate::wait::Waiters;
use crate::ConfigError;

pub use plan::{Backoff, Jitter, Misfire, Weekday, Window};
use plan::{BackoffState, Cadence, Now};

/// The identity of a scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job#{}", self.0)
    }
}

/// What a job returns: `()`, or a `Result` whose `Err` counts as a failure
/// (retried under [`When::with_retry`]).
pub trait JobResult {
    /// `Err(message)` for a failure.
    ///
    /// # Errors
    /// When the job failed.
    fn into_result(self) -> Result<(), String>;
}

impl JobResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<T, E: fmt::Display> JobResult for Result<T, E> {
    fn into_result(self) -> Result<(), String> {
        self.map(drop).map_err(|e| e.to_string())
    }
}

/// When a job runs, and how: built with [`at`](Self::at),
/// [`after`](Self::after), [`every`](Self::every) or [`cron`](Self::cron),
/// then refined with [`misfire`](Self::misfire),
/// [`with_retry`](Self::with_retry) and [`within`](Self::within).
#[derive(Debug, Clone)]
pub struct When {
    spec: Spec,
    misfire: Misfire,
    retry: Option<Backoff>,
    window: Option<Window>,
}

#[derive(Debug, Clone)]
enum Spec {
    At(Instant),
    After(Duration),
    Every {
        first: Option<Instant>,
        period: Duration,
    },
    Cron(Box<plan::CronCadence>),
}

impl When {
    fn new(spec: Spec) -> Self {
        Self {
            spec,
            misfire: Misfire::default(),
            retry: None,
            window: None,
        }
    }

    /// Once, at `instant` on the scheduler's clock (at once if it has passed).
    pub fn at(instant: Instant) -> Self {
        Self::new(Spec::At(instant))
    }

    /// Once, `delay` after it is scheduled.
    pub fn after(delay: Duration) -> Self {
        Self::new(Spec::After(delay))
    }

    /// Every `period` at a fixed rate, the first run one period after it is
    /// scheduled.
    pub fn every(period: Duration) -> Self {
        Self::new(Spec::Every {
            first: None,
            period,
        })
    }

    /// Every `period` at a fixed rate, the first run at `start`.
    pub fn every_from(start: Instant, period: Duration) -> Self {
        Self::new(Spec::Every {
            first: Some(start),
            period,
        })
    }

    /// At the instants of a cron `pattern` (5 fields, or 6 with seconds
    /// first: `"0 */5 * * * *"` is every five minutes on the minute) in the
    /// IANA time `zone`. See the [module docs](self) for DST.
    ///
    /// # Errors
    /// [`ConfigError`] for a pattern `croner` cannot parse or an unknown zone.
    pub fn cron(pattern: &str, zone: &str) -> Result<Self, ConfigError> {
        Ok(Self::new(Spec::Cron(Box::new(plan::parse_cron(
            pattern, zone,
        )?))))
    }

    /// What a late repeating job does (default [`Misfire::RunOnce`]).
    pub fn misfire(mut self, misfire: Misfire) -> Self {
        self.misfire = misfire;
        self
    }

    /// Retries a run that returned `Err` (or panicked) after the backoff's
    /// delays, up to its `max_retries`.
    pub fn with_retry(mut self, backoff: Backoff) -> Self {
        self.retry = Some(backoff);
        self
    }

    /// Runs only inside `window`; firings outside it are skipped and counted.
    pub fn within(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }
}

/// Why [`Scheduler::schedule`] refused a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The schedule is invalid; the message says what to change.
    Config(ConfigError),
    /// The scheduler is shut down.
    ShutDown,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Config(e) => e.fmt(f),
            ScheduleError::ShutDown => f.write_str("the scheduler is shut down"),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl From<ConfigError> for ScheduleError {
    fn from(e: ConfigError) -> Self {
        ScheduleError::Config(e)
    }
}

/// A job as [`Scheduler::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its next regular firing (`None` when paused or finished).
    pub next_run: Option<Instant>,
    /// `true` while paused.
    pub paused: bool,
    /// Runs finished (returned, failed or panicked), retries included.
    pub runs: u64,
    /// Runs that returned `Err` or panicked.
    pub failures: u64,
    /// Firings skipped outside the job's window.
    pub skipped_window: u64,
    /// Overdue occurrences not run (misfire policy).
    pub missed: u64,
    /// The schedule, for display.
    pub schedule: String,
}

/// Counters of a scheduler, and the outcome of its shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ScheduleReport {
    /// Runs finished (returned, failed or panicked), retries included.
    pub runs: u64,
    /// Runs that returned `Err`.
    pub failed: u64,
    /// Runs that panicked.
    pub panicked: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Failures with no retry left.
    pub gave_up: u64,
    /// Firings skipped outside a window.
    pub skipped_window: u64,
    /// Overdue occurrences not run (misfire policies).
    pub missed: u64,
    /// Runs the pool refused (queue full under `Reject`, or shut down).
    pub rejected: u64,
    /// Jobs still scheduled when the scheduler shut down.
    pub pending_jobs: usize,
    /// Runs still going when the report was made (deadline missed).
    pub unfinished_runs: usize,
    /// `true` if the deadline passed before the runs finished.
    pub deadline_missed: bool,
}

/// Builds a [`Scheduler`]; see [`Scheduler::builder`].
#[derive(Debug, Default)]
pub struct SchedulerBuilder {
    pool: Option<WorkerPool>,
    clock: Option<SharedClock>,
    seed: Option<u64>,
}

impl SchedulerBuilder {
    /// The pool that runs the jobs (default: a pool of its own, one worker
    /// per physical core, shut down with the scheduler). A pool given here
    /// is shared, not shut down by the scheduler.
    pub fn pool(mut self, pool: WorkerPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The clock (default: the system's).
    pub fn clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the retry jitter (default: from the OS), for reproducible delays.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts the scheduler's timer thread (and its pool, if it has its own).
    ///
    /// # Errors
    /// [`ConfigError`] when a thread cannot be started.
    pub fn build(self) -> Result<Scheduler, ConfigError> {
        let clock = self.clock.unwrap_or_else(crate::clock::monotonic);
        let (pool, own_pool) = match self.pool {
            Some(pool) => (pool, false),
            None => (
                WorkerPool::builder()
                    .clock(std::sync::Arc::clone(&clock))
                    .thread_name("sheaf-schedule")
                    .build()?,
                true,
            ),
        };
        let inner = std::sync::Arc::new(Inner {
            pool,
            own_pool,
            timer: OnceLock::new(),
            clock: std::sync::Arc::clone(&clock),
            jobs: Mutex::new(Jobs::default()),
            idle: Waiters::default(),
            in_flight: AtomicUsize::new(0),
            seed: self.seed.unwrap_or_else(rand::random),
            shut: AtomicBool::new(false),
            report: Mutex::new(None),
            totals: Totals::default(),
        });
        let weak: Weak<Inner> = std::sync::Arc::downgrade(&inner);
        let timer = Timer::start(clock, move |fire: Fire| {
            if let Some(inner) = weak.upgrade() {
                inner.fire(fire);
            }
        })?;
        if inner.timer.set(timer).is_err() {
            unreachable!("the timer is set once");
        }
        Ok(Scheduler { inner })
    }
}

/// Runs jobs on a [`WorkerPool`] at the times a [`When`] gives; see the
/// [module docs](self). No cap on the number of jobs beyond memory.
pub struct Scheduler {
    inner: std::sync::Arc<Inner>,
}

/// A timer entry: the job and the attempt (0 for a regular firing, n for
/// the n-th retry).
type Fire = (u64, u32);

type Work = std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

struct Job {
    cadence: Cadence,
    misfire: Misfire,
    work: Work,
    extras: Option<Box<Extras>>,
    key: Option<TimerKey>,
    next: Option<Instant>,
    paused: bool,
    /// Runs queued or going, plus retries armed.
    in_flight: u32,
    runs: u64,
    failures: u64,
    skipped_window: u64,
    missed: u64,
}

struct Extras {
    retry: Option<(Backoff, BackoffState)>,
    /// Armed retries, by attempt.
    retry_keys: Vec<(u32, TimerKey)>,
    window: Option<Window>,
}

#[derive(Default)]
struct Jobs {
    /// Boxed: the table keeps up to twice as many slots as jobs, and a
    /// slot is then one pointer, not a whole job.
    map: HashMap<u64, Box<Job>, FastBuildHasher>,
    next_id: u64,
}

#[derive(Default)]
struct Totals {
    runs: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    retried: AtomicU64,
    gave_up: AtomicU64,
    skipped_window: AtomicU64,
    missed: AtomicU64,
    rejected: AtomicU64,
}

struct Inner {
    pool: WorkerPool,
    own_pool: bool,
    timer: OnceLock<Timer<Fire>>,
    clock: SharedClock,
    jobs: Mutex<Jobs>,
    /// Notified when a run finishes.
    idle: Waiters,
    /// Runs handed to the pool and not finished.
    in_flight: AtomicUsize,
    seed: u64,
    shut: AtomicBool,
    report: Mutex<Option<ScheduleReport>>,
    totals: Totals,
}

enum Failure {
    Err,
    Panic,
    NotRun,
}

impl Scheduler {
    /// A builder: its own pool, the system clock, a random jitter seed.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    /// Schedules `job` to run as `when` says.
    ///
    /// # Errors
    /// [`ScheduleError::Config`] for a zero period, an invalid backoff or
    /// a delay too long to represent; [`ScheduleError::ShutDown`] after shutdown.
    pub fn schedule<F, O>(&self, when: When, job: F) -> Result<JobId, ScheduleError>
    where
        F: Fn() -> O + Send + Sync + 'static,
        O: JobResult,
    {
        let inner = &*self.inner;
        if inner.shut.load(Ordering::Acquire) {
            return Err(ScheduleError::ShutDown);
        }
        let now = inner.now();
        let too_far = |setting| {
            ConfigError::new(
                setting,
                "the delay is too long to represent; give a shorter one",
            )
        };
        let cadence = match when.spec {
            Spec::At(at) => Cadence::Once(at),
            Spec::After(d) => {
                Cadence::Once(deadline_after(now.instant, d).ok_or_else(|| too_far("after"))?)
            }
            Spec::Every { first, period } => {
                if period.is_zero() {
                    return Err(ConfigError::new(
                        "every",
                        "a period of 0 never ends; give a positive period",
                    )
                    .into());
                }
                let start = match first {
                    Some(start) => start,
                    None => deadline_after(now.instant, period).ok_or_else(|| too_far("every"))?,
                };
                Cadence::Every { start, period }
            }
            Spec::Cron(cron) => Cadence::Cron(cron),
        };
        if let Some(backoff) = &when.retry {
            backoff.validate()?;
        }
        let first = plan::first(&cadence, now);
        let work: Work = std::sync::Arc::new(move || job().into_result());
        let timer = inner.timer();
        let mut jobs = inner.jobs.lock();
        let id = jobs.next_id;
        jobs.next_id += 1;
        let extras = (when.retry.is_some() || when.window.is_some()).then(|| {
            Box::new(Extras {
                retry: when
                    .retry
                    .map(|b| (b, BackoffState::new(job_seed(inner.seed, id)))),
                retry_keys: Vec::new(),
                window: when.window,
            })
        });
        let key = match first {
            Some(at) => Some(
                timer
                    .insert(at, (id, 0))
                    .map_err(|_| ScheduleError::ShutDown)?,
            ),
            None => None,
        };
        jobs.map.insert(
            id,
            Box::new(Job {
                cadence,
                misfire: when.misfire,
                work,
                extras,
                key,
                next: first,
                paused: false,
                in_flight: 0,
                runs: 0,
                failures: 0,
                skipped_window: 0,
                missed: 0,
            }),
        );
        Ok(JobId(id))
    }

    /// Runs `job` once at `instant`.
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule).
    pub fn at<F, O>(&self, instant: Instant, job: F) -> Result<JobId, ScheduleError>
    where
        F: Fn() -> O + Send + Sync + 'static,
        O: JobResult,
    {
        self.schedule(When::at(instant), job)
    }

    /// Runs `job` once after `delay`.
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule).
    pub fn after<F, O>(&self, delay: Duration, job: F) -> Result<JobId, ScheduleError>
    where
        F: Fn() -> O + Send + Sync + 'static,
        O: JobResult,
    {
        self.schedule(When::after(delay), job)
    }

    /// Runs `job` every `period` (fixed rate, [`Misfire::RunOnce`]).
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule).
    pub fn every<F, O>(&self, period: Duration, job: F) -> Result<JobId, ScheduleError>
    where
        F: Fn() -> O + Send + Sync + 'static,
        O: JobResult,
    {
        self.schedule(When::every(period), job)
    }

    /// Runs `job` at a cron pattern's instants in `zone`.
    ///
    /// # Errors
    /// As [`schedule`](Self::schedule) and [`When::cron`].
    pub fn cron<F, O>(&self, pattern: &str, zone: &str, job: F) -> Result<JobId, ScheduleError>
    where
        F: Fn() -> O + Send + Sync + 'static,
        O: JobResult,
    {
        self.schedule(When::cron(pattern, zone)?, job)
    }

    /// Removes a job: no more firings or retries (a run already going
    /// finishes). `false` if there was no such job (finished or cancelled).
    pub fn cancel(&self, id: JobId) -> bool {
        let inner = &*self.inner;
        let removed = inner.jobs.lock().map.remove(&id.0);
        match removed {
            Some(job) => {
                inner.disarm(&job);
                true
            }
            None => false,
        }
    }

    /// Stops a job's firings until [`resume`](Self::resume); `false` if
    /// there is no such job.
    pub fn pause(&self, id: JobId) -> bool {
        let inner = &*self.inner;
        let mut jobs = inner.jobs.lock();
        let Some(job) = jobs.map.get_mut(&id.0) else {
            return false;
        };
        job.paused = true;
        if let Some(key) = job.key.take() {
            inner.timer().cancel(key);
        }
        true
    }

    /// Resumes a paused job at its next occurrence from now (occurrences
    /// while paused are not run; a one-shot job that came due runs now).
    /// `false` if there is no such job.
    pub fn resume(&self, id: JobId) -> bool {
        let inner = &*self.inner;
        let now = inner.now();
        let mut jobs = inner.jobs.lock();
        let Some(job) = jobs.map.get_mut(&id.0) else {
            return false;
        };
        if !job.paused {
            return true;
        }
        job.paused = false;
        if let Some(scheduled) = job.next {
            job.next = plan::resumed(&job.cadence, scheduled, now);
            job.key = job
                .next
                .and_then(|at| inner.timer().insert(at, (id.0, 0)).ok());
        }
        true
    }

    /// Every job with its next run time, by id.
    pub fn list(&self) -> Vec<JobInfo> {
        let jobs = self.inner.jobs.lock();
        let mut list: Vec<JobInfo> = jobs
            .map
            .iter()
            .map(|(&id, job)| JobInfo {
                id: JobId(id),
                next_run: if job.paused { None } else { job.next },
                paused: job.paused,
                runs: job.runs,
                failures: job.failures,
                skipped_window: job.skipped_window,
                missed: job.missed,
                schedule: format!("{:?}", job.cadence),
            })
            .collect();
        list.sort_unstable_by_key(|info| info.id);
        list
    }

    /// Jobs scheduled now.
    pub fn len(&self) -> usize {
        self.inner.jobs.lock().map.len()
    }

    /// `true` when no job is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seed of a job's retry jitter: [`Backoff::delays`] with it gives
    /// the job's retry delays.
    pub fn job_seed(&self, id: JobId) -> u64 {
        job_seed(self.inner.seed, id.0)
    }

    /// The counters so far (the report's fields, without shutdown's).
    pub fn stats(&self) -> ScheduleReport {
        self.inner.totals(0, 0, false)
    }

    /// Blocks until everything due at the clock's current time has fired
    /// and every run it started (and every retry due by now) has finished.
    /// For tests that drive a [`ManualClock`](crate::clock::ManualClock).
    pub fn settle(&self) {
        let inner = &*self.inner;
        let timer = inner.timer();
        loop {
            let before = timer.fired();
            timer.settle();
            wait_on(&*inner.clock, &inner.idle, None, || {
                inner.in_flight.load(Ordering::SeqCst) == 0
            });
            if timer.fired() == before {
                return;
            }
        }
    }

    /// Stops firing, drops every job, waits up to `timeout` (on the
    /// scheduler's clock; `Duration::MAX`: forever) for runs already going,
    /// shuts down the scheduler's own pool, and reports. Idempotent.
    pub fn shutdown(&self, timeout: Duration) -> ScheduleReport {
        let inner = &*self.inner;
        let mut done = inner.report.lock();
        if let Some(report) = done.as_ref() {
            return report.clone();
        }
        let deadline = deadline_after(inner.clock.now(), timeout);
        inner.shut.store(true, Ordering::Release);
        drop(inner.timer().shutdown());
        let pending = std::mem::take(&mut inner.jobs.lock().map);
        let pending_jobs = pending.len();
        drop(pending);
        let on_time = wait_on(&*inner.clock, &inner.idle, deadline, || {
            inner.in_flight.load(Ordering::SeqCst) == 0
        });
        if inner.own_pool {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(inner.clock.now())
            });
            inner.pool.shutdown(left, ShutdownMode::Drain);
        }
        let report = inner.totals(
            pending_jobs,
            inner.in_flight.load(Ordering::SeqCst),
            !on_time,
        );
        *done = Some(report.clone());
        report
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Scheduler {
    /// Stops the timer (no more firings) and drops the jobs; runs already
    /// going finish on the pool.
    fn drop(&mut self) {
        if !self.inner.shut.swap(true, Ordering::AcqRel) {
            drop(self.inner.timer().shutdown());
            drop(std::mem::take(&mut self.inner.jobs.lock().map));
        }
    }
}

fn job_seed(seed: u64, id: u64) -> u64 {
    // SplitMix64 of the id, so neighbouring jobs get unrelated streams.
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    seed ^ z ^ (z >> 31)
}

impl Inner {
    fn timer(&self) -> &Timer<Fire> {
        self.timer.get().expect("set by build")
    }

    fn now(&self) -> Now {
        Now {
            instant: self.clock.now(),
            wall: self.clock.wall(),
        }
    }

    fn disarm(&self, job: &Job) {
        let timer = self.timer();
        if let Some(key) = job.key {
            timer.cancel(key);
        }
        if let Some(extras) = &job.extras {
            for &(_, key) in &extras.retry_keys {
                timer.cancel(key);
            }
        }
    }

    /// A timer entry came due (on the timer's thread).
    fn fire(self: &std::sync::Arc<Self>, (id, attempt): Fire) {
        let now = self.now();
        let mut runs = 0u32;
        let work = {
            let mut jobs = self.jobs.lock();
            let Some(job) = jobs.map.get_mut(&id) else {
                return;
            };
            let outside = job
                .extras
                .as_ref()
                .and_then(|e| e.window.as_ref())
                .is_some_and(|w| !w.contains(now.wall));
            if attempt == 0 {
                job.key = None;
                let scheduled = job.next.take().unwrap_or(now.instant);
                if job.paused {
                    job.next = Some(scheduled);
                    return;
                }
                let plan = plan::plan(&job.cadence, job.misfire, scheduled, now);
                job.missed += plan.missed;
                self.totals.missed.fetch_add(plan.missed, Ordering::Relaxed);
                runs = plan.runs;
                if runs > 0 && outside {
                    job.skipped_window += u64::from(runs);
                    self.totals
                        .skipped_window
                        .fetch_add(u64::from(runs), Ordering::Relaxed);
                    runs = 0;
                }
                job.next = plan.next;
                if let Some(at) = plan.next {
                    job.key = self.timer().insert(at, (id, 0)).ok();
                }
                job.in_flight += runs;
            } else {
                // A retry: its in-flight count was taken when it was armed.
                if let Some(keys) = job.extras.as_mut().map(|e| &mut e.retry_keys) {
                    if let Some(i) = keys.iter().position(|&(a, _)| a == attempt) {
                        keys.swap_remove(i);
                    }
                }
                if outside || job.paused {
                    if outside {
                        job.skipped_window += 1;
                        self.totals.skipped_window.fetch_add(1, Ordering::Relaxed);
                    }
                    job.in_flight -= 1;
                } else {
                    runs = 1;
                }
            }
            let work = std::sync::Arc::clone(&job.work);
            if job.next.is_none() && job.in_flight == 0 {
                jobs.map.remove(&id);
            }
            work
        };
        for _ in 0..runs {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let inner = std::sync::Arc::clone(self);
            let work = std::sync::Arc::clone(&work);
            let spawned = self.pool.spawn(move || {
                let outcome = match crate::unwind::catch(|| work()) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Failure::Err),
                    Err(_) => Err(Failure::Panic),
                };
                inner.finish(id, attempt, outcome);
            });
            if spawned.is_err() {
                self.finish(id, attempt, Err(Failure::NotRun));
            }
        }
    }

    /// A run ended (on a pool worker).
    fn finish(&self, id: u64, attempt: u32, outcome: Result<(), Failure>) {
        let ran = !matches!(outcome, Err(Failure::NotRun));
        let failed = ran && outcome.is_err();
        match outcome {
            Ok(()) => {}
            Err(Failure::Err) => {
                self.totals.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure::Panic) => {
                self.totals.panicked.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure::NotRun) => {
                self.totals.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        {
            let now = self.clock.now();
            let mut jobs = self.jobs.lock();
            if let Some(job) = jobs.map.get_mut(&id) {
                job.runs += u64::from(ran);
                job.in_flight -= 1;
                if failed {
                    job.failures += 1;
                    let mut gave_up = false;
                    if let Some((backoff, state)) =
                        job.extras.as_mut().and_then(|e| e.retry.as_mut())
                    {
                        if attempt < backoff.max_retries {
                            let delay = state.delay(backoff, attempt);
                            let at = now.checked_add(delay).unwrap_or(now);
                            if let Ok(key) = self.timer().insert(at, (id, attempt + 1)) {
                                job.extras
                                    .as_mut()
                                    .expect("checked")
                                    .retry_keys
                                    .push((attempt + 1, key));
                                job.in_flight += 1;
                                self.totals.retried.fetch_add(1, Ordering::Relaxed);
                            }
                        } else {
                            gave_up = true;
                        }
                    }
                    if gave_up {
                        self.totals.gave_up.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if job.next.is_none() && job.in_flight == 0 && !job.paused {
                    jobs.map.remove(&id);
                }
            }
            if ran {
                self.totals.runs.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_all();
    }

    fn totals(
        &self,
        pending_jobs: usize,
        unfinished_runs: usize,
        deadline_missed: bool,
    ) -> ScheduleReport {
        let t = &self.totals;
        ScheduleReport {
            runs: t.runs.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
            panicked: t.panicked.load(Ordering::Relaxed),
            retried: t.retried.load(Ordering::Relaxed),
            gave_up: t.gave_up.load(Ordering::Relaxed),
            skipped_window: t.skipped_window.load(Ordering::Relaxed),
            missed: t.missed.load(Ordering::Relaxed),
            rejected: t.rejected.load(Ordering::Relaxed),
            pending_jobs,
            unfinished_runs,
            deadline_missed,
        }
    }
}
