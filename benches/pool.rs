//! Worker pools: `sheaf::pool::WorkerPool` against rayon, tokio's blocking
//! pool, threadpool, and a crossbeam channel feeding N threads.
//!
//! Implementations (criterion function ids), each with `WORKERS` worker
//! threads (the machine's available parallelism), built once per group:
//! - `sheaf`: `WorkerPool::builder().workers(W)` (queue 4096, Block), `spawn`;
//! - `rayon`: `ThreadPoolBuilder::new().num_threads(W)`, `ThreadPool::spawn`;
//! - `tokio-spawn_blocking`: a multi-thread runtime with 1 core worker and
//!   `max_blocking_threads(W)`, `Handle::spawn_blocking` (handle dropped);
//! - `threadpool`: `ThreadPool::new(W)`, `execute`;
//! - `crossbeam-channel`: `bounded::<Box<dyn FnOnce() + Send>>(4096)` and
//!   W threads receiving and calling.
//!
//! Groups (`pool/<workload>`, parameter = submitting threads 1, 2, 8):
//! - `pool/tiny`: 100,000 tasks per iteration, each a relaxed add to one
//!   static counter (the task captures nothing, so no pool pays an `Arc`
//!   clone and drop per task);
//! - `pool/10us`: 20,000 tasks per iteration, each spinning 10 µs.
//!
//! One iteration spawns the submitters, releases them together (a barrier)
//! and is timed until the shared counter shows every task done (so no pool
//! can win by not running tasks). Criterion's throughput is tasks/s.
//! Before each tiny-task group, an untimed pass per implementation records
//! submit-to-start latency of every task (the submitter's `Instant` moved
//! into the task, read at its start) and prints
//! `LATENCY pool/<impl>/<submitters> p50=..ns p99=..ns`.
//!
//! Run: `cargo bench --bench pool -- --warm-up-time 1 --measurement-time 2`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sheaf::pool::WorkerPool;

type Job = Box<dyn FnOnce() + Send>;

enum Pool {
    Sheaf(WorkerPool),
    Rayon(rayon::ThreadPool),
    Tokio(tokio::runtime::Runtime),
    ThreadPool(threadpool::ThreadPool),
    Crossbeam(crossbeam_channel::Sender<Job>),
}

impl Pool {
    fn name(&self) -> &'static str {
        match self {
            Pool::Sheaf(_) => "sheaf",
            Pool::Rayon(_) => "rayon",
            Pool::Tokio(_) => "tokio-spawn_blocking",
            Pool::ThreadPool(_) => "threadpool",
            Pool::Crossbeam(_) => "crossbeam-channel",
        }
    }

    fn all(workers: usize) -> Vec<Pool> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(4096);
        // The receiving threads end when the sender is dropped.
        for _ in 0..workers {
            let rx = rx.clone();
            thread::spawn(move || {
                for job in rx {
                    job();
                }
            });
        }
        vec![
            Pool::Sheaf(WorkerPool::builder().workers(workers).build().unwrap()),
            Pool::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .build()
                    .unwrap(),
            ),
            Pool::Tokio(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .max_blocking_threads(workers)
                    .build()
                    .unwrap(),
            ),
            Pool::ThreadPool(threadpool::ThreadPool::new(workers)),
            Pool::Crossbeam(tx),
        ]
    }

    fn submit(&self, f: impl FnOnce() + Send + 'static) {
        match self {
            Pool::Sheaf(pool) => pool.spawn(f).unwrap(),
            Pool::Rayon(pool) => pool.spawn(f),
            Pool::Tokio(rt) => drop(rt.handle().spawn_blocking(f)),
            Pool::ThreadPool(pool) => pool.execute(f),
            Pool::Crossbeam(tx) => tx.send(Box::new(f)).unwrap(),
        }
    }
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs `tasks` tasks from `submitters` threads; returns the time from
/// the release to the last task done.
fn run(pool: &Arc<Pool>, submitters: usize, tasks: u64, work: Option<Duration>) -> Duration {
    // A static counter: a task that captured an `Arc` would add two more
    // contended atomic operations (clone, drop) on the counter's line to
    // every task, for every pool alike, drowning what the pools differ in.
    // Every task of the previous run has counted before that run returned.
    static DONE: AtomicU64 = AtomicU64::new(0);
    let done: &'static AtomicU64 = &DONE;
    done.store(0, Ordering::Relaxed);
    let barrier = Arc::new(Barrier::new(submitters + 1));
    let per = tasks / submitters as u64;
    let handles: Vec<_> = (0..submitters)
        .map(|_| {
            let (pool, barrier) = (Arc::clone(pool), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    pool.submit(move || {
                        if let Some(d) = work {
                            spin(d);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let target = per * submitters as u64;
    while done.load(Ordering::Relaxed) < target {
        thread::yield_now();
    }
    let elapsed = start.elapsed();
    for h in handles {
        h.join().unwrap();
    }
    elapsed
}

/// Submit-to-start latency of every task, in ns, sorted.
fn latencies(pool: &Arc<Pool>, submitters: usize, tasks: u64) -> Vec<u64> {
    let per = tasks / submitters as u64;
    let slots: Arc<Vec<AtomicU64>> = Arc::new(
        (0..per * submitters as u64)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let done = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(submitters));
    let handles: Vec<_> = (0..submitters as u64)
        .map(|s| {
            let (pool, slots, done, barrier) = (
                Arc::clone(pool),
                Arc::clone(&slots),
                Arc::clone(&done),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let (slots, done) = (Arc::clone(&slots), Arc::clone(&done));
                    let submitted = Instant::now();
                    pool.submit(move || {
                        let waited = submitted.elapsed().as_nanos() as u64;
                        slots[(s * per + i) as usize].store(waited, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    while done.load(Ordering::Relaxed) < per * submitters as u64 {
        thread::yield_now();
    }
    let mut all: Vec<u64> = slots.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    all.sort_unstable();
    all
}

fn workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

fn bench(c: &mut Criterion) {
    let pools: Vec<Arc<Pool>> = Pool::all(workers()).into_iter().map(Arc::new).collect();
    let submitter_counts = [1, 2, 8];
    for (name, tasks, work) in [
        ("tiny", 100_000u64, None),
        ("10us", 20_000u64, Some(Duration::from_micros(10))),
    ] {
        if work.is_none() {
            for &s in &submitter_counts {
                for pool in &pools {
                    let lat = latencies(pool, s, tasks);
                    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
                    println!(
                        "LATENCY pool/{}/{s} p50={}ns p99={}ns",
                        pool.name(),
                        pct(0.50),
                        pct(0.99)
                    );
                }
            }
        }
        let mut group = c.benchmark_group(format!("pool/{name}"));
        group.throughput(Throughput::Elements(tasks));
        group.sample_size(10);
        for &s in &submitter_counts {
            for pool in &pools {
                group.bench_with_input(BenchmarkId::new(pool.name(), s), &s, |b, &s| {
                    b.iter_custom(|iters| (0..iters).map(|_| run(pool, s, tasks, work)).sum());
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
