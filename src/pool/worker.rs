//! The worker threads: take a task, run it (or hand it back under abort),
//! account for it, repeat until the queue is closed and empty.

use std::time::Instant;

use crate::clock::{saturating_nanos, Clock};

use crate::clock::deadline_after;
use crate::sync::atomic::Ordering;
use crate::sync::thread;
use crate::sync::Arc;
use crate::ConfigError;

use super::task::Ran;
use super::{Inner, WorkerCounters};

/// Spawns the workers; on a failed spawn, stops those already started.
pub(super) fn start(
    inner: &Arc<Inner>,
    workers: usize,
    pin: bool,
    name: &str,
) -> Result<(), ConfigError> {
    let cpus = if pin && !cfg!(sheaf_loom) {
        crate::topology::Topology::detect().one_cpu_per_core()
    } else {
        Vec::new()
    };
    for index in 0..workers {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let worker = Arc::clone(inner);
        let spawned = thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::topology::pin_current_thread(cpu);
                }
                run(&worker, index);
            });
        match spawned {
            Ok(handle) => inner.threads.lock().push(handle),
            Err(e) => {
                // Workers never started count as exited; stop the others.
                inner.live.fetch_sub(workers - index, Ordering::SeqCst);
                inner.tx.close();
                return Err(ConfigError::new(
                    "workers",
                    format!("worker thread {index} could not start ({e}); give fewer workers"),
                ));
            }
        }
    }
    Ok(())
}

fn run(inner: &Inner, index: usize) {
    let counters = &inner.counters[index];
    let clock = &*inner.clock;
    // Busy time is counted per busy period (from a wake-up with work to the
    // queue running dry), so a stream of tiny tasks costs no clock reads.
    let mut busy_since: Option<Instant> = None;
    loop {
        let job = match inner.rx.try_recv() {
            Ok(job) => job,
            Err(_) => {
                end_busy(clock, counters, &mut busy_since);
                match inner.rx.recv() {
                    Ok(job) => job,
                    Err(_) => break, // closed, and nothing left in the queue
                }
            }
        };
        if busy_since.is_none() {
            busy_since = Some(clock.now());
        }
        if inner.abort.load(Ordering::SeqCst) {
            inner.hand_back(job);
        } else {
            run_one(inner, counters, job);
        }
    }
    end_busy(clock, counters, &mut busy_since);
    inner.live.fetch_sub(1, Ordering::SeqCst);
    inner.changed.notify_all();
}

fn end_busy(clock: &dyn Clock, counters: &WorkerCounters, busy_since: &mut Option<Instant>) {
    if let Some(since) = busy_since.take() {
        let busy = clock.now().saturating_duration_since(since);
        counters
            .busy_nanos
            .fetch_add(saturating_nanos(busy), Ordering::Relaxed);
    }
}

fn run_one(inner: &Inner, counters: &WorkerCounters, mut job: super::Packed) {
    counters.started.fetch_add(1, Ordering::Relaxed);
    let clock = &*inner.clock;
    // The clock is read per task only for a task timeout.
    let deadline = inner
        .task_timeout
        .and_then(|t| deadline_after(clock.now(), t));
    let mut account = |ran: &Ran, overran: bool| {
        let counter = match ran {
            Ran::Returned => &counters.completed,
            Ran::Panicked => &counters.panicked,
            Ran::Skipped => &counters.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if overran {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    };
    job.job().run(&inner.abort, deadline, clock, &mut account);
}
