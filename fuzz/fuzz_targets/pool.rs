//! Fuzzing `sheaf::pool::WorkerPool` against a model of each task's outcome.
//!
//! Ops submit tasks (some panic, some are `spawn`ed), cancel handles and
//! read `stats`; the run ends with a Drain or Abort shutdown. Then every
//! handle is joined and checked: a task whose `cancel` returned `true` is
//! `Cancelled`; any other returns its value or its panic message (Drain),
//! or may instead be `NotRun` when it came back unrun (Abort, its
//! `QueuedTask` dropped); the report's counts equal the handles' outcomes.
//!
//! Run: `cargo +nightly fuzz run pool -- -max_total_time=20`
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::pool::{ShutdownMode, Task, TaskError, WorkerPool};

#[derive(Arbitrary, Debug)]
enum Op {
    Submit(u16),
    Panic(u16),
    Spawn,
    Cancel(u8),
    Stats,
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(ops) = Unstructured::new(rest).arbitrary::<Vec<Op>>() else {
        return;
    };
    std::panic::set_hook(Box::new(|_| {})); // task panics are expected
    let pool = WorkerPool::builder()
        .workers(usize::from(first % 3) + 1)
        .queue_capacity(usize::from(first >> 4) + 1)
        .build()
        .unwrap();
    let mut tasks: Vec<(u16, bool, Task<u16>, bool)> = Vec::new(); // value, panics, handle, cancelled
    let mut spawned = 0u64;
    for op in ops.into_iter().take(200) {
        match op {
            Op::Submit(v) => tasks.push((v, false, pool.submit(move || v).unwrap(), false)),
            Op::Panic(v) => tasks.push((
                v,
                true,
                pool.submit(move || -> u16 { panic!("task {v}") }).unwrap(),
                false,
            )),
            Op::Spawn => {
                pool.spawn(|| {}).unwrap();
                spawned += 1;
            }
            Op::Cancel(i) => {
                let n = tasks.len().max(1);
                if let Some(entry) = tasks.get_mut(usize::from(i) % n) {
                    entry.3 |= entry.2.cancel();
                }
            }
            Op::Stats => {
                let stats = pool.stats();
                assert!(stats.queued <= pool_capacity(first));
            }
        }
    }
    let mode = if first & 8 == 0 {
        ShutdownMode::Drain
    } else {
        ShutdownMode::Abort
    };
    let mut report = pool.shutdown(Duration::MAX, mode);
    assert!(!report.deadline_missed);
    let unrun = report.unrun.len() as u64;
    report.unrun.clear();
    let accepted = tasks.len() as u64 + spawned;
    let (mut completed, mut panicked, mut not_run, mut cancelled) = (0u64, 0u64, 0u64, 0u64);
    for (v, panics, task, was_cancelled) in tasks {
        match task.join() {
            Ok(got) => {
                assert!(!panics && !was_cancelled);
                assert_eq!(got, v);
                completed += 1;
            }
            Err(TaskError::Panicked(message)) => {
                assert!(panics && !was_cancelled);
                assert_eq!(message, format!("task {v}"));
                panicked += 1;
            }
            Err(TaskError::Cancelled) => {
                assert!(was_cancelled);
                cancelled += 1;
            }
            Err(TaskError::NotRun) => {
                assert!(mode == ShutdownMode::Abort && !was_cancelled);
                not_run += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Every accepted task ran, was skipped as cancelled by a worker, or
    // came back unrun (a cancelled one may come back too: its handle
    // already said Cancelled).
    assert_eq!(report.panicked, panicked);
    assert!(report.cancelled <= cancelled);
    assert!(not_run <= unrun);
    assert_eq!(
        report.completed + report.panicked + report.cancelled + unrun,
        accepted
    );
    if mode == ShutdownMode::Drain {
        assert_eq!((unrun, not_run), (0, 0));
        assert_eq!(report.cancelled, cancelled);
        assert_eq!(report.completed, completed + spawned);
    }
});

fn pool_capacity(first: u8) -> usize {
    usize::from(first >> 4) + 1
}
