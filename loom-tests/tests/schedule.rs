//! Loom model of the scheduler: `cancel` racing the timer's firing of the
//! same job. Three threads: the test (which cancels), the timer's driver
//! (which fires and hands the run to the pool) and the pool's one worker.
//!
//! Checked: `cancel` of a repeating job always succeeds, at most the one
//! firing already under way runs, and no firing happens after `cancel`
//! returned (the clock is advanced past the next occurrence to see).
//! The clock is a `ManualClock` (loom has no clock of its own).
//!
//! Ignored for now: loom reports a deadlock that is not the scheduler's:
//! `timer_settle_after_advance` below, with only a `Timer` and a
//! `ManualClock` (settle, advance, settle), deadlocks the same way (the
//! driver parked in `ManualClock::park_until`, the test in `Alarm::settle`).
//! Un-ignore both once the timer's wake-up is fixed.
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test schedule`
#![cfg(sheaf_loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom_tests::model;
use sheaf::clock::{Clock, ManualClock};
use sheaf::pool::WorkerPool;
use sheaf::schedule::{Scheduler, When};

#[test]
#[ignore = "timer wake-up deadlock under loom; see timer_settle_after_advance"]
fn cancel_racing_fire_stops_every_later_run() {
    model(|| {
        let clock = ManualClock::new();
        let pool = WorkerPool::builder()
            .workers(1)
            .queue_capacity(2)
            .clock(std::sync::Arc::new(clock.clone()))
            .build()
            .unwrap();
        let scheduler = Scheduler::builder()
            .clock(std::sync::Arc::new(clock.clone()))
            .pool(pool.clone())
            .seed(1)
            .build()
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        // Due at once: the driver fires it while this thread cancels.
        let id = scheduler
            .schedule(
                When::every_from(clock.now(), Duration::from_millis(1)),
                move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
        assert!(scheduler.cancel(id));
        scheduler.settle();
        let after_cancel = runs.load(Ordering::SeqCst);
        assert!(after_cancel <= 1);
        clock.advance(Duration::from_millis(1));
        scheduler.settle();
        assert_eq!(runs.load(Ordering::SeqCst), after_cancel);
        assert!(scheduler.is_empty());
        scheduler.shutdown(Duration::MAX);
        pool.shutdown(Duration::MAX, sheaf::pool::ShutdownMode::Drain);
    });
}

/// The smallest model that shows the timer deadlock: an empty timer,
/// `settle`, `advance`, `settle`.
#[test]
#[ignore = "deadlocks under loom: the timer's settle after a manual-clock advance"]
fn timer_settle_after_advance() {
    model(|| {
        let clock = ManualClock::new();
        let timer =
            sheaf::timer::Timer::start(std::sync::Arc::new(clock.clone()), |_: u8| {}).unwrap();
        timer.settle();
        clock.advance(Duration::from_millis(1));
        timer.settle();
        timer.shutdown();
    });
}
