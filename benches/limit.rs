//! Rate and concurrency limiters: `sheaf::limit` against its peers.
//!
//! Groups (the parameter is the thread count; 8 oversubscribes a 2-core
//! machine). Threads are spawned once per measurement call and released by
//! a barrier; one iteration is one check (or acquire + release) per thread,
//! so criterion's throughput is checks per second over all threads.
//!
//! - `limit/direct-allow`: one limiter shared by every thread, with a quota
//!   so large that every check passes (every check writes the state).
//!   `sheaf` (`RateLimiter` on its default `QuantaClock`, the time-stamp
//!   counter), `sheaf-std` (the same on `MonotonicClock`, std's `Instant`),
//!   `governor` (its default `QuantaClock`), `governor-std` (its `Instant`
//!   clock), `sheaf-cached` (`CachedRateLimiter`, per-core caches refilled
//!   64 cells at a time; chunk 1 in the deny group, where the burst is 1),
//!   `ratelimit`, `leaky-bucket` (`try_acquire`), and
//!   `mutex-bucket` (a `parking_lot::Mutex` around a token bucket).
//! - `limit/direct-deny`: the same with a spent limiter (1 cell a second):
//!   almost every check is refused, so the state is only read.
//! - `limit/keyed-{10k,1M}-{uniform,zipf}`: a keyed limiter (1,000 a second
//!   per key, burst 1,000) checked on keys drawn uniformly or from
//!   Zipf(s = 1.0) over 10,000 or 1,000,000 `u64` keys (a precomputed
//!   sequence of 2^20 draws; each thread starts at its own offset).
//!   `sheaf` (`KeyedLimiter`, default clock), `sheaf-std` (`MonotonicClock`),
//!   `governor` (keyed on dashmap, default clock, given sheaf's hasher,
//!   `FastBuildHasher`, as every peer in a group gets the same hasher) and
//!   `governor-sip` (the same with governor's default SipHash hasher).
//! - `limit/concurrency`: capacity 4, each iteration acquires one permit
//!   and releases it. `sheaf` (`ConcurrencyLimiter::acquire`) against tokio's
//!   `Semaphore::acquire` driven by a minimal thread-parking `block_on`
//!   (blocking use) and `tokio-try` (`try_acquire` in a spin-yield loop).
//!
//! - `limit/clock`: one clock read (`Instant::now`, `quanta`, and the
//!   `Clock::nanos` a sheaf limiter reads per check, on `QuantaClock` and
//!   on `MonotonicClock`).
//!
//! Before the groups, `limit/memory` prints (it does not time) the bytes the
//! keyed stores hold, counted by the global allocator below (live bytes =
//! allocated − freed): after 1,000,000 distinct keys were each checked once,
//! and again after they went idle (2 s of manual time), while one key stays
//! in use (300 checks, 4 ms of manual time apart). sheaf is measured
//! "without calling anything"; governor also after the `retain_recent()` +
//! `shrink_to_fit()` its users must call.
//!
//! Run: `cargo bench --bench limit -- --warm-up-time 1 --measurement-time 2`
//! (add a group name, e.g. `'limit/direct'`, to run part of it).

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use sheaf::clock::{Clock, ManualClock, MonotonicClock, QuantaClock};
use sheaf::hash::FastBuildHasher;
use sheaf::limit::{CachedRateLimiter, ConcurrencyLimiter, KeyedLimiter, Quota, RateLimiter};

mod common;
use common::thread_counts;

// ---- allocation counting (for limit/memory) ----

#[path = "common/alloc.rs"]
mod alloc;
use alloc::live;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

// ---- direct limiters ----

trait Direct: Sync {
    fn check(&self) -> bool;
}

impl<C: Clock> Direct for RateLimiter<C> {
    #[inline]
    fn check(&self) -> bool {
        RateLimiter::check(self).is_ok()
    }
}

type GovernorDirect<C> = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    C,
    governor::middleware::NoOpMiddleware<<C as governor::clock::Clock>::Instant>,
>;

impl<C: governor::clock::Clock + Sync> Direct for GovernorDirect<C> {
    #[inline]
    fn check(&self) -> bool {
        governor::RateLimiter::check(self).is_ok()
    }
}

impl<C: Clock> Direct for CachedRateLimiter<C> {
    #[inline]
    fn check(&self) -> bool {
        CachedRateLimiter::check(self).is_ok()
    }
}

impl Direct for ratelimit::Ratelimiter {
    #[inline]
    fn check(&self) -> bool {
        self.try_wait().is_ok()
    }
}

impl Direct for leaky_bucket::RateLimiter {
    #[inline]
    fn check(&self) -> bool {
        self.try_acquire(1)
    }
}

/// The baseline: a token bucket behind one lock.
struct MutexBucket {
    state: parking_lot::Mutex<(f64, Instant)>,
    per_ns: f64,
    max: f64,
}

impl MutexBucket {
    fn new(per_second: f64, max: f64, initial: f64) -> Self {
        Self {
            state: parking_lot::Mutex::new((initial, Instant::now())),
            per_ns: per_second / 1e9,
            max,
        }
    }
}

impl Direct for MutexBucket {
    #[inline]
    fn check(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock();
        let elapsed = now.saturating_duration_since(state.1).as_nanos() as f64;
        state.0 = (state.0 + elapsed * self.per_ns).min(self.max);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs `work(thread index)` on `threads` threads released together; returns
/// the time from the release to the last join.
fn run_timed(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    work(t);
                })
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

fn direct_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    make: &dyn Fn() -> Box<dyn Direct>,
) {
    for threads in thread_counts(&[1, 2, 8]) {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
            let limiter = make();
            b.iter_custom(|iters| {
                run_timed(threads, |_| {
                    let mut passed = 0u64;
                    for _ in 0..iters {
                        passed += u64::from(limiter.check());
                    }
                    black_box(passed);
                })
            });
        });
    }
}

const BIG: u32 = 1_000_000_000;

fn direct_allow(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/direct-allow");
    let sheaf_quota = || {
        Quota::with_interval(Duration::from_nanos(1))
            .unwrap()
            .with_burst(1 << 40)
            .unwrap()
    };
    let governor_quota = || {
        governor::Quota::per_second(NonZeroU32::new(BIG).unwrap())
            .allow_burst(NonZeroU32::new(u32::MAX).unwrap())
    };
    direct_one(&mut group, "sheaf", &|| {
        Box::new(RateLimiter::new(sheaf_quota()))
    });
    direct_one(&mut group, "sheaf-std", &|| {
        Box::new(RateLimiter::with_clock(sheaf_quota(), MonotonicClock))
    });
    direct_one(&mut group, "sheaf-cached", &|| {
        Box::new(CachedRateLimiter::new(sheaf_quota(), 64).unwrap())
    });
    direct_one(&mut group, "governor", &|| {
        Box::new(governor::RateLimiter::direct(governor_quota()))
    });
    direct_one(&mut group, "governor-std", &|| {
        Box::new(governor::RateLimiter::direct_with_clock(
            governor_quota(),
            governor::clock::MonotonicClock,
        ))
    });
    direct_one(&mut group, "ratelimit", &|| {
        Box::new(
            ratelimit::Ratelimiter::builder(1_000, Duration::from_micros(1))
                .max_tokens(1 << 50)
                .initial_available(1 << 50)
                .build()
                .unwrap(),
        )
    });
    direct_one(&mut group, "leaky-bucket", &|| {
        Box::new(
            leaky_bucket::RateLimiter::builder()
                .max(1 << 50)
                .initial(1 << 50)
                .refill(1_000_000)
                .interval(Duration::from_millis(1))
                .build(),
        )
    });
    direct_one(&mut group, "mutex-bucket", &|| {
        Box::new(MutexBucket::new(1e9, 1e15, 1e15))
    });
    group.finish();
}

fn direct_deny(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/direct-deny");
    let spent = |l: &dyn Direct| {
        while l.check() {}
    };
    let boxed = |l: Box<dyn Direct>| {
        spent(&*l);
        l
    };
    direct_one(&mut group, "sheaf", &|| {
        boxed(Box::new(RateLimiter::new(Quota::per_second(1).unwrap())))
    });
    direct_one(&mut group, "sheaf-std", &|| {
        boxed(Box::new(RateLimiter::with_clock(
            Quota::per_second(1).unwrap(),
            MonotonicClock,
        )))
    });
    direct_one(&mut group, "sheaf-cached", &|| {
        boxed(Box::new(
            CachedRateLimiter::new(Quota::per_second(1).unwrap(), 1).unwrap(),
        ))
    });
    let one = || governor::Quota::per_second(NonZeroU32::new(1).unwrap());
    direct_one(&mut group, "governor", &|| {
        boxed(Box::new(governor::RateLimiter::direct(one())))
    });
    direct_one(&mut group, "governor-std", &|| {
        boxed(Box::new(governor::RateLimiter::direct_with_clock(
            one(),
            governor::clock::MonotonicClock,
        )))
    });
    direct_one(&mut group, "ratelimit", &|| {
        boxed(Box::new(
            ratelimit::Ratelimiter::builder(1, Duration::from_secs(1))
                .max_tokens(1)
                .build()
                .unwrap(),
        ))
    });
    direct_one(&mut group, "mutex-bucket", &|| {
        boxed(Box::new(MutexBucket::new(1.0, 1.0, 1.0)))
    });
    group.finish();
}

// ---- keyed ----

trait Keyed: Sync {
    fn check(&self, key: u64) -> bool;
}

impl<C: Clock> Keyed for KeyedLimiter<u64, C> {
    #[inline]
    fn check(&self, key: u64) -> bool {
        KeyedLimiter::check(self, &key).is_ok()
    }
}

impl<S> Keyed
    for governor::DefaultKeyedRateLimiter<
        u64,
        governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
        S,
    >
where
    S: std::hash::BuildHasher + Clone + Send + Sync,
{
    #[inline]
    fn check(&self, key: u64) -> bool {
        self.check_key(&key).is_ok()
    }
}

const DRAWS: usize = 1 << 20;

fn draws(keys: u64, zipf: bool) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(0x5eaf);
    if zipf {
        let dist = Zipf::new(keys as f64, 1.0).unwrap();
        (0..DRAWS).map(|_| dist.sample(&mut rng) as u64).collect()
    } else {
        (0..DRAWS).map(|_| rng.random_range(0..keys)).collect()
    }
}

fn keyed_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    draws: &[u64],
    make: &dyn Fn() -> Box<dyn Keyed>,
) {
    for threads in thread_counts(&[1, 2, 8]) {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
            let limiter = make();
            b.iter_custom(|iters| {
                run_timed(threads, |t| {
                    let mut i = t * (DRAWS / threads.max(1)) + 1;
                    let mut passed = 0u64;
                    for _ in 0..iters {
                        i = (i + 1) & (DRAWS - 1);
                        passed += u64::from(limiter.check(draws[i]));
                    }
                    black_box(passed);
                })
            });
        });
    }
}

fn keyed(c: &mut Criterion) {
    for (keys, label) in [(10_000u64, "10k"), (1_000_000, "1M")] {
        for zipf in [false, true] {
            let draws = draws(keys, zipf);
            let kind = if zipf { "zipf" } else { "uniform" };
            let mut group = c.benchmark_group(format!("limit/keyed-{label}-{kind}"));
            let quota = || Quota::per_second(1_000).unwrap();
            keyed_one(&mut group, "sheaf", &draws, &|| {
                Box::new(KeyedLimiter::<u64>::builder(quota()).build().unwrap())
            });
            keyed_one(&mut group, "sheaf-std", &draws, &|| {
                Box::new(
                    KeyedLimiter::<u64>::builder(quota())
                        .clock(MonotonicClock)
                        .build()
                        .unwrap(),
                )
            });
            let per_key = || governor::Quota::per_second(NonZeroU32::new(1_000).unwrap());
            keyed_one(&mut group, "governor", &draws, &|| {
                Box::new(governor::RateLimiter::dashmap_with_hasher(
                    per_key(),
                    FastBuildHasher,
                ))
            });
            keyed_one(&mut group, "governor-sip", &draws, &|| {
                Box::new(governor::RateLimiter::keyed(per_key()))
            });
            group.finish();
        }
    }
}

// ---- concurrency ----

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// This thread's waker. Built once per thread, before the loop: a waker
/// (an `Arc` and a `thread::current()`) per acquire would be overhead
/// sheaf's blocking `acquire` does not pay.
fn thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(thread::current())))
}

/// The least a blocking caller needs to await a future.
fn block_on<F: Future>(waker: &Waker, future: F) -> F::Output {
    let mut cx = Context::from_waker(waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

fn concurrency(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/concurrency");
    for threads in thread_counts(&[1, 2, 8]) {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(
            BenchmarkId::new("sheaf", threads),
            &threads,
            |b, &threads| {
                let limiter = ConcurrencyLimiter::new(4).unwrap();
                b.iter_custom(|iters| {
                    run_timed(threads, |_| {
                        for _ in 0..iters {
                            drop(black_box(limiter.acquire().unwrap()));
                        }
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio", threads),
            &threads,
            |b, &threads| {
                let semaphore = tokio::sync::Semaphore::new(4);
                b.iter_custom(|iters| {
                    run_timed(threads, |_| {
                        let waker = thread_waker();
                        for _ in 0..iters {
                            drop(black_box(block_on(&waker, semaphore.acquire()).unwrap()));
                        }
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("tokio-try", threads),
            &threads,
            |b, &threads| {
                let semaphore = tokio::sync::Semaphore::new(4);
                b.iter_custom(|iters| {
                    run_timed(threads, |_| {
                        for _ in 0..iters {
                            loop {
                                if let Ok(permit) = semaphore.try_acquire() {
                                    drop(black_box(permit));
                                    break;
                                }
                                thread::yield_now();
                            }
                        }
                    })
                });
            },
        );
    }
    group.finish();
}

// ---- clocks ----

/// What one clock read costs: the floor under every rate check.
fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit/clock");
    group.bench_function("std-instant", |b| b.iter(|| black_box(Instant::now())));
    let q = quanta::Clock::new();
    group.bench_function("quanta", |b| b.iter(|| black_box(q.now())));
    let sheaf = QuantaClock::new();
    group.bench_function("sheaf-quanta-nanos", |b| {
        b.iter(|| black_box(sheaf.nanos()))
    });
    group.bench_function("sheaf-std-nanos", |b| {
        b.iter(|| black_box(MonotonicClock.nanos()))
    });
    group.finish();
}

// ---- memory ----

fn memory_report() {
    const KEYS: u64 = 1_000_000;
    let mib = |b: isize| b as f64 / (1024.0 * 1024.0);
    println!(
        "limit/memory: live bytes of the keyed store (allocation counter), {KEYS} distinct keys"
    );

    let before = live();
    let clock = ManualClock::new();
    let sheaf = KeyedLimiter::<u64, _>::builder(Quota::per_second(10).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..KEYS {
        assert!(sheaf.check(&k).is_ok());
    }
    let full = live() - before;
    clock.advance(Duration::from_secs(2));
    for _ in 0..300 {
        clock.advance(Duration::from_millis(4));
        let _ = sheaf.check(&u64::MAX);
    }
    let idle = live() - before;
    println!(
        "  sheaf KeyedLimiter: after the keys {:.2} MiB ({} keys); after idle {:.4} MiB ({} keys), nothing called",
        mib(full),
        KEYS,
        mib(idle),
        sheaf.len()
    );
    drop(sheaf);

    let before = live();
    let fake = governor::clock::FakeRelativeClock::default();
    let governor = governor::RateLimiter::dashmap_with_clock(
        governor::Quota::per_second(NonZeroU32::new(10).unwrap()),
        fake.clone(),
    );
    for k in 0..KEYS {
        assert!(governor.check_key(&k).is_ok());
    }
    let full = live() - before;
    fake.advance(Duration::from_secs(2));
    for _ in 0..300 {
        fake.advance(Duration::from_millis(4));
        let _ = governor.check_key(&u64::MAX);
    }
    let idle = live() - before;
    let len = governor.len();
    governor.retain_recent();
    governor.shrink_to_fit();
    let pruned = live() - before;
    println!(
        "  governor keyed (dashmap): after the keys {:.2} MiB; after idle {:.2} MiB ({} keys) with nothing called; {:.4} MiB ({} keys) after retain_recent + shrink_to_fit",
        mib(full),
        mib(idle),
        len,
        mib(pruned),
        governor.len()
    );
}

fn main() {
    memory_report();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    clocks(&mut c);
    direct_allow(&mut c);
    direct_deny(&mut c);
    keyed(&mut c);
    concurrency(&mut c);
    c.final_summary();
}
