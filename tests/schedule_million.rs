//! A million scheduled jobs: no cap, memory measured with a counting
//! allocator (its own test binary, so no other test's allocations count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sheaf::clock::{Clock, ManualClock};
use sheaf::pool::WorkerPool;
use sheaf::schedule::{Scheduler, When};

#[path = "../benches/common/alloc.rs"]
mod alloc;
use alloc::live;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const JOBS: u64 = 1_000_000;

#[test]
fn a_million_jobs_scheduled_measured_fired_and_cancelled() {
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let pool = WorkerPool::builder()
        .workers(2)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let scheduler = Scheduler::builder()
        .clock(Arc::new(clock.clone()))
        .pool(pool)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let before = live();
    let origin = clock.now();
    let ids: Vec<_> = (0..JOBS)
        .map(|i| {
            let runs = Arc::clone(&runs);
            // Spread over ~17 minutes, one-shot and repeating alike.
            let when = if i % 2 == 0 {
                When::at(origin + Duration::from_millis(1 + i))
            } else {
                When::every(Duration::from_secs(3_600 + i % 1_000))
            };
            scheduler
                .schedule(when, move || {
                    runs.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap()
        })
        .collect();
    let bytes = live() - before;
    let per_job = bytes as f64 / JOBS as f64;
    println!(
        "1,000,000 jobs: {:.1} MiB live, {per_job:.0} bytes per job (ids vector included: 8 B/job)",
        bytes as f64 / (1 << 20) as f64
    );
    assert_eq!(scheduler.len(), JOBS as usize);
    // A generous bound: a job is a closure, a table entry and a wheel entry.
    assert!(per_job < 384.0, "{per_job} bytes per job");

    // The first thousand one-shot jobs (due at 1..=2000 ms, even i) fire.
    clock.advance(Duration::from_millis(2_000));
    scheduler.settle();
    assert_eq!(runs.load(Ordering::Relaxed), 1_000);
    // Cancel every other remaining job; the rest are still listed with a
    // next run time.
    let cancelled = ids
        .iter()
        .skip(2_000)
        .step_by(2)
        .filter(|&&id| scheduler.cancel(id))
        .count();
    assert_eq!(cancelled, 499_000);
    assert_eq!(scheduler.len(), (JOBS as usize) - 1_000 - 499_000);
    let report = scheduler.shutdown(Duration::MAX);
    assert_eq!(report.runs, 1_000);
    assert_eq!(report.pending_jobs, 500_000);
}
