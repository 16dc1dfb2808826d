//! Loom models of `sheaf::limit`: the GCRA compare-and-swap race, per-core
//! cache refills, a permit
//! release racing a blocked acquire and a close, and a keyed insert racing
//! an eviction.
//!
//! Kept tiny (two or three threads, one or two operations each): each extra
//! preemption multiplies the cost 5-8x. The rate limiter runs on a
//! `ManualClock` that never moves, so every interleaving must admit exactly
//! the burst. The concurrency limiter uses untimed `acquire` (loom has no
//! clock) on the `MonotonicClock`, whose untimed park is loom's `park`.
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test limit`
#![cfg(sheaf_loom)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;
use sheaf::clock::ManualClock;
use sheaf::limit::{
    AcquireError, CachedRateLimiter, ConcurrencyLimiter, KeyedLimiter, Quota, RateLimiter, WhenFull,
};

#[test]
fn gcra_cas_race_admits_exactly_the_burst() {
    model(|| {
        let limiter = Arc::new(RateLimiter::with_clock(
            Quota::per_second(2).unwrap(),
            ManualClock::new(),
        ));
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
                thread::spawn(move || {
                    for _ in 0..2 {
                        if limiter.check().is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 2);
        assert!(limiter.check().is_err());
    });
}

#[test]
fn gcra_check_n_racing_check_never_overdraws() {
    model(|| {
        let limiter = Arc::new(RateLimiter::with_clock(
            Quota::per_second(3).unwrap(),
            ManualClock::new(),
        ));
        let other = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.check_n(2).is_ok())
        };
        let mine = [limiter.check().is_ok(), limiter.check().is_ok()];
        let theirs = other.join().unwrap();
        let total = mine.iter().filter(|ok| **ok).count() as u64 + if theirs { 2 } else { 0 };
        // 3 cells: whatever the order, never more than 3 pass, and the
        // limiter's state accounts for exactly those that did.
        assert!(total <= 3);
        assert_eq!(limiter.available(), 3 - total);
    });
}

#[test]
fn cached_refills_race_without_losing_or_duplicating_cells() {
    model(|| {
        // Burst 3, chunk 2: a thread's first check takes 2 (uses 1, caches 1).
        let limiter = Arc::new(
            CachedRateLimiter::with_clock(Quota::per_second(3).unwrap(), 2, ManualClock::new())
                .unwrap(),
        );
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
                thread::spawn(move || {
                    for _ in 0..2 {
                        if limiter.check().is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every cell the shared state gave out is admitted or still cached.
        assert_eq!(admitted.load(Ordering::Relaxed) + limiter.cached(), 3);
    });
}

#[test]
fn permit_release_races_a_blocked_acquire_and_close() {
    model(|| {
        let limiter = Arc::new(ConcurrencyLimiter::new(1).unwrap());
        let held = limiter.acquire().unwrap();
        let acquirer = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.acquire().map(|permit| permit.count()))
        };
        let closer = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.close())
        };
        drop(held);
        let got = acquirer.join().unwrap();
        closer.join().unwrap();
        // Either the release reached the waiter first, or the close did; it
        // never hangs (loom reports a deadlock) and never loses the permit.
        assert!(matches!(got, Ok(1) | Err(AcquireError::Closed)), "{got:?}");
        assert_eq!(limiter.available(), 1);
        assert_eq!(limiter.waiting(), 0);
        assert_eq!(limiter.try_acquire().unwrap_err(), AcquireError::Closed);
    });
}

#[test]
fn a_large_waiter_and_a_small_one_both_served_in_order() {
    model(|| {
        let limiter = Arc::new(ConcurrencyLimiter::new(2).unwrap());
        let held = limiter.acquire().unwrap();
        let large = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.acquire_many(2).map(|permit| permit.count()))
        };
        let small = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.acquire().map(|permit| permit.count()))
        };
        drop(held);
        // Whoever queued first is served first; nobody hangs, nothing leaks.
        assert_eq!(large.join().unwrap(), Ok(2));
        assert_eq!(small.join().unwrap(), Ok(1));
        assert_eq!(limiter.available(), 2);
        assert_eq!(limiter.waiting(), 0);
    });
}

fn keyed_insert_races_eviction(shards: usize) {
    model(move || {
        let limiter = Arc::new(
            KeyedLimiter::<u64, _>::builder(Quota::per_second(1).unwrap())
                .max_keys(1)
                .when_full(WhenFull::EvictIdlest)
                .shards(shards)
                .clock(ManualClock::new())
                .build()
                .unwrap(),
        );
        let other = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.check(&1))
        };
        let mine = limiter.check(&2);
        let theirs = other.join().unwrap();
        // Both new keys pass (the second evicts the first), and the bound holds.
        assert_eq!((mine, theirs), (Ok(()), Ok(())));
        assert_eq!(limiter.len(), 1);
        let stats = limiter.stats();
        assert_eq!((stats.created, stats.evicted), (2, 1));
        // The survivor is still spent (its state was not reset); the evicted
        // key would start full.
        let mut available = [limiter.available(&1), limiter.available(&2)];
        available.sort_unstable();
        assert_eq!(available, [0, 1]);
    });
}

#[test]
fn keyed_insert_races_eviction_one_shard() {
    keyed_insert_races_eviction(1);
}

#[test]
fn keyed_insert_races_eviction_two_shards() {
    keyed_insert_races_eviction(2);
}
