//! Loom models of the worker pool: the real `WorkerPool`, its worker
//! thread, the channel under it and the task handles, with every atomic,
//! lock, park and spawn taken from loom through `sheaf::sync`.
//!
//! Modelled (one worker, so each model has two or three threads):
//! - submit racing an abort: a task submitted while `shutdown(Abort)` runs
//!   is either refused (handed back to the submitter), run, or handed back
//!   in the report (its handle then reads `NotRun`); exactly one of these,
//!   and the report's counts agree;
//! - submit racing a drain: an accepted task always runs, its value reaches
//!   its handle;
//! - result handoff: a value stored by the worker reaches a handle joined on
//!   another thread (a lost wake-up leaves the joiner parked forever, which
//!   loom reports);
//! - cancel racing start: `cancel` returns `true` exactly when the task
//!   never runs.
//!
//! Timers are not modelled (loom has no clock): shutdown deadlines are
//! `Duration::MAX`, and there is no task timeout.
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test pool`
#![cfg(sheaf_loom)]

use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;
use sheaf::pool::{RejectReason, ShutdownMode, TaskError, WorkerPool};

const FOREVER: Duration = Duration::MAX;

fn pool() -> WorkerPool {
    WorkerPool::builder()
        .workers(1)
        .queue_capacity(2)
        .build()
        .unwrap()
}

#[test]
fn submit_racing_abort_is_run_refused_or_handed_back() {
    model(|| {
        let pool = pool();
        let ran = Arc::new(AtomicUsize::new(0));
        let submitter = {
            let (pool, ran) = (pool.clone(), Arc::clone(&ran));
            thread::spawn(move || {
                pool.submit(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    5u32
                })
            })
        };
        let report = pool.shutdown(FOREVER, ShutdownMode::Abort);
        let handed_back = report.unrun.len();
        drop(report.unrun);
        match submitter.join().unwrap() {
            Err(refused) => {
                assert_eq!(refused.reason(), RejectReason::ShutDown);
                assert_eq!(handed_back, 0);
                assert_eq!(ran.load(Ordering::SeqCst), 0);
            }
            Ok(task) => match task.join() {
                Ok(v) => {
                    assert_eq!(v, 5);
                    assert_eq!((report.completed, handed_back), (1, 0));
                    assert_eq!(ran.load(Ordering::SeqCst), 1);
                }
                Err(TaskError::NotRun) => {
                    assert_eq!((report.completed, handed_back), (0, 1));
                    assert_eq!(ran.load(Ordering::SeqCst), 0);
                }
                Err(e) => panic!("unexpected {e}"),
            },
        }
    });
}

#[test]
fn submit_racing_drain_accepted_tasks_run() {
    model(|| {
        let pool = pool();
        let submitter = {
            let pool = pool.clone();
            thread::spawn(move || pool.submit(|| 7u32).ok())
        };
        let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
        assert!(report.unrun.is_empty());
        match submitter.join().unwrap() {
            Some(task) => {
                assert_eq!(task.join(), Ok(7));
                assert_eq!(report.completed, 1);
            }
            None => assert_eq!(report.completed, 0),
        }
        assert!(!report.deadline_missed);
    });
}

#[test]
fn result_reaches_a_handle_joined_on_another_thread() {
    model(|| {
        let pool = pool();
        let task = pool.submit(|| String::from("done")).unwrap();
        let joiner = thread::spawn(move || task.join());
        assert_eq!(joiner.join().unwrap().as_deref(), Ok("done"));
        let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
        assert_eq!(report.completed, 1);
    });
}

#[test]
fn cancel_racing_start_decides_once() {
    model(|| {
        let pool = pool();
        let ran = Arc::new(AtomicUsize::new(0));
        let task = {
            let ran = Arc::clone(&ran);
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        let stopped = task.cancel();
        let outcome = task.join();
        let report = pool.shutdown(FOREVER, ShutdownMode::Drain);
        if stopped {
            assert_eq!(outcome, Err(TaskError::Cancelled));
            assert_eq!(ran.load(Ordering::SeqCst), 0);
            assert_eq!((report.completed, report.cancelled), (0, 1));
        } else {
            assert_eq!(outcome, Ok(()));
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            assert_eq!((report.completed, report.cancelled), (1, 0));
        }
    });
}
