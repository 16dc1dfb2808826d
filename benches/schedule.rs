//! The scheduler: `sheaf::schedule::Scheduler` (timer wheel) against a
//! `BinaryHeap` + `Condvar` scheduler, the usual hand-rolled design (one
//! lock, a heap of deadlines, cancellation by lazy deletion through a set
//! of cancelled ids, one thread that sleeps on the condvar until the
//! earliest deadline and runs the job inline).
//!
//! Groups (parameter = live jobs, 10,000 and 1,000,000, all due in an hour,
//! scheduled untimed before the group):
//! - `schedule/schedule+cancel`: per iteration, 1,000 one-shot jobs
//!   scheduled 30 minutes out and then cancelled; throughput is pairs/s.
//! - fire lateness (printed, not a criterion group): 2,000 jobs due 10 to
//!   210 ms from now, on top of the live jobs; each records how late it ran
//!   (its run start minus its deadline; the wheel's 100 µs ticks round a
//!   deadline up, so up to 0.1 ms of that is resolution). Printed as
//!   `LATENCY schedule/lateness/<impl>/<live> p50=..us p99=..us max=..us`.
//!
//! Both run jobs on their own thread for the lateness pass (sheaf: on its
//! pool, 2 workers). tokio-cron-scheduler is not included (not a
//! dependency; see BENCHMARKS.md).
//!
//! Run: `cargo bench --bench schedule -- --warm-up-time 1 --measurement-time 2`

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheaf::hash::FastBuildHasher;
use sheaf::pool::WorkerPool;
use sheaf::schedule::{JobId, Scheduler};

type HeapJob = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct HeapState {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    jobs: HashMap<u64, HeapJob, FastBuildHasher>,
    cancelled: HashSet<u64, FastBuildHasher>,
    next_id: u64,
    stop: bool,
}

/// The peer: a heap of deadlines under one mutex and a condvar.
struct HeapScheduler {
    state: Arc<(Mutex<HeapState>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HeapScheduler {
    fn new() -> Self {
        let state: Arc<(Mutex<HeapState>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        let thread = thread::spawn(move || {
            let (lock, cv) = &*shared;
            let mut s = lock.lock().unwrap();
            loop {
                if s.stop {
                    return;
                }
                let now = Instant::now();
                match s.heap.peek().copied() {
                    Some(Reverse((at, id))) if at <= now => {
                        s.heap.pop();
                        if s.cancelled.remove(&id) {
                            continue;
                        }
                        if let Some(job) = s.jobs.remove(&id) {
                            drop(s);
                            job();
                            s = lock.lock().unwrap();
                        }
                    }
                    Some(Reverse((at, _))) => s = cv.wait_timeout(s, at - now).unwrap().0,
                    None => s = cv.wait(s).unwrap(),
                }
            }
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    fn schedule(&self, at: Instant, job: impl FnOnce() + Send + 'static) -> u64 {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        let id = s.next_id;
        s.next_id += 1;
        let earliest = s.heap.peek().map_or(true, |Reverse((e, _))| at < *e);
        s.heap.push(Reverse((at, id)));
        s.jobs.insert(id, Box::new(job));
        drop(s);
        if earliest {
            cv.notify_one();
        }
        id
    }

    fn cancel(&self, id: u64) -> bool {
        let mut s = self.state.0.lock().unwrap();
        if s.jobs.remove(&id).is_some() {
            s.cancelled.insert(id);
            true
        } else {
            false
        }
    }
}

impl Drop for HeapScheduler {
    fn drop(&mut self) {
        self.state.0.lock().unwrap().stop = true;
        self.state.1.notify_all();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

const BATCH: u64 = 1_000;
const LATE_JOBS: u64 = 2_000;

fn sheaf_scheduler() -> Scheduler {
    let pool = WorkerPool::builder().workers(2).build().unwrap();
    Scheduler::builder().pool(pool).build().unwrap()
}

fn populate_sheaf(s: &Scheduler, live: u64) -> Vec<JobId> {
    let far = Instant::now() + Duration::from_secs(3_600);
    (0..live)
        .map(|i| s.at(far + Duration::from_micros(i), || {}).unwrap())
        .collect()
}

fn populate_heap(s: &HeapScheduler, live: u64) {
    let far = Instant::now() + Duration::from_secs(3_600);
    for i in 0..live {
        s.schedule(far + Duration::from_micros(i), || {});
    }
}

fn report(name: &str, live: u64, lateness: &Mutex<Vec<u64>>) {
    let mut l = lateness.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() - 1) as f64 * p) as usize] / 1_000;
    println!(
        "LATENCY schedule/lateness/{name}/{live} p50={}us p99={}us max={}us n={}",
        pct(0.5),
        pct(0.99),
        l[l.len() - 1] / 1_000,
        l.len()
    );
}

fn wait_for(done: &AtomicU64, n: u64) {
    while done.load(Ordering::Relaxed) < n {
        thread::sleep(Duration::from_millis(5));
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule/schedule+cancel");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    for live in [10_000u64, 1_000_000] {
        {
            let s = sheaf_scheduler();
            populate_sheaf(&s, live);
            // Fire lateness with `live` jobs waiting.
            let lateness = Arc::new(Mutex::new(Vec::new()));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now() + Duration::from_millis(10);
            for i in 0..LATE_JOBS {
                let due = start + Duration::from_micros(i * 100);
                let (lateness, done) = (Arc::clone(&lateness), Arc::clone(&done));
                s.at(due, move || {
                    let late = Instant::now().saturating_duration_since(due);
                    lateness.lock().unwrap().push(late.as_nanos() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            }
            wait_for(&done, LATE_JOBS);
            report("sheaf", live, &lateness);
            group.bench_with_input(BenchmarkId::new("sheaf", live), &live, |b, _| {
                let later = Instant::now() + Duration::from_secs(1_800);
                b.iter(|| {
                    for i in 0..BATCH {
                        let id = s.at(later + Duration::from_micros(i), || {}).unwrap();
                        assert!(s.cancel(id));
                    }
                });
            });
            let _report = s.shutdown(Duration::from_secs(5));
        }
        {
            let s = HeapScheduler::new();
            populate_heap(&s, live);
            let lateness = Arc::new(Mutex::new(Vec::new()));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now() + Duration::from_millis(10);
            for i in 0..LATE_JOBS {
                let due = start + Duration::from_micros(i * 100);
                let (lateness, done) = (Arc::clone(&lateness), Arc::clone(&done));
                s.schedule(due, move || {
                    let late = Instant::now().saturating_duration_since(due);
                    lateness.lock().unwrap().push(late.as_nanos() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                });
            }
            wait_for(&done, LATE_JOBS);
            report("binaryheap-condvar", live, &lateness);
            group.bench_with_input(
                BenchmarkId::new("binaryheap-condvar", live),
                &live,
                |b, _| {
                    let later = Instant::now() + Duration::from_secs(1_800);
                    b.iter(|| {
                        for i in 0..BATCH {
                            let id = s.schedule(later + Duration::from_micros(i), || {});
                            assert!(s.cancel(id));
                        }
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
