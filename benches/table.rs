//! Concurrent sum tables: `sheaf::ShardedTable` against its peers.
//!
//! Every implementation maps a key to a `u64` and merges each add with a sum
//! (`+= n`). All of them hash with the same `foldhash::fast::RandomState`
//! (sheaf gets it through `ShardedTable::builder().hasher(..)`), except
//! `sheaf-fast`, which is sheaf with its own `FastBuildHasher`. Every map is
//! created fresh with its default shard count and capacity (no presizing) and
//! is dropped outside the timed region.
//!
//! Implementations (criterion function ids): `sheaf`, `sheaf-fast`,
//! `dashmap`, `scc`, `papaya`, `mutex-hashmap` (`std::sync::Mutex<HashMap>`)
//! and `sharded-mutex64` (64 `parking_lot::Mutex<HashMap>` picked by the
//! hash's top bits, defined below). Group ids are `table/<workload>`; the
//! parameter is the thread count.
//!
//! - `table/hot5`: 5 `String` keys added by reference, merging `+1`: each
//!   implementation clones a key only when it is absent (sheaf `upsert_ref`;
//!   dashmap `get_mut` then `entry`; scc `update_sync` then `entry_sync`; the
//!   mutex maps `get_mut` then `insert`), except papaya, whose updates take an
//!   owned key and so clone on every add. One iteration is 100,000 adds split
//!   over 1, 2 or 8 threads (8 oversubscribes a 2-core machine). The threads are
//!   spawned once per measurement call and released by a barrier.
//! - `table/distinct`: 1,000,000 distinct random `u64` keys inserted into an
//!   empty map, on 1, 2 or 8 threads (each takes a contiguous part).
//! - `table/zipf`: 1,000,000 samples of Zipf(s = 1.0) over 100,000 keys added
//!   (`+1`) into an empty map, on 1, 2 or 8 threads.
//! - `table/seed`: 1,000 threads (64 KiB stacks, already spawned and waiting
//!   on a barrier) make 1,000 adds each over 1,000 `u64` keys (add `i` of the
//!   1,000,000 goes to key `i % 1000`); timed from the barrier's release to the
//!   last join.
//! - `table/drain`: a map holding 1,000,000 `u64` keys is consumed pair by
//!   pair (keys and values summed into a `black_box`ed accumulator); the map
//!   is refilled outside the timing. sheaf uses `drain()`, dashmap
//!   `retain(.. false)` (it has no drain without the `raw-api` feature), scc
//!   `retain_sync(.. false)`, papaya iterates a pin and then `clear()`s, the
//!   mutex maps `lock().drain()` shard by shard. `dashmap-into-iter` is
//!   dashmap's owned `into_iter()`: not concurrent, but the fastest way out.
//!
//! Every run checks its result (the sum of all values equals the number of
//! adds, or the drain's checksum equals the expected one), so no work can be
//! optimized away or lost.
//!
//! Run it with `cargo bench --bench table`, or one group with short settings:
//!
//! ```text
//! cargo bench --bench table -- --warm-up-time 1 --measurement-time 2 --sample-size 10 'table/hot5'
//! ```
//!
//! The default configuration (10 samples, 1 s warm-up, 3 s measurement) is
//! set in `criterion_group!`; command-line flags override it except in
//! `table/drain`, whose short group-level times keep the untimed refills
//! (about ten times the drain's cost) from dominating the run.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use dashmap::DashMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use sheaf::hash::FastBuildHasher;
use sheaf::ShardedTable;

mod common;
use common::thread_counts;

/// The hasher every implementation uses (except `sheaf-fast`).
type Fold = foldhash::fast::RandomState;

/// Adds per iteration of `table/hot5`.
const HOT_OPS: usize = 100_000;
/// The hot keys of `table/hot5`.
const HOT_KEYS: usize = 5;
/// Keys (and adds) per iteration of `table/distinct`, `table/zipf` and `table/drain`.
const MANY: usize = 1_000_000;
/// Distinct keys the Zipf samples are drawn from.
const ZIPF_KEYS: u64 = 100_000;
/// Threads of `table/seed`.
const SEED_THREADS: usize = 1_000;
/// Distinct keys of `table/seed`.
const SEED_KEYS: usize = 1_000;
/// Adds per thread of `table/seed` (1,000,000 in all).
const SEED_ADDS_PER_THREAD: usize = 1_000;
/// Stack size of the `table/seed` threads.
const SMALL_STACK: usize = 64 * 1024;
/// Stack size of the other worker threads (std's default).
const DEFAULT_STACK: usize = 2 * 1024 * 1024;

/// A key type of these benchmarks.
trait Key: Hash + Eq + Clone + Send + Sync + 'static {
    /// A number standing for the key in the drain checksum.
    fn weight(&self) -> u64;
}

impl Key for u64 {
    fn weight(&self) -> u64 {
        *self
    }
}

impl Key for String {
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

/// A concurrent `K → u64` table whose adds merge by summing, written the way
/// a user of each implementation would write it.
trait SumMap<K: Key>: Sync + Sized {
    /// The criterion function id.
    const NAME: &'static str;
    /// An empty map with default sizing.
    fn create() -> Self;
    /// Adds `n` to `key`'s value, inserting `n` when absent.
    fn add(&self, key: K, n: u64);
    /// [`add`](Self::add) by reference: clones the key only when it is
    /// absent, where the implementation's API allows (papaya's does not:
    /// its updates take an owned key).
    fn add_ref(&self, key: &K, n: u64) {
        self.add(key.clone(), n);
    }
    /// Inserts `key → 1` for every key of `keys`, all absent (the untimed
    /// refill of `table/drain`; the same as `add`, unless faster).
    fn fill(&self, keys: &[K]) {
        for key in keys {
            self.add(key.clone(), 1);
        }
    }
    /// The sum of all values (for checking; not timed).
    fn total(&self) -> u64;
    /// Takes every pair out with the implementation's concurrent means and
    /// returns the wrapping sum of `key.weight() + value`.
    fn drain_sum(&self) -> u64;
}

/// Adds `weight(key) + value` to a drain checksum.
#[inline]
fn mix<K: Key>(acc: u64, key: &K, value: u64) -> u64 {
    acc.wrapping_add(key.weight().wrapping_add(value))
}

impl<K: Key> SumMap<K> for ShardedTable<K, u64, Fold> {
    const NAME: &'static str = "sheaf";
    fn create() -> Self {
        <ShardedTable<K, u64>>::builder()
            .hasher(Fold::default())
            .build()
            .expect("default shards are valid")
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        self.upsert(key, n, |a, b| *a += b);
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        self.upsert_ref(key, n, |a, b| *a += b);
    }
    fn total(&self) -> u64 {
        self.snapshot().iter().map(|(_, v)| v).sum()
    }
    fn drain_sum(&self) -> u64 {
        self.drain().fold(0, |acc, (k, v)| mix(acc, &k, v))
    }
}

impl<K: Key> SumMap<K> for ShardedTable<K, u64, FastBuildHasher> {
    const NAME: &'static str = "sheaf-fast";
    fn create() -> Self {
        ShardedTable::new()
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        self.upsert(key, n, |a, b| *a += b);
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        self.upsert_ref(key, n, |a, b| *a += b);
    }
    fn total(&self) -> u64 {
        self.snapshot().iter().map(|(_, v)| v).sum()
    }
    fn drain_sum(&self) -> u64 {
        self.drain().fold(0, |acc, (k, v)| mix(acc, &k, v))
    }
}

impl<K: Key> SumMap<K> for DashMap<K, u64, Fold> {
    const NAME: &'static str = "dashmap";
    fn create() -> Self {
        DashMap::with_hasher(Fold::default())
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        *self.entry(key).or_insert(0) += n;
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        match self.get_mut(key) {
            Some(mut v) => *v += n,
            None => *self.entry(key.clone()).or_insert(0) += n,
        }
    }
    fn total(&self) -> u64 {
        self.iter().map(|r| *r.value()).sum()
    }
    fn drain_sum(&self) -> u64 {
        let mut acc = 0;
        self.retain(|k, v| {
            acc = mix(acc, k, *v);
            false
        });
        acc
    }
}

impl<K: Key> SumMap<K> for scc::HashMap<K, u64, Fold> {
    const NAME: &'static str = "scc";
    fn create() -> Self {
        scc::HashMap::with_hasher(Fold::default())
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        self.entry_sync(key).and_modify(|v| *v += n).or_insert(n);
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        if self.update_sync(key, |_, v| *v += n).is_none() {
            self.add(key.clone(), n);
        }
    }
    fn total(&self) -> u64 {
        let mut sum = 0;
        self.iter_sync(|_, v| {
            sum += *v;
            true
        });
        sum
    }
    fn drain_sum(&self) -> u64 {
        let mut acc = 0;
        self.retain_sync(|k, v| {
            acc = mix(acc, k, *v);
            false
        });
        acc
    }
}

impl<K: Key> SumMap<K> for papaya::HashMap<K, u64, Fold> {
    const NAME: &'static str = "papaya";
    fn create() -> Self {
        papaya::HashMap::with_hasher(Fold::default())
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        self.pin().update_or_insert(key, |v| v + n, n);
    }
    fn fill(&self, keys: &[K]) {
        // `insert` into a growing map is several times faster than
        // `update_or_insert`, and this refill is not timed.
        let map = self.pin();
        for key in keys {
            map.insert(key.clone(), 1);
        }
    }
    fn total(&self) -> u64 {
        self.pin().iter().map(|(_, v)| *v).sum()
    }
    fn drain_sum(&self) -> u64 {
        let map = self.pin();
        let acc = map.iter().fold(0, |acc, (k, v)| mix(acc, k, *v));
        map.clear();
        acc
    }
}

impl<K: Key> SumMap<K> for Mutex<HashMap<K, u64, Fold>> {
    const NAME: &'static str = "mutex-hashmap";
    fn create() -> Self {
        Mutex::new(HashMap::with_hasher(Fold::default()))
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        *self.lock().expect("not poisoned").entry(key).or_insert(0) += n;
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        let mut map = self.lock().expect("not poisoned");
        match map.get_mut(key) {
            Some(v) => *v += n,
            None => {
                map.insert(key.clone(), n);
            }
        }
    }
    fn total(&self) -> u64 {
        self.lock().expect("not poisoned").values().sum()
    }
    fn drain_sum(&self) -> u64 {
        let mut map = self.lock().expect("not poisoned");
        map.drain().fold(0, |acc, (k, v)| mix(acc, &k, v))
    }
}

/// Aligns its content to two cache lines, so neighbouring shards do not
/// share one.
#[repr(align(128))]
struct Padded<T>(T);

/// One shard of [`ShardedMutex64`].
type Shard64<K> = Padded<parking_lot::Mutex<HashMap<K, u64, Fold>>>;

/// The hand-rolled baseline: 64 `parking_lot::Mutex<HashMap>` shards, the
/// shard picked by the top 6 bits of the key's hash.
struct ShardedMutex64<K> {
    shards: Box<[Shard64<K>]>,
    hasher: Fold,
}

impl<K: Key> ShardedMutex64<K> {
    /// The shard holding `key`.
    #[inline]
    fn shard(&self, key: &K) -> &parking_lot::Mutex<HashMap<K, u64, Fold>> {
        &self.shards[(self.hasher.hash_one(key) >> 58) as usize].0
    }
}

impl<K: Key> SumMap<K> for ShardedMutex64<K> {
    const NAME: &'static str = "sharded-mutex64";
    fn create() -> Self {
        let hasher = Fold::default();
        let shards = (0..64)
            .map(|_| Padded(parking_lot::Mutex::new(HashMap::with_hasher(hasher))))
            .collect();
        Self { shards, hasher }
    }
    #[inline]
    fn add(&self, key: K, n: u64) {
        *self.shard(&key).lock().entry(key).or_insert(0) += n;
    }
    #[inline]
    fn add_ref(&self, key: &K, n: u64) {
        let mut map = self.shard(key).lock();
        match map.get_mut(key) {
            Some(v) => *v += n,
            None => {
                map.insert(key.clone(), n);
            }
        }
    }
    fn total(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.lock().values().sum::<u64>())
            .sum()
    }
    fn drain_sum(&self) -> u64 {
        self.shards.iter().fold(0, |acc, s| {
            s.0.lock().drain().fold(acc, |acc, (k, v)| mix(acc, &k, v))
        })
    }
}

/// Calls `$bench::<M>($args..)` for every table implementation `M` over keys `$key`.
macro_rules! for_each_map {
    ($key:ty, $bench:ident($($arg:expr),* $(,)?)) => {
        $bench::<ShardedTable<$key, u64, Fold>>($($arg),*);
        $bench::<ShardedTable<$key, u64, FastBuildHasher>>($($arg),*);
        $bench::<DashMap<$key, u64, Fold>>($($arg),*);
        $bench::<scc::HashMap<$key, u64, Fold>>($($arg),*);
        $bench::<papaya::HashMap<$key, u64, Fold>>($($arg),*);
        $bench::<Mutex<HashMap<$key, u64, Fold>>>($($arg),*);
        $bench::<ShardedMutex64<$key>>($($arg),*);
    };
}

/// Runs `work(t)` for `t` in `0..threads`, each on a fresh thread with the
/// given stack size, all released together by a barrier; returns the time
/// from the release until the last thread was joined.
fn run_timed(threads: usize, stack: usize, work: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                thread::Builder::new()
                    .stack_size(stack)
                    .spawn_scoped(s, move || {
                        barrier.wait();
                        work(t);
                    })
                    .expect("spawn a worker")
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().expect("worker panicked");
        }
        start.elapsed()
    })
}

/// `table/hot5` for one implementation.
fn hot5<M: SumMap<String>>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[String]) {
    for threads in thread_counts(&[1, 2, 8]) {
        group.bench_with_input(
            BenchmarkId::new(M::NAME, threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let map = M::create();
                    let per_thread = iters as usize * HOT_OPS / threads;
                    let elapsed = run_timed(threads, DEFAULT_STACK, |t| {
                        let mut k = t % HOT_KEYS;
                        for _ in 0..per_thread {
                            map.add_ref(&keys[k], 1);
                            k = if k + 1 == HOT_KEYS { 0 } else { k + 1 };
                        }
                    });
                    assert_eq!(map.total(), iters * HOT_OPS as u64, "{} lost adds", M::NAME);
                    elapsed
                });
            },
        );
    }
}

/// One iteration of `table/distinct` or `table/zipf`: adds `+1` for every
/// key of `keys` into a fresh map, split into `threads` contiguous parts;
/// returns the time of the adds only. Checks the sum when `check` is set.
fn fill_once<M: SumMap<u64>>(keys: &[u64], threads: usize, check: bool) -> Duration {
    let map = M::create();
    let part = keys.len().div_ceil(threads);
    let elapsed = run_timed(threads, DEFAULT_STACK, |t| {
        for &key in keys.chunks(part).nth(t).unwrap_or(&[]) {
            map.add(key, 1);
        }
    });
    if check {
        assert_eq!(map.total(), keys.len() as u64, "{} lost adds", M::NAME);
    }
    drop(map);
    elapsed
}

/// `table/distinct` and `table/zipf` for one implementation.
fn fill<M: SumMap<u64>>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[u64]) {
    for threads in thread_counts(&[1, 2, 8]) {
        group.bench_with_input(
            BenchmarkId::new(M::NAME, threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|i| fill_once::<M>(keys, threads, i == 0))
                        .sum()
                });
            },
        );
    }
}

/// `table/seed` for one implementation.
fn seed<M: SumMap<u64>>(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.bench_function(M::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let map = M::create();
                total += run_timed(SEED_THREADS, SMALL_STACK, |t| {
                    for j in 0..SEED_ADDS_PER_THREAD {
                        let add = t * SEED_ADDS_PER_THREAD + j;
                        map.add((add % SEED_KEYS) as u64, 1);
                    }
                });
                if i == 0 {
                    let adds = (SEED_THREADS * SEED_ADDS_PER_THREAD) as u64;
                    assert_eq!(map.total(), adds, "{} lost adds", M::NAME);
                }
            }
            total
        });
    });
}

/// `table/drain` for one implementation: `drain` consumes a map filled with
/// `keys` (value 1 each) and returns its checksum.
fn drain_with<M: SumMap<u64>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    keys: &[u64],
    drain: impl Fn(&mut M) -> u64,
) {
    let expected = keys.iter().fold(0u64, |acc, &k| mix(acc, &k, 1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut map = M::create();
                map.fill(keys);
                let start = Instant::now();
                let acc = black_box(drain(black_box(&mut map)));
                total += start.elapsed();
                assert_eq!(acc, expected, "{name} lost pairs");
                drop(map);
            }
            total
        });
    });
}

/// `table/drain` through the implementation's concurrent drain.
fn drain<M: SumMap<u64>>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[u64]) {
    drain_with::<M>(group, M::NAME, keys, |map| map.drain_sum());
}

/// 1,000,000 distinct pseudo-random `u64` keys, the same on every run.
fn distinct_keys() -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(0x5eaf_d15c);
    let mut seen = std::collections::HashSet::with_capacity(MANY);
    let mut keys = Vec::with_capacity(MANY);
    while keys.len() < MANY {
        let key: u64 = rng.random();
        if seen.insert(key) {
            keys.push(key);
        }
    }
    keys
}

/// 1,000,000 samples of Zipf(s = 1.0) over keys `1..=100_000`, the same on every run.
fn zipf_keys() -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(0x21bf);
    let zipf = Zipf::new(ZIPF_KEYS as f64, 1.0).expect("valid Zipf parameters");
    (0..MANY).map(|_| zipf.sample(&mut rng) as u64).collect()
}

fn bench_hot5(c: &mut Criterion) {
    let keys: Vec<String> = (0..HOT_KEYS).map(|i| format!("metric.{i}")).collect();
    let mut group = c.benchmark_group("table/hot5");
    group.throughput(Throughput::Elements(HOT_OPS as u64));
    for_each_map!(String, hot5(&mut group, &keys));
    group.finish();
}

fn bench_distinct(c: &mut Criterion) {
    let keys = distinct_keys();
    let mut group = c.benchmark_group("table/distinct");
    group.throughput(Throughput::Elements(MANY as u64));
    group.sampling_mode(SamplingMode::Flat);
    for_each_map!(u64, fill(&mut group, &keys));
    group.finish();
}

fn bench_zipf(c: &mut Criterion) {
    let keys = zipf_keys();
    let mut group = c.benchmark_group("table/zipf");
    group.throughput(Throughput::Elements(MANY as u64));
    group.sampling_mode(SamplingMode::Flat);
    for_each_map!(u64, fill(&mut group, &keys));
    group.finish();
}

fn bench_seed(c: &mut Criterion) {
    let mut group = c.benchmark_group("table/seed");
    group.throughput(Throughput::Elements(
        (SEED_THREADS * SEED_ADDS_PER_THREAD) as u64,
    ));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for_each_map!(u64, seed(&mut group));
    group.finish();
}

fn bench_drain(c: &mut Criterion) {
    let keys = distinct_keys();
    let mut group = c.benchmark_group("table/drain");
    group.throughput(Throughput::Elements(MANY as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    // Each drain needs an untimed refill of 1,000,000 keys: keep the timed
    // budget small so that the refills do not stretch the run to minutes.
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_millis(500));
    for_each_map!(u64, drain(&mut group, &keys));
    drain_with::<DashMap<u64, u64, Fold>>(&mut group, "dashmap-into-iter", &keys, |map| {
        std::mem::take(map)
            .into_iter()
            .fold(0, |acc, (k, v)| mix(acc, &k, v))
    });
    group.finish();
}

/// The previous sheaf string hasher: FNV-1a one byte at a time, then the
/// same folded-multiply finalizer (`FastHasher`'s integer path unchanged).
#[derive(Clone, Copy, Default)]
struct ByteFnv;

struct ByteFnvHasher(u64);

impl std::hash::Hasher for ByteFnvHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write(&[n]);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let full = u128::from(self.0).wrapping_mul(0xd6e8_feb8_6659_fd93);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

impl BuildHasher for ByteFnv {
    type Hasher = ByteFnvHasher;
    fn build_hasher(&self) -> ByteFnvHasher {
        ByteFnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// Keys hashed per iteration of `hash/str`.
const HASH_KEYS: usize = 1024;

/// `hash/str/<len>`: hashing 1,024 distinct `&str` keys of `len` bytes
/// (`metric.` prefixes and counters) with `BuildHasher::hash_one`, the way
/// the table hashes a key: sheaf's `FastBuildHasher`, foldhash's fast
/// hasher, and byte-wise FNV-1a with the same finalizer.
fn bench_hash(c: &mut Criterion) {
    for len in [8usize, 16, 32, 64] {
        let keys: Vec<String> = (0..HASH_KEYS)
            .map(|i| {
                let mut key = format!("metric.{i}.");
                while key.len() < len {
                    key.push((b'a' + (key.len() % 26) as u8) as char);
                }
                key.truncate(len);
                key
            })
            .collect();
        let mut group = c.benchmark_group(format!("hash/str/{len}"));
        group.throughput(Throughput::Elements(HASH_KEYS as u64));
        fn run<S: BuildHasher>(b: &mut criterion::Bencher<'_>, keys: &[String], hasher: &S) {
            b.iter(|| {
                keys.iter().fold(0u64, |acc, key| {
                    acc ^ hasher.hash_one(black_box(key.as_str()))
                })
            })
        }
        group.bench_function("sheaf-fast", |b| run(b, &keys, &FastBuildHasher));
        group.bench_function("foldhash", |b| run(b, &keys, &Fold::default()));
        group.bench_function("fnv1a-bytewise", |b| run(b, &keys, &ByteFnv));
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_hash, bench_hot5, bench_distinct, bench_zipf, bench_seed, bench_drain
}
criterion_main!(benches);
