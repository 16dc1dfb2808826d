//! Aggregator benchmarks.
//!
//! - `aggregator/hot5`: 5 hot `String` keys added by `&str` (no allocation
//!   once a key is held), every add merges +1, 1/2/8 threads (8 =
//!   oversubscribed on 2 cores). sheaf's aggregator with each merge
//!   (`sum` = `merge_with(Sum)`, `commutative` = a closure given to
//!   `merge_commutative`, both combined per core; `ordered` = a closure
//!   given to `merge`, one shared table), each with sheaf's default hasher
//!   and with foldhash (`-foldhash`, the peers' hasher); the raw table
//!   (`sheaf-table`, `upsert_ref`); and the maps a user would otherwise
//!   reach for.
//! - `aggregator/seed`: the dataAggregator README's headline — 1,000,000 adds
//!   from 1,000 already-spawned threads over 1,000 keys, timed from the
//!   barrier that releases them to the last value counted by the consumer.
//!   sheaf (`sheaf-sum`, `sheaf-commutative`, `sheaf-sum-foldhash`)
//!   against dashmap with a hand-written swap-out into a crossbeam channel.
//! - `aggregator/e2e`: 2 and 8 producers adding over 10,000 keys while flushes run
//!   every 10 ms and a consumer reads, against the raw table's upsert
//!   throughput on the same keys.
//!
//! Run: `cargo bench --bench aggregator`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use sheaf::hash::FastBuildHasher;
use sheaf::merge::Sum;
use sheaf::{Aggregator, ShardedTable};

mod common;
use common::thread_counts;

type Foldhash = foldhash::fast::RandomState;

const HOT: [&str; 5] = ["metric.0", "metric.1", "metric.2", "metric.3", "metric.4"];
const HOT_OPS: u64 = 200_000;

/// Runs `op(thread, i)` for `total` operations split over `threads`
/// threads released together; returns the time from release to the last join.
fn timed_threads(threads: usize, total: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    let per = total / threads as u64;
    thread::scope(|s| {
        for t in 0..threads {
            let (start, op) = (&start, &op);
            s.spawn(move || {
                start.wait();
                for i in 0..per {
                    op(t, i);
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // Scope end joins every thread.
        began
    })
    .elapsed()
}

/// The merge an `aggregator/hot5` or `aggregator/seed` row builds with.
#[derive(Clone, Copy)]
enum MergeKind {
    /// `merge_with(Sum)`: built in, commutative (per-core combining).
    Sum,
    /// `merge_commutative(|held, added| *held += added)`: a closure
    /// declared commutative (per-core combining).
    Commutative,
    /// `merge(|held, added| *held += added)`: a closure kept in add order
    /// (one shared table).
    Ordered,
}

impl MergeKind {
    const ALL: [(MergeKind, &'static str); 3] = [
        (MergeKind::Sum, "sum"),
        (MergeKind::Commutative, "commutative"),
        (MergeKind::Ordered, "ordered"),
    ];

    fn build<K, S>(self, hasher: S) -> Aggregator<K, u64, S>
    where
        K: std::hash::Hash + Eq + Send + 'static,
        S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
    {
        let builder = Aggregator::<K, u64>::builder()
            .output_capacity(4096)
            .hasher(hasher);
        match self {
            MergeKind::Sum => builder.merge_with(Sum),
            MergeKind::Commutative => builder.merge_commutative(|held, added| *held += added),
            MergeKind::Ordered => builder.merge(|held, added| *held += added),
        }
        .build()
        .unwrap()
    }
}

/// One `aggregator/hot5` row for a sheaf aggregator built by `make`; adds
/// by `&str` (`add_ref`: no allocation once a key is held) and checks
/// afterwards that every add was counted.
fn hot5_aggregator<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: usize,
    make: impl Fn() -> Aggregator<String, u64, S>,
) where
    S: std::hash::BuildHasher + Send + Sync + 'static,
{
    group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
        b.iter_custom(|iters| {
            let agg = make();
            let time = (0..iters)
                .map(|_| {
                    timed_threads(threads, HOT_OPS, |t, i| {
                        drop(agg.add_ref(HOT[(i as usize + t) % 5], 1))
                    })
                })
                .sum();
            let total: u64 = HOT.iter().map(|k| agg.get(*k).unwrap_or(0)).sum();
            assert_eq!(total, iters * (HOT_OPS / threads as u64) * threads as u64);
            time
        })
    });
}

/// `aggregator/hot5`: `String` keys added by `&str`. Every implementation
/// clones a key only when it is absent (dashmap `get_mut` then `entry`,
/// scc `update_sync` then `entry_sync`, the mutex map `get_mut` then
/// `insert`, sheaf `add_ref` / `upsert_ref`).
fn hot5(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregator/hot5");
    group.throughput(Throughput::Elements(HOT_OPS));
    for threads in thread_counts(&[1, 2, 8]) {
        for (kind, label) in MergeKind::ALL {
            hot5_aggregator(&mut group, &format!("sheaf-{label}"), threads, || {
                kind.build(FastBuildHasher)
            });
            hot5_aggregator(
                &mut group,
                &format!("sheaf-{label}-foldhash"),
                threads,
                || kind.build(Foldhash::default()),
            );
        }
        group.bench_with_input(
            BenchmarkId::new("dashmap", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let map: DashMap<String, u64, Foldhash> =
                        DashMap::with_hasher(Foldhash::default());
                    (0..iters)
                        .map(|_| {
                            timed_threads(threads, HOT_OPS, |t, i| {
                                let key = HOT[(i as usize + t) % 5];
                                match map.get_mut(key) {
                                    Some(mut v) => *v += 1,
                                    None => *map.entry(key.to_owned()).or_insert(0) += 1,
                                }
                            })
                        })
                        .sum()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("scc", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| {
                let map: scc::HashMap<String, u64, Foldhash> =
                    scc::HashMap::with_hasher(Foldhash::default());
                (0..iters)
                    .map(|_| {
                        timed_threads(threads, HOT_OPS, |t, i| {
                            let key = HOT[(i as usize + t) % 5];
                            if map.update_sync(key, |_, v| *v += 1).is_none() {
                                *map.entry_sync(key.to_owned()).or_insert(0).get_mut() += 1;
                            }
                        })
                    })
                    .sum()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("mutex-hashmap", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let map: Mutex<std::collections::HashMap<String, u64, Foldhash>> =
                        Mutex::default();
                    (0..iters)
                        .map(|_| {
                            timed_threads(threads, HOT_OPS, |t, i| {
                                let key = HOT[(i as usize + t) % 5];
                                let mut map = map.lock().unwrap();
                                match map.get_mut(key) {
                                    Some(v) => *v += 1,
                                    None => {
                                        map.insert(key.to_owned(), 1);
                                    }
                                }
                            })
                        })
                        .sum()
                })
            },
        );
        fn table_row<S: std::hash::BuildHasher + Sync>(
            group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
            name: &str,
            threads: usize,
            hasher: S,
        ) {
            let table: ShardedTable<String, u64, S> =
                ShardedTable::builder().hasher(hasher).build().unwrap();
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            timed_threads(threads, HOT_OPS, |t, i| {
                                black_box(table.upsert_ref(
                                    HOT[(i as usize + t) % 5],
                                    1,
                                    |a, b| *a += b,
                                ));
                            })
                        })
                        .sum()
                })
            });
        }
        table_row(&mut group, "sheaf-table", threads, FastBuildHasher);
        table_row(
            &mut group,
            "sheaf-table-foldhash",
            threads,
            Foldhash::default(),
        );
    }
    group.finish();
}

const SEED_THREADS: usize = 1_000;
const SEED_ADDS: u64 = 1_000_000;
const SEED_KEYS: u64 = 1_000;

/// Spawns 1,000 small-stack threads waiting on a barrier; `work(t)` runs in
/// each once released; `finish()` runs on the caller after release and
/// returns when the last value is counted. Returns release → finish time.
fn seed_run(work: impl Fn(usize) + Sync, finish: impl FnOnce()) -> Duration {
    let start = Barrier::new(SEED_THREADS + 1);
    thread::scope(|s| {
        let mut handles = Vec::with_capacity(SEED_THREADS);
        for t in 0..SEED_THREADS {
            let (start, work) = (&start, &work);
            handles.push(
                thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn_scoped(s, move || {
                        start.wait();
                        work(t);
                    })
                    .unwrap(),
            );
        }
        start.wait();
        let began = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        finish();
        began.elapsed()
    })
}

/// One `aggregator/seed` run of a sheaf aggregator: 1,000 threads add,
/// then a flush, timed until the consumer has counted every value.
fn seed_sheaf<S>(agg: Aggregator<u64, u64, S>, per_thread: u64) -> Duration
where
    S: std::hash::BuildHasher + Send + Sync + 'static,
{
    let rx = agg.receiver();
    let consumer = thread::spawn(move || {
        let mut total = 0u64;
        let mut batch = Vec::new();
        while total < SEED_ADDS {
            rx.recv_batch(&mut batch, 1024).unwrap();
            total += batch.drain(..).map(|(_, v)| v).sum::<u64>();
        }
        total
    });
    let time = seed_run(
        |t| {
            for i in 0..per_thread {
                agg.add((t as u64 * per_thread + i) % SEED_KEYS, 1).unwrap();
            }
        },
        || {
            agg.flush();
            assert_eq!(consumer.join().unwrap(), SEED_ADDS);
        },
    );
    drop(agg.shutdown(Duration::from_secs(1)));
    time
}

fn seed(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregator/seed");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SEED_ADDS));
    let per_thread = SEED_ADDS / SEED_THREADS as u64;
    let sheaf_rows: [(&str, MergeKind, bool); 3] = [
        ("sheaf-sum", MergeKind::Sum, false),
        ("sheaf-commutative", MergeKind::Commutative, false),
        ("sheaf-sum-foldhash", MergeKind::Sum, true),
    ];
    for (name, kind, foldhash) in sheaf_rows {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        if foldhash {
                            seed_sheaf(kind.build(Foldhash::default()), per_thread)
                        } else {
                            seed_sheaf(kind.build(FastBuildHasher), per_thread)
                        }
                    })
                    .sum()
            })
        });
    }
    group.bench_function("dashmap", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let map: DashMap<u64, u64, Foldhash> =
                        DashMap::with_hasher(Foldhash::default());
                    let (tx, rx) = crossbeam_channel::bounded::<(u64, u64)>(4096);
                    let consumer = thread::spawn(move || {
                        let mut total = 0u64;
                        while total < SEED_ADDS {
                            total += rx.recv().unwrap().1;
                        }
                        total
                    });
                    seed_run(
                        |t| {
                            for i in 0..per_thread {
                                *map.entry((t as u64 * per_thread + i) % SEED_KEYS)
                                    .or_insert(0) += 1;
                            }
                        },
                        || {
                            // The hand-written swap-out: take every entry, send it.
                            map.retain(|k, v| {
                                tx.send((*k, *v)).unwrap();
                                false
                            });
                            assert_eq!(consumer.join().unwrap(), SEED_ADDS);
                        },
                    )
                })
                .sum()
        })
    });
    group.finish();
}

const E2E_KEYS: u64 = 10_000;
const E2E_OPS: u64 = 2_000_000;

fn e2e(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregator/e2e");
    group.sample_size(10);
    group.throughput(Throughput::Elements(E2E_OPS));
    let keys: Arc<Vec<u64>> = Arc::new(
        (0..E2E_OPS)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) % E2E_KEYS)
            .collect(),
    );
    // 8 producers oversubscribe the 2-core machine.
    for producers in [2usize, 8] {
        // What the producers add in all (a multiple of `producers`).
        let sent = E2E_OPS / producers as u64 * producers as u64;
        group.bench_function(BenchmarkId::new("sheaf", producers), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let agg = Aggregator::<u64, u64>::builder()
                            .merge_with(Sum)
                            .flush_every(Duration::from_millis(10))
                            .build()
                            .unwrap();
                        let rx = agg.receiver();
                        let received = Arc::new(AtomicU64::new(0));
                        let consumer = {
                            let received = Arc::clone(&received);
                            thread::spawn(move || {
                                let mut batch = Vec::new();
                                while rx.recv_batch(&mut batch, 1024).is_ok() {
                                    received.fetch_add(
                                        batch.drain(..).map(|(_, v)| v).sum::<u64>(),
                                        Ordering::Relaxed,
                                    );
                                }
                            })
                        };
                        let time = timed_threads(producers, E2E_OPS, |t, i| {
                            drop(agg.add(keys[(i * producers as u64 + t as u64) as usize], 1))
                        });
                        drop(agg.shutdown(Duration::from_secs(5)));
                        consumer.join().unwrap();
                        assert_eq!(received.load(Ordering::Relaxed), sent);
                        time
                    })
                    .sum()
            })
        });
        group.bench_function(BenchmarkId::new("raw-table", producers), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let table: ShardedTable<u64, u64> = ShardedTable::new();
                        let time = timed_threads(producers, E2E_OPS, |t, i| {
                            black_box(table.upsert(
                                keys[(i * producers as u64 + t as u64) as usize],
                                1,
                                |a, b| *a += b,
                            ));
                        });
                        black_box(table.len());
                        time
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hot5, seed, e2e
}
criterion_main!(benches);
