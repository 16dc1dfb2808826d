use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::clock::ManualClock;

const MS: Duration = Duration::from_millis(1);

/// A scheduler on a manual clock starting at `wall`, with one worker.
fn manual(wall: SystemTime) -> (Scheduler, ManualClock) {
    let clock = ManualClock::starting_at(wall);
    let pool = WorkerPool::builder()
        .workers(1)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let scheduler = Scheduler::builder()
        .clock(Arc::new(clock.clone()))
        .pool(pool)
        .seed(7)
        .build()
        .unwrap();
    (scheduler, clock)
}

/// A job that records the manual clock's elapsed time at each run.
fn recorder(clock: &ManualClock) -> (Arc<Mutex<Vec<Duration>>>, impl Fn() + Send + Sync + 'static) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (job_log, clock) = (Arc::clone(&log), clock.clone());
    (log, move || job_log.lock().unwrap().push(clock.elapsed()))
}

/// Like [`recorder`], with wall times (seconds since the epoch).
fn wall_recorder(clock: &ManualClock) -> (Arc<Mutex<Vec<u64>>>, impl Fn() + Send + Sync + 'static) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (job_log, clock) = (Arc::clone(&log), clock.clone());
    (log, move || {
        let secs = clock.wall().duration_since(UNIX_EPOCH).unwrap().as_secs();
        job_log.lock().unwrap().push(secs);
    })
}

fn at_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn step(scheduler: &Scheduler, clock: &ManualClock, to: Duration) {
    clock.set(to);
    scheduler.settle();
}

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn parse_utc(s: &str) -> u64 {
    let ts: jiff::Timestamp = s.parse().unwrap();
    u64::try_from(ts.as_second()).unwrap()
}

/// Moves the clock to the wall time `secs` and settles.
fn step_wall(scheduler: &Scheduler, clock: &ManualClock, start: u64, secs: u64) {
    step(scheduler, clock, Duration::from_secs(secs - start));
}

#[test]
fn one_shot_jobs_fire_at_exact_times() {
    let (scheduler, clock) = manual(epoch(1_700_000_000));
    let (log, job) = recorder(&clock);
    let job = Arc::new(job);
    let (a, b) = (Arc::clone(&job), Arc::clone(&job));
    scheduler.after(at_ms(100), move || a()).unwrap();
    let origin = clock.now();
    scheduler.at(origin + at_ms(250), move || b()).unwrap();
    assert_eq!(scheduler.list().len(), 2);
    assert_eq!(scheduler.list()[0].next_run, Some(origin + at_ms(100)));
    step(&scheduler, &clock, at_ms(99));
    assert!(log.lock().unwrap().is_empty());
    step(&scheduler, &clock, at_ms(100));
    step(&scheduler, &clock, at_ms(249));
    step(&scheduler, &clock, at_ms(250));
    assert_eq!(*log.lock().unwrap(), [at_ms(100), at_ms(250)]);
    // One-shot jobs leave when done.
    assert!(scheduler.is_empty());
    let report = scheduler.shutdown(Duration::MAX);
    assert_eq!((report.runs, report.pending_jobs), (2, 0));
}

#[test]
fn fixed_rate_never_drifts_and_misfires_follow_the_policy() {
    for (policy, late_runs, missed) in [
        (Misfire::Skip, 0, 3),
        (Misfire::RunOnce, 1, 2),
        (Misfire::CatchUp(2), 2, 1),
        (Misfire::CatchUp(10), 3, 0),
    ] {
        let (scheduler, clock) = manual(epoch(1_700_000_000));
        let (log, job) = recorder(&clock);
        scheduler
            .schedule(When::every(at_ms(10)).misfire(policy), job)
            .unwrap();
        step(&scheduler, &clock, at_ms(10));
        step(&scheduler, &clock, at_ms(20));
        // 25 ms late: the occurrences at 30, 40 and 50 are all overdue at 55.
        step(&scheduler, &clock, at_ms(55));
        step(&scheduler, &clock, at_ms(60)); // back on the grid, no drift
        let mut expected = vec![at_ms(10), at_ms(20)];
        expected.extend(std::iter::repeat_n(at_ms(55), late_runs));
        expected.push(at_ms(60));
        assert_eq!(*log.lock().unwrap(), expected, "{policy:?}");
        let report = scheduler.shutdown(Duration::MAX);
        assert_eq!(report.missed, missed, "{policy:?}");
        assert_eq!(report.pending_jobs, 1);
    }
}

#[test]
fn pause_resume_cancel_and_list() {
    let (scheduler, clock) = manual(epoch(1_700_000_000));
    let origin = clock.now();
    let (log, job) = recorder(&clock);
    let id = scheduler.every(at_ms(10), job).unwrap();
    assert_eq!(scheduler.list()[0].next_run, Some(origin + at_ms(10)));
    step(&scheduler, &clock, at_ms(10));
    assert!(scheduler.pause(id));
    let info = &scheduler.list()[0];
    assert!(info.paused);
    assert_eq!((info.next_run, info.runs), (None, 1));
    step(&scheduler, &clock, at_ms(35));
    assert!(scheduler.resume(id));
    // The first occurrence on the grid from now: 40.
    assert_eq!(scheduler.list()[0].next_run, Some(origin + at_ms(40)));
    step(&scheduler, &clock, at_ms(40));
    assert_eq!(*log.lock().unwrap(), [at_ms(10), at_ms(40)]);
    assert!(scheduler.cancel(id));
    assert!(!scheduler.cancel(id));
    assert!(!scheduler.pause(id));
    step(&scheduler, &clock, at_ms(100));
    assert_eq!(log.lock().unwrap().len(), 2);
    assert!(scheduler.list().is_empty());
}

#[test]
fn cron_across_dst_in_new_york() {
    // Spring forward: 2026-03-08 02:00 EST -> 03:00 EDT. 02:30 does not
    // exist that night: the daily 02:30 job runs once, at 03:00 EDT.
    let start = parse_utc("2026-03-07T12:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    scheduler
        .cron("0 30 2 * * *", "America/New_York", job)
        .unwrap();
    let gap_run = parse_utc("2026-03-08T07:00:00Z"); // 03:00 EDT
    let next_day = parse_utc("2026-03-09T06:30:00Z"); // 02:30 EDT
    step_wall(&scheduler, &clock, start, gap_run - 1);
    assert!(log.lock().unwrap().is_empty());
    step_wall(&scheduler, &clock, start, gap_run);
    step_wall(&scheduler, &clock, start, next_day);
    assert_eq!(*log.lock().unwrap(), [gap_run, next_day]);
    scheduler.shutdown(Duration::MAX);

    // Fall back: 2026-11-01 02:00 EDT -> 01:00 EST. 01:30 happens twice;
    // the daily 01:30 job runs once, at the first.
    let start = parse_utc("2026-10-31T12:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    scheduler
        .cron("0 30 1 * * *", "America/New_York", job)
        .unwrap();
    let first = parse_utc("2026-11-01T05:30:00Z"); // 01:30 EDT
    let repeat = parse_utc("2026-11-01T06:30:00Z"); // 01:30 EST again
    let next_day = parse_utc("2026-11-02T06:30:00Z"); // 01:30 EST
    step_wall(&scheduler, &clock, start, first);
    step_wall(&scheduler, &clock, start, repeat);
    step_wall(&scheduler, &clock, start, next_day);
    assert_eq!(*log.lock().unwrap(), [first, next_day]);
    scheduler.shutdown(Duration::MAX);
}

#[test]
fn cron_across_dst_in_berlin_with_seconds() {
    // 2026-03-29 02:00 CET -> 03:00 CEST: 02:30:15 runs at 03:00:00 CEST.
    let start = parse_utc("2026-03-28T12:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    scheduler
        .cron("15 30 2 * * *", "Europe/Berlin", job)
        .unwrap();
    let gap_run = parse_utc("2026-03-29T01:00:00Z");
    let next_day = parse_utc("2026-03-30T00:30:15Z"); // 02:30:15 CEST
    step_wall(&scheduler, &clock, start, gap_run);
    step_wall(&scheduler, &clock, start, next_day);
    assert_eq!(*log.lock().unwrap(), [gap_run, next_day]);
    scheduler.shutdown(Duration::MAX);

    // 2026-10-25 03:00 CEST -> 02:00 CET: 02:30:15 happens twice, runs once.
    let start = parse_utc("2026-10-24T12:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    scheduler
        .cron("15 30 2 * * *", "Europe/Berlin", job)
        .unwrap();
    let first = parse_utc("2026-10-25T00:30:15Z"); // CEST
    let repeat = parse_utc("2026-10-25T01:30:15Z"); // CET
    let next_day = parse_utc("2026-10-26T01:30:15Z");
    step_wall(&scheduler, &clock, start, first);
    step_wall(&scheduler, &clock, start, repeat);
    step_wall(&scheduler, &clock, start, next_day);
    assert_eq!(*log.lock().unwrap(), [first, next_day]);
    scheduler.shutdown(Duration::MAX);
}

#[test]
fn a_sub_hourly_cron_keeps_its_real_time_cadence_through_fall_back() {
    let start = parse_utc("2026-11-01T04:50:00Z"); // 00:50 EDT
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    scheduler
        .cron("0 */30 * * * *", "America/New_York", job)
        .unwrap();
    let mut expected = Vec::new();
    for t in [
        "2026-11-01T05:00:00Z", // 01:00 EDT
        "2026-11-01T05:30:00Z", // 01:30 EDT
        "2026-11-01T06:00:00Z", // 01:00 EST
        "2026-11-01T06:30:00Z", // 01:30 EST
        "2026-11-01T07:00:00Z", // 02:00 EST
    ] {
        let t = parse_utc(t);
        step_wall(&scheduler, &clock, start, t);
        expected.push(t);
    }
    assert_eq!(*log.lock().unwrap(), expected);
    scheduler.shutdown(Duration::MAX);
}

#[test]
fn cron_on_a_leap_day() {
    let start = parse_utc("2027-01-01T00:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    let id = scheduler.cron("0 0 12 29 2 *", "UTC", job).unwrap();
    let leap = parse_utc("2028-02-29T12:00:00Z");
    let origin = clock.now();
    let next = scheduler.list()[0].next_run.unwrap();
    assert_eq!(next - origin, Duration::from_secs(leap - start));
    step_wall(&scheduler, &clock, start, leap - 1);
    assert!(log.lock().unwrap().is_empty());
    step_wall(&scheduler, &clock, start, leap);
    assert_eq!(*log.lock().unwrap(), [leap]);
    // The next one is four years on.
    let next = scheduler.list()[0].next_run.unwrap();
    assert_eq!(
        next - origin,
        Duration::from_secs(parse_utc("2032-02-29T12:00:00Z") - start)
    );
    assert!(scheduler.cancel(id));
}

#[test]
fn retries_follow_the_seeded_backoff() {
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let (scheduler, clock) = manual(epoch(1_700_000_000));
        let (log, record) = recorder(&clock);
        let backoff = Backoff {
            initial: at_ms(100),
            max: at_ms(1_000),
            multiplier: 2.0,
            max_retries: 3,
            jitter,
        };
        let id = scheduler
            .schedule(When::after(at_ms(10)).with_retry(backoff), move || {
                record();
                Err::<(), _>("unavailable")
            })
            .unwrap();
        let delays: Vec<Duration> = backoff.delays(scheduler.job_seed(id)).collect();
        assert_eq!(delays.len(), 3);
        let mut expected = vec![at_ms(10)];
        for d in &delays {
            expected.push(*expected.last().unwrap() + *d);
        }
        for &t in &expected {
            step(&scheduler, &clock, t);
        }
        assert_eq!(*log.lock().unwrap(), expected, "{jitter:?}");
        match jitter {
            Jitter::None => assert_eq!(delays, [at_ms(100), at_ms(200), at_ms(400)]),
            Jitter::Full => {
                assert!(delays
                    .iter()
                    .zip([100, 200, 400])
                    .all(|(d, b)| *d <= at_ms(b)));
            }
            Jitter::Equal => assert!(delays
                .iter()
                .zip([100u64, 200, 400])
                .all(|(d, b)| *d >= at_ms(b / 2) && *d <= at_ms(b))),
            Jitter::Decorrelated => {
                assert!(delays
                    .iter()
                    .all(|d| *d >= at_ms(100) && *d <= at_ms(1_000)));
            }
        }
        let report = scheduler.shutdown(Duration::MAX);
        assert_eq!(
            (report.runs, report.failed, report.retried, report.gave_up),
            (4, 4, 3, 1),
            "{jitter:?}"
        );
        assert!(scheduler.is_empty());
    }
    // The same seed gives the same delays; another seed, others.
    let backoff = Backoff::default();
    let a: Vec<_> = backoff.delays(1).collect();
    assert_eq!(a, backoff.delays(1).collect::<Vec<_>>());
    assert_ne!(a, backoff.delays(2).collect::<Vec<_>>());
}

#[test]
fn a_retry_stops_once_the_job_succeeds() {
    let (scheduler, clock) = manual(epoch(1_700_000_000));
    let attempts = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&attempts);
    let backoff = Backoff {
        jitter: Jitter::None,
        ..Backoff::default()
    };
    scheduler
        .schedule(When::after(at_ms(5)).with_retry(backoff), move || {
            let mut n = counter.lock().unwrap();
            *n += 1;
            if *n < 2 {
                Err("first try fails")
            } else {
                Ok(())
            }
        })
        .unwrap();
    step(&scheduler, &clock, at_ms(5));
    step(&scheduler, &clock, at_ms(105));
    step(&scheduler, &clock, at_ms(10_000));
    assert_eq!(*attempts.lock().unwrap(), 2);
    let report = scheduler.shutdown(Duration::MAX);
    assert_eq!(
        (report.runs, report.failed, report.retried, report.gave_up),
        (2, 1, 1, 0)
    );
}

#[test]
fn runs_outside_the_window_are_skipped_and_counted() {
    // Monday 2026-03-02 00:00 UTC; hourly; weekdays 09:00-12:00 only.
    let start = parse_utc("2026-03-02T00:00:00Z");
    let (scheduler, clock) = manual(epoch(start));
    let (log, job) = wall_recorder(&clock);
    let window = Window::in_zone("UTC")
        .unwrap()
        .days(&[
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ])
        .between((9, 0), (12, 0))
        .unwrap();
    let id = scheduler
        .schedule(
            When::cron("0 0 * * * *", "UTC").unwrap().within(window),
            job,
        )
        .unwrap();
    for hour in 1..=24 {
        step_wall(&scheduler, &clock, start, start + hour * 3600);
    }
    let hours: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t - start) / 3600)
        .collect();
    assert_eq!(hours, [9, 10, 11]);
    assert_eq!(scheduler.list()[0].skipped_window, 21);
    assert!(scheduler.cancel(id));
    // Saturday: nothing inside.
    let saturday = parse_utc("2026-03-07T10:00:00Z");
    let window = Window::in_zone("UTC")
        .unwrap()
        .days(&[Weekday::Monday])
        .between((22, 0), (2, 0))
        .unwrap();
    assert!(!window.contains(epoch(saturday)));
    assert!(window.contains(epoch(parse_utc("2026-03-02T23:30:00Z"))));
    assert!(window.contains(epoch(parse_utc("2026-03-02T01:30:00Z"))));
    assert!(!window.contains(epoch(parse_utc("2026-03-02T02:00:00Z"))));
}

#[test]
fn a_panicking_job_is_counted_and_keeps_its_schedule() {
    let (scheduler, clock) = manual(epoch(1_700_000_000));
    scheduler
        .every(at_ms(10), || -> () { panic!("job failed") })
        .unwrap();
    for t in [10, 20, 30] {
        step(&scheduler, &clock, at_ms(t));
    }
    let report = scheduler.shutdown(Duration::MAX);
    assert_eq!((report.runs, report.panicked), (3, 3));
}

#[test]
fn bad_schedules_are_errors_and_shutdown_is_idempotent() {
    let (scheduler, _clock) = manual(epoch(1_700_000_000));
    let err = scheduler.every(Duration::ZERO, || {}).unwrap_err();
    assert!(matches!(err, ScheduleError::Config(e) if e.setting() == "every"));
    let err = When::cron("not a cron", "UTC").unwrap_err();
    assert_eq!(err.setting(), "cron");
    let err = When::cron("* * * * *", "Mars/Olympus").unwrap_err();
    assert_eq!(err.setting(), "tz");
    let bad = Backoff {
        multiplier: 0.5,
        ..Backoff::default()
    };
    let err = scheduler
        .schedule(When::after(MS).with_retry(bad), || {})
        .unwrap_err();
    assert!(matches!(err, ScheduleError::Config(e) if e.setting() == "multiplier"));
    assert!(Window::in_zone("UTC")
        .unwrap()
        .between((24, 0), (1, 0))
        .is_err());
    let err = scheduler.after(Duration::MAX, || {}).unwrap_err();
    assert!(matches!(err, ScheduleError::Config(_)));
    scheduler.every(at_ms(5), || {}).unwrap();
    let first = scheduler.shutdown(Duration::MAX);
    assert_eq!(first.pending_jobs, 1);
    assert_eq!(scheduler.shutdown(Duration::ZERO), first);
    assert_eq!(scheduler.after(MS, || {}), Err(ScheduleError::ShutDown));
}

#[test]
fn a_default_scheduler_runs_on_the_real_clock() {
    let scheduler = Scheduler::builder().build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    scheduler
        .after(Duration::ZERO, move || tx.send(()).unwrap())
        .unwrap();
    rx.recv().unwrap();
    let report = scheduler.shutdown(Duration::MAX);
    assert_eq!(report.runs, 1);
}
