//! Differential fuzzing of `sheaf::schedule::Scheduler` on a manual clock
//! against a model that computes fire times directly.
//!
//! Ops: add a fixed-rate job (period and first run in ms), add a one-shot
//! job, cancel a job, advance the clock. After each op the scheduler
//! settles and every job's runs so far must equal the model's: a job whose
//! next occurrence `s` passed by the time `t` runs once at `t` (the default
//! `Misfire::RunOnce`), and its next occurrence is the first on its grid
//! after `t`; a one-shot job runs once at the first advance past its time.
//!
//! Run: `cargo +nightly fuzz run schedule -- -max_total_time=20`
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::clock::{Clock, ManualClock};
use sheaf::pool::WorkerPool;
use sheaf::schedule::{JobId, Scheduler, When};

#[derive(Arbitrary, Debug)]
enum Op {
    Every { period: u8, first: u8 },
    At { at: u8 },
    Cancel(u8),
    Advance(u8),
}

struct ModelJob {
    id: JobId,
    /// Next due time in ms; `period` 0 for one-shot.
    next: u64,
    period: u64,
    runs: Vec<u64>,
    live: bool,
}

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = Unstructured::new(data).arbitrary::<Vec<Op>>() else {
        return;
    };
    let clock = ManualClock::starting_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let pool = WorkerPool::builder()
        .workers(1)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let scheduler = Scheduler::builder()
        .clock(Arc::new(clock.clone()))
        .pool(pool.clone())
        .seed(0)
        .build()
        .unwrap();
    let log: Arc<Mutex<Vec<(usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let origin = clock.now();
    let mut model: Vec<ModelJob> = Vec::new();
    let mut now = 0u64;
    for op in ops.into_iter().take(64) {
        match op {
            Op::Every { period, first } => {
                let (period, first) = (u64::from(period % 50) + 1, now + u64::from(first % 50));
                let (index, log, clock) = (model.len(), Arc::clone(&log), clock.clone());
                let id = scheduler
                    .schedule(
                        When::every_from(
                            origin + Duration::from_millis(first),
                            Duration::from_millis(period),
                        ),
                        move || {
                            log.lock()
                                .unwrap()
                                .push((index, clock.elapsed().as_millis() as u64))
                        },
                    )
                    .unwrap();
                model.push(ModelJob {
                    id,
                    next: first,
                    period,
                    runs: Vec::new(),
                    live: true,
                });
            }
            Op::At { at } => {
                let at = now + u64::from(at % 100);
                let (index, log, clock) = (model.len(), Arc::clone(&log), clock.clone());
                let id = scheduler
                    .at(origin + Duration::from_millis(at), move || {
                        log.lock()
                            .unwrap()
                            .push((index, clock.elapsed().as_millis() as u64))
                    })
                    .unwrap();
                model.push(ModelJob {
                    id,
                    next: at,
                    period: 0,
                    runs: Vec::new(),
                    live: true,
                });
            }
            Op::Cancel(i) => {
                if model.is_empty() {
                    continue;
                }
                let n = model.len();
                let job = &mut model[usize::from(i) % n];
                let cancelled = scheduler.cancel(job.id);
                assert_eq!(cancelled, job.live, "cancel of {:?}", job.id);
                job.live = false;
            }
            Op::Advance(ms) => {
                now += u64::from(ms % 100);
                clock.set(Duration::from_millis(now));
            }
        }
        // Whatever the op, everything due by now fires (a job added due
        // now fires at once).
        scheduler.settle();
        {
            {
                for job in model.iter_mut().filter(|j| j.live && j.next <= now) {
                    job.runs.push(now);
                    match (now - job.next).checked_div(job.period) {
                        None => job.live = false, // one-shot (period 0)
                        Some(missed) => job.next += (missed + 1) * job.period,
                    }
                }
                let log = log.lock().unwrap();
                for (index, job) in model.iter().enumerate() {
                    let runs: Vec<u64> = log
                        .iter()
                        .filter(|(i, _)| *i == index)
                        .map(|&(_, t)| t)
                        .collect();
                    assert_eq!(runs, job.runs, "job {index} at {now} ms");
                }
                let live = model.iter().filter(|j| j.live).count();
                assert_eq!(scheduler.len(), live);
            }
        }
    }
    let report = scheduler.shutdown(Duration::MAX);
    let runs: usize = model.iter().map(|j| j.runs.len()).sum();
    assert_eq!(report.runs, runs as u64);
    pool.shutdown(Duration::MAX, sheaf::pool::ShutdownMode::Drain);
});
