use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;

const FOREVER: Duration = Duration::MAX;

/// Occupies one worker until the returned sender is used (or dropped);
/// returns once the task is running.
fn occupy(pool: &WorkerPool) -> (Task<()>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let task = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
        .unwrap();
    started_rx.recv().unwrap();
    (task, release_tx)
}

#[test]
fn every_task_from_many_submitters_runs_exactly_once() {
    const THREADS: usize = 4;
    const TASKS: usize = 2_000;
    let pool = WorkerPool::builder()
        .workers(3)
        .queue_capacity(64)
        .build()
        .unwrap();
    let runs: Arc<Vec<AtomicU8>> =
        Arc::new((0..THREADS * TASKS).map(|_| AtomicU8::new(0)).collect());
    let submitters: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, runs) = (pool.clone(), Arc::clone(&runs));
            std::thread::spawn(move || {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let id = t * TASKS + i;
                        let runs = Arc::clone(&runs);
                        pool.submit(move || {
                            runs[id].fetch_add(1, Ordering::Relaxed);
                            id as u64
                        })
                        .unwrap()
                    })
                    .collect();
                tasks
                    .into_iter()
                    .enumerate()
                    .map(|(i, task)| {
                        assert_eq!(task.join(), Ok((t * TASKS + i) as u64));
                    })
                    .count()
            })
        })
        .collect();
    let joined: usize = submitters.into_iter().map(|s| s.join().unwrap()).sum();
    assert_eq!(joined, THREADS * TASKS);
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!(report.completed, (THREADS * TASKS) as u64);
    assert_eq!(
        (report.panicked, report.not_run, report.still_running),
        (0, 0, 0)
    );
    assert!(!report.deadline_missed);
    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.running, stats.rejected), (0, 0, 0));
    assert_eq!(stats.busy.len(), 3);
}

#[test]
fn drain_runs_everything_queued_and_results_wait_for_their_reader() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let (blocker, release) = occupy(&pool);
    let tasks: Vec<_> = (0..100u64)
        .map(|i| pool.submit(move || i + 1).unwrap())
        .collect();
    assert_eq!(pool.stats().queued, 100);
    release.send(()).unwrap();
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!(report.completed, 101);
    assert!(report.unrun.is_empty());
    // Nobody read a result during the run: every one is still there.
    blocker.join().unwrap();
    let values: Vec<u64> = tasks.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(values, (1..=100).collect::<Vec<_>>());
}

#[test]
fn abort_hands_queued_tasks_back_and_cancels_the_running_one() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let running = pool
        .submit_with_cancel(move |cancel| {
            started_tx.send(()).unwrap();
            while !cancel.is_cancelled() {
                std::thread::yield_now();
            }
            "stopped early"
        })
        .unwrap();
    started_rx.recv().unwrap();
    let tasks: Vec<_> = (0..50u64)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    let mut report = pool.shutdown(FOREVER, ShutdownMode::Abort);
    assert_eq!(running.join(), Ok("stopped early"));
    assert_eq!((report.completed, report.not_run), (1, 50));
    assert_eq!(report.unrun.len(), 50);
    // Run the first half of the handed-back tasks here; drop the rest.
    let rest = report.unrun.split_off(25);
    for queued in report.unrun.drain(..) {
        assert!(queued.run());
    }
    drop(rest);
    // The worker and the shutdown both hand tasks back, so which 25 ran
    // depends on the interleaving; each ran once, with its own value.
    let (mut ran, mut not_run) = (0, 0);
    for (i, task) in tasks.into_iter().enumerate() {
        match task.join() {
            Ok(v) => {
                assert_eq!(v, i as u64);
                ran += 1;
            }
            Err(e) => {
                assert_eq!(e, TaskError::NotRun);
                not_run += 1;
            }
        }
    }
    assert_eq!((ran, not_run), (25, 25));
    assert_eq!(pool.stats().not_run, 50);
}

#[test]
fn submit_racing_abort_every_task_accounted_for() {
    const THREADS: usize = 3;
    const TASKS: usize = 500;
    for _ in 0..5 {
        let pool = WorkerPool::builder()
            .workers(2)
            .queue_capacity(16)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let submitters: Vec<_> = (0..THREADS)
            .map(|_| {
                let (pool, ran) = (pool.clone(), Arc::clone(&ran));
                std::thread::spawn(move || {
                    let mut accepted = Vec::new();
                    let mut rejected = 0u64;
                    for i in 0..TASKS {
                        let ran = Arc::clone(&ran);
                        match pool.submit(move || {
                            ran.fetch_add(1, Ordering::Relaxed);
                            i
                        }) {
                            Ok(task) => accepted.push((i, task)),
                            Err(rejection) => {
                                assert_eq!(rejection.reason(), RejectReason::ShutDown);
                                rejected += 1;
                            }
                        }
                    }
                    (accepted, rejected)
                })
            })
            .collect();
        std::thread::yield_now();
        let report = pool.shutdown(FOREVER, ShutdownMode::Abort);
        let unrun = report.unrun.len() as u64;
        drop(report.unrun);
        let (mut ok, mut not_run, mut rejected) = (0u64, 0u64, 0u64);
        for submitter in submitters {
            let (accepted, refused) = submitter.join().unwrap();
            rejected += refused;
            for (i, task) in accepted {
                match task.join() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        ok += 1;
                    }
                    Err(TaskError::NotRun) => not_run += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        }
        assert_eq!(ok, report.completed);
        assert_eq!(ok, ran.load(Ordering::Relaxed));
        assert_eq!(not_run, unrun);
        assert_eq!(ok + not_run + rejected, (THREADS * TASKS) as u64);
        assert_eq!(pool.stats().rejected, rejected);
    }
}

#[test]
fn panics_are_isolated_counted_and_returned() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    let tasks: Vec<_> = (0..30u64)
        .map(|i| {
            pool.submit(move || {
                if i % 3 == 0 {
                    panic!("task {i} failed");
                }
                i
            })
            .unwrap()
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.join() {
            Ok(v) => assert_eq!(v, i as u64),
            Err(TaskError::Panicked(message)) => {
                assert_eq!(i % 3, 0);
                assert_eq!(message, format!("task {i} failed"));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    pool.spawn(|| panic!("fire and forget")).unwrap();
    // Both workers survived: they still run tasks.
    assert_eq!(pool.submit(|| 5).unwrap().join(), Ok(5));
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!((report.completed, report.panicked), (21, 11));
}

#[test]
fn an_overrunning_task_is_reported_and_its_value_kept() {
    let clock = ManualClock::new();
    let pool = WorkerPool::builder()
        .workers(1)
        .task_timeout(Duration::from_millis(10))
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let quick = pool.submit(|| 1).unwrap();
    assert_eq!(quick.join(), Ok(1));
    let (started_tx, started_rx) = mpsc::channel();
    let slow = pool
        .submit_with_cancel(move |cancel| {
            started_tx.send(cancel.deadline()).unwrap();
            while !cancel.is_cancelled() {
                std::thread::yield_now();
            }
            2
        })
        .unwrap();
    let deadline = started_rx.recv().unwrap().expect("a timeout was set");
    assert_eq!(deadline, clock.now() + Duration::from_millis(10));
    clock.advance(Duration::from_millis(10));
    while !slow.is_finished() {
        std::thread::yield_now();
    }
    assert!(slow.overran());
    assert_eq!(slow.join(), Ok(2));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.timed_out), (2, 1));
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!(report.timed_out, 1);
    // Busy periods are closed when the queue runs dry (here, at exit);
    // measured on the manual clock, so exactly the 10 ms it was advanced.
    assert_eq!(pool.stats().busy, vec![Duration::from_millis(10)]);
}

#[test]
fn reject_hands_the_task_back() {
    let pool = WorkerPool::builder()
        .workers(1)
        .queue_capacity(2)
        .overflow(Overflow::Reject)
        .build()
        .unwrap();
    let (_blocker, release) = occupy(&pool);
    let a = pool.submit(|| 1).unwrap();
    let b = pool.submit(|| 2).unwrap();
    let rejected = pool.submit(|| 3).unwrap_err();
    assert_eq!(rejected.reason(), RejectReason::Full);
    assert_eq!(rejected.into_inner()(), 3);
    assert_eq!(pool.stats().rejected, 1);
    release.send(()).unwrap();
    assert_eq!((a.join(), b.join()), (Ok(1), Ok(2)));
    pool.shutdown(FOREVER, ShutdownMode::Drain);
}

#[test]
fn drop_oldest_tells_the_dropped_task() {
    let pool = WorkerPool::builder()
        .workers(1)
        .queue_capacity(1)
        .overflow(Overflow::DropOldest)
        .build()
        .unwrap();
    let (_blocker, release) = occupy(&pool);
    let old = pool.submit(|| 1).unwrap();
    let new = pool.submit(|| 2).unwrap();
    assert_eq!(old.join(), Err(TaskError::NotRun));
    release.send(()).unwrap();
    assert_eq!(new.join(), Ok(2));
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!((report.completed, report.dropped), (2, 1));
}

#[test]
fn cancel_before_start_and_while_running() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let (_blocker, release) = occupy(&pool);
    let queued = pool.submit(|| 1).unwrap();
    assert!(queued.cancel());
    assert!(queued.is_finished());
    assert_eq!(queued.join(), Err(TaskError::Cancelled));
    release.send(()).unwrap();

    let (started_tx, started_rx) = mpsc::channel();
    let running = pool
        .submit_with_cancel(move |cancel| {
            started_tx.send(()).unwrap();
            while !cancel.is_cancelled() {
                std::thread::yield_now();
            }
            7
        })
        .unwrap();
    started_rx.recv().unwrap();
    assert!(!running.cancel());
    assert_eq!(running.join(), Ok(7));
    let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
    assert_eq!((report.completed, report.cancelled), (2, 1));
}

#[test]
fn shutdown_is_idempotent_and_later_submits_come_back() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    pool.spawn(|| {}).unwrap();
    let first = pool.shutdown(FOREVER, ShutdownMode::Drain);
    let second = pool.shutdown(Duration::ZERO, ShutdownMode::Abort);
    assert_eq!(first.completed, 1);
    assert_eq!(
        (second.completed, second.deadline_missed),
        (first.completed, first.deadline_missed)
    );
    assert!(pool.is_shut_down());
    let late = pool.submit(|| 1).unwrap_err();
    assert_eq!(late.reason(), RejectReason::ShutDown);
    assert_eq!(pool.stats().rejected, 1);
}

#[test]
fn a_missed_drain_deadline_hands_the_rest_back_and_returns() {
    let clock = ManualClock::new();
    let pool = WorkerPool::builder()
        .workers(1)
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let (stuck, release) = occupy(&pool);
    let queued: Vec<_> = (0..5).map(|i| pool.submit(move || i).unwrap()).collect();
    let shutdown = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown(Duration::from_secs(1), ShutdownMode::Drain))
    };
    // The worker is stuck until released; the deadline (taken before the
    // pool closes) passes first.
    while !pool.is_shut_down() {
        std::thread::yield_now();
    }
    clock.advance(Duration::from_secs(1));
    let report = shutdown.join().unwrap();
    assert!(report.deadline_missed);
    assert_eq!((report.not_run, report.still_running), (5, 1));
    drop(report);
    for task in queued {
        assert_eq!(task.join(), Err(TaskError::NotRun));
    }
    release.send(()).unwrap();
    assert_eq!(stuck.join(), Ok(()));
}

#[test]
fn dropping_the_last_handle_finishes_the_queue() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    let tasks: Vec<_> = (0..200u64)
        .map(|i| pool.submit(move || i).unwrap())
        .collect();
    drop(pool);
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.join(), Ok(i as u64));
    }
}

#[test]
fn join_timeout_hands_the_task_back() {
    let pool = WorkerPool::builder().workers(1).build().unwrap();
    let (_blocker, release) = occupy(&pool);
    let task = pool.submit(|| 3).unwrap();
    let task = task.join_timeout(Duration::ZERO).unwrap_err();
    release.send(()).unwrap();
    assert_eq!(task.join_timeout(Duration::MAX).unwrap(), Ok(3));
}

#[cfg(feature = "async")]
#[test]
fn a_task_is_a_future() {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..50u64)
        .map(|i| pool.submit(move || i * 2).unwrap())
        .collect();
    let sum = runtime.block_on(async {
        let mut sum = 0;
        for task in tasks {
            sum += task.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 2450);
}

#[test]
fn bad_settings_are_errors() {
    let err = WorkerPool::builder().workers(0).build().unwrap_err();
    assert_eq!(err.setting(), "workers");
    let err = WorkerPool::builder().queue_capacity(0).build().unwrap_err();
    assert_eq!(err.setting(), "queue_capacity");
    // The default is one worker per physical core (at least one).
    let pool = WorkerPool::builder().pin(true).build().unwrap();
    assert!(pool.workers() >= 1);
    assert_eq!(pool.submit(|| 1).unwrap().join(), Ok(1));
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<WorkerPool>();
    send_sync::<Task<u64>>();
    send::<QueuedTask>();
    send::<PoolReport>();
}
