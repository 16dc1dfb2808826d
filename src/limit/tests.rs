use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};

const VECTORS: &str = include_str!("../../tests/vectors/gcra.txt");

/// One parsed line of the shared vectors.
#[derive(Debug)]
enum Vector {
    Case {
        name: String,
        interval_ns: u64,
        burst: u64,
    },
    Step {
        t_ns: u64,
        n: u64,
        expect: Expect,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny(u64),
    Exceeds,
}

fn vectors() -> Vec<Vector> {
    VECTORS
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| words[i].parse::<u64>().unwrap();
            if words[0] == "case" {
                Vector::Case {
                    name: words[1].to_owned(),
                    interval_ns: num(2),
                    burst: num(3),
                }
            } else {
                let expect = match words[2] {
                    "allow" => Expect::Allow,
                    "deny" => Expect::Deny(num(3)),
                    "exceeds" => Expect::Exceeds,
                    other => panic!("unknown expectation {other}"),
                };
                Vector::Step {
                    t_ns: num(0),
                    n: num(1),
                    expect,
                }
            }
        })
        .collect()
}

fn quota(interval_ns: u64, burst: u64) -> Quota {
    Quota::with_interval(Duration::from_nanos(interval_ns))
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

#[test]
fn shared_vectors_replay_on_the_direct_limiter() {
    let mut limiter = None;
    let mut clock = ManualClock::new();
    let mut steps = 0;
    for vector in vectors() {
        match vector {
            Vector::Case {
                interval_ns, burst, ..
            } => {
                clock = ManualClock::new();
                limiter = Some(RateLimiter::with_clock(
                    quota(interval_ns, burst),
                    clock.clone(),
                ));
            }
            Vector::Step { t_ns, n, expect } => {
                let limiter = limiter.as_ref().unwrap();
                clock.set(Duration::from_nanos(t_ns));
                let got = match limiter.check_n(n) {
                    Ok(()) => Expect::Allow,
                    Err(CheckError::Wait(w)) => {
                        Expect::Deny(w.wait_time_from(clock.now()).as_nanos() as u64)
                    }
                    Err(CheckError::ExceedsBurst { .. }) => Expect::Exceeds,
                    Err(e) => panic!("unexpected {e}"),
                };
                assert_eq!(got, expect, "at t={t_ns} n={n}");
                steps += 1;
            }
        }
    }
    assert!(steps >= 30);
}

#[test]
fn shared_vectors_replay_on_the_keyed_limiter() {
    // Every case on its own key of one keyed limiter whose quota_for reads
    // the case's quota: per-key quotas give the same answers.
    type Case = (String, Quota, Vec<(u64, u64, Expect)>);
    let mut cases: Vec<Case> = Vec::new();
    for vector in vectors() {
        match vector {
            Vector::Case {
                name,
                interval_ns,
                burst,
            } => cases.push((name, quota(interval_ns, burst), Vec::new())),
            Vector::Step { t_ns, n, expect } => cases.last_mut().unwrap().2.push((t_ns, n, expect)),
        }
    }
    for (name, q, steps) in cases {
        let clock = ManualClock::new();
        let limiter = KeyedLimiter::<String, _>::builder(Quota::per_second(1).unwrap())
            .quota_for(move |_| Some(q))
            .clock(clock.clone())
            .idle_sweep(Duration::MAX)
            .build()
            .unwrap();
        for (t_ns, n, expect) in steps {
            clock.set(Duration::from_nanos(t_ns));
            let got = match limiter.check_n(&name, n) {
                Ok(()) => Expect::Allow,
                Err(CheckError::Wait(w)) => {
                    Expect::Deny(w.wait_time_from(clock.now()).as_nanos() as u64)
                }
                Err(CheckError::ExceedsBurst { .. }) => Expect::Exceeds,
                Err(e) => panic!("unexpected {e}"),
            };
            assert_eq!(got, expect, "case {name} at t={t_ns} n={n}");
        }
    }
}

/// Checks until denied; returns how many passed.
fn drain(limiter: &RateLimiter<ManualClock>) -> u64 {
    let mut passed = 0;
    while limiter.check().is_ok() {
        passed += 1;
    }
    passed
}

#[test]
fn long_window_admits_burst_plus_elapsed_times_rate_exactly() {
    let clock = ManualClock::new();
    // 100 a second (T = 10 ms), burst 5.
    let limiter = RateLimiter::with_clock(
        Quota::per_second(100).unwrap().with_burst(5).unwrap(),
        clock.clone(),
    );
    let mut passed = drain(&limiter);
    // 10 s in 1 ms steps, draining at each.
    for _ in 0..10_000 {
        clock.advance(Duration::from_millis(1));
        passed += drain(&limiter);
    }
    assert_eq!(passed, 5 + 10 * 100);
    // And in uneven steps (3 ms, 7 ms, 0, 11 ms, ...): still exact.
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(
        Quota::per_second(100).unwrap().with_burst(5).unwrap(),
        clock.clone(),
    );
    let mut passed = drain(&limiter);
    let mut elapsed = 0;
    for i in 0..5_000u64 {
        let step = (i * 7919) % 13;
        elapsed += step;
        clock.advance(Duration::from_millis(step));
        passed += drain(&limiter);
    }
    assert_eq!(passed, 5 + elapsed / 10);
}

#[test]
fn idling_never_banks_more_than_the_burst() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(
        Quota::per_second(10).unwrap().with_burst(3).unwrap(),
        clock.clone(),
    );
    assert_eq!(drain(&limiter), 3);
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(limiter.available(), 3);
    assert_eq!(drain(&limiter), 3);
    assert_eq!(limiter.available(), 0);
}

#[test]
fn check_n_boundaries() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(
        Quota::per_second(10).unwrap().with_burst(4).unwrap(),
        clock.clone(),
    );
    assert_eq!(limiter.check_n(0), Ok(()));
    assert_eq!(
        limiter.check_n(5),
        Err(CheckError::ExceedsBurst {
            requested: 5,
            burst: 4
        })
    );
    assert_eq!(
        limiter.check_n(u64::MAX),
        Err(CheckError::ExceedsBurst {
            requested: u64::MAX,
            burst: 4
        })
    );
    assert_eq!(limiter.check_n(4), Ok(()));
    let wait = limiter.check_n(4).unwrap_err().not_until().unwrap();
    assert_eq!(wait.wait_time_from(clock.now()), Duration::from_millis(400));
    clock.advance(Duration::from_millis(399));
    assert!(limiter.check_n(4).is_err());
    assert!(limiter.check_n(3).is_ok()); // 3 of the 4 were back already
                                         // At 500 ms: 4 + 500/100 = 9 cells in all, 7 taken.
    clock.advance(Duration::from_millis(101));
    assert!(limiter.check_n(2).is_ok());
    assert!(limiter.check_n(1).is_err());
    assert_eq!(
        limiter.until_n_ready(9),
        Err(CheckError::ExceedsBurst {
            requested: 9,
            burst: 4
        })
    );
}

#[test]
fn reservations_cancelled_and_reused() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(
        Quota::per_second(10).unwrap().with_burst(2).unwrap(),
        clock.clone(),
    );
    let a = limiter.reserve(2).unwrap();
    assert!(a.is_ready());
    let b = limiter.reserve(2).unwrap();
    assert_eq!(b.ready_at() - clock.now(), Duration::from_millis(200));
    assert!(!b.is_ready());
    // Cancelling `a` while `b` counts on it gives nothing back (that
    // would let more through than the quota).
    a.cancel();
    assert!(limiter.check().is_err());
    // Cancelling `b` (the last) gives back all of it.
    b.cancel();
    assert_eq!(limiter.available(), 0); // `a`'s cells are still spent
    clock.advance(Duration::from_millis(200));
    assert_eq!(limiter.available(), 2);
    // Reuse after cancelling at once: the limiter is as before.
    let c = limiter.reserve(1).unwrap();
    c.cancel();
    assert_eq!(limiter.available(), 2);
    // A half-drained reservation gives back only the undrained half.
    let d = limiter.reserve(2).unwrap();
    clock.advance(Duration::from_millis(100));
    d.cancel();
    assert_eq!(limiter.available(), 2);
    let e = limiter.reserve(2).unwrap();
    clock.advance(Duration::from_millis(100));
    assert_eq!(limiter.available(), 1);
    e.cancel();
    assert_eq!(limiter.available(), 2);
    assert!(limiter.reserve(3).is_err());
}

#[test]
fn a_reservation_waits_on_the_clock() {
    let clock = ManualClock::new();
    let limiter = Arc::new(RateLimiter::with_clock(
        Quota::per_second(10).unwrap().with_burst(1).unwrap(),
        clock.clone(),
    ));
    limiter.check().unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        thread::spawn(move || {
            limiter.reserve(1).unwrap().wait();
            limiter.clock().now()
        })
    };
    let start = clock.now();
    for _ in 0..10 {
        clock.advance(Duration::from_millis(20));
    }
    // However the threads interleave, the wait ends at or after 100 ms.
    assert!(waiter.join().unwrap() - start >= Duration::from_millis(100));
}

#[test]
fn until_ready_blocks_until_the_clock_allows() {
    let clock = ManualClock::new();
    let limiter = Arc::new(RateLimiter::with_clock(
        Quota::per_second(1).unwrap(),
        clock.clone(),
    ));
    limiter.check().unwrap();
    let passed = Arc::new(AtomicU64::new(0));
    let waiter = {
        let (limiter, passed) = (Arc::clone(&limiter), Arc::clone(&passed));
        thread::spawn(move || {
            for _ in 0..3 {
                limiter.until_ready();
                passed.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Each second of manual time lets exactly one more through.
    for second in 1..=3 {
        clock.advance(Duration::from_secs(1));
        while passed.load(Ordering::SeqCst) < second {
            clock.advance(Duration::ZERO); // wake the waiter to re-check
            thread::yield_now();
        }
        assert_eq!(passed.load(Ordering::SeqCst), second);
    }
    waiter.join().unwrap();
}

#[test]
fn set_rate_and_burst_at_run_time() {
    let clock = ManualClock::new();
    let limiter = RateLimiter::with_clock(Quota::per_second(10).unwrap(), clock.clone());
    assert_eq!(drain(&limiter), 10);
    limiter.set_rate(100, Duration::from_secs(1)).unwrap();
    assert_eq!(limiter.quota().burst(), 10);
    // Time already owed stays owed: the limiter was 1 s ahead.
    clock.advance(Duration::from_millis(990));
    assert_eq!(drain(&limiter), 9);
    clock.advance(Duration::from_millis(10));
    assert_eq!(drain(&limiter), 1);
    clock.advance(Duration::from_millis(50));
    assert_eq!(drain(&limiter), 5);
    limiter.set_burst(2).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(drain(&limiter), 2);
    assert!(limiter.set_burst(0).is_err());
    assert!(limiter.set_rate(0, Duration::from_secs(1)).is_err());
    assert_eq!(
        limiter.quota(),
        Quota::per_second(100).unwrap().with_burst(2).unwrap()
    );
}

#[test]
fn bad_quotas_are_errors() {
    assert_eq!(Quota::per_second(0).unwrap_err().setting(), "quota");
    assert!(Quota::new(2_000_000_000, Duration::from_secs(1)).is_err());
    assert!(Quota::with_interval(Duration::ZERO).is_err());
    assert_eq!(
        Quota::per_second(1)
            .unwrap()
            .with_burst(0)
            .unwrap_err()
            .setting(),
        "burst"
    );
    assert!(Quota::with_interval(Duration::from_secs(1))
        .unwrap()
        .with_burst(u64::MAX)
        .is_err());
    assert!(Quota::new(1, Duration::MAX).is_err());
    assert_eq!(
        Quota::per_minute(60).unwrap().interval(),
        Duration::from_secs(1)
    );
}

#[test]
fn threads_never_admit_more_than_the_formula() {
    // Rounds: the clock moves, then every thread checks until denied. The
    // total must be exactly burst + elapsed / T, however the CASes race.
    const THREADS: usize = 4;
    const ROUNDS: u64 = 200;
    let clock = ManualClock::new();
    let limiter = Arc::new(RateLimiter::with_clock(
        Quota::per_second(1_000).unwrap().with_burst(50).unwrap(),
        clock.clone(),
    ));
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let admitted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, barrier, admitted) = (
                Arc::clone(&limiter),
                Arc::clone(&barrier),
                Arc::clone(&admitted),
            );
            thread::spawn(move || {
                for _ in 0..=ROUNDS {
                    barrier.wait();
                    let mut mine = 0;
                    while limiter.check().is_ok() {
                        mine += 1;
                    }
                    admitted.fetch_add(mine, Ordering::Relaxed);
                    barrier.wait();
                }
            })
        })
        .collect();
    for round in 0..=ROUNDS {
        if round > 0 {
            clock.advance(Duration::from_micros(7_300)); // 7.3 cells a round
        }
        barrier.wait();
        barrier.wait();
    }
    for w in workers {
        w.join().unwrap();
    }
    let elapsed_us = 7_300 * ROUNDS;
    assert_eq!(admitted.load(Ordering::Relaxed), 50 + elapsed_us / 1_000);
}

#[test]
fn threads_on_the_real_clock_stay_under_the_bound() {
    // Read before the limiter exists: its time line starts later.
    let start = std::time::Instant::now();
    // std's clock, so the limiter's time line and `start` are one line.
    let limiter = Arc::new(RateLimiter::with_clock(
        Quota::per_second(1_000).unwrap().with_burst(10).unwrap(),
        crate::clock::MonotonicClock,
    ));
    let admitted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            thread::spawn(move || {
                for _ in 0..20_000 {
                    if limiter.check().is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Upper bound from the formula over the whole run (elapsed read after the join).
    let elapsed = start.elapsed().as_nanos() as u64;
    assert!(admitted.load(Ordering::Relaxed) <= 10 + elapsed / 1_000_000 + 1);
}

// ---- leaky bucket ----

#[test]
fn leaky_bucket_spaces_and_bounds_waiters() {
    let clock = ManualClock::new();
    let bucket = LeakyBucket::builder()
        .interval(Duration::from_millis(10))
        .max_waiting(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(bucket.try_acquire(), Ok(()));
    assert_eq!(bucket.waiting(), 0);
    // Two callers may queue for 10 ms and 20 ms; a third is refused.
    let e = bucket.try_acquire().unwrap_err();
    assert_eq!(e.wait_time_from(clock.now()), Duration::from_millis(10));
    assert!(matches!(
        bucket.acquire_timeout(Duration::from_millis(9)),
        Err(LeakyError::TimedOut(_))
    ));
    assert_eq!(bucket.waiting(), 0); // refused callers claim nothing
    clock.advance(Duration::from_millis(10));
    assert_eq!(bucket.try_acquire(), Ok(()));
    assert!(LeakyBucket::builder().build().is_err());
    assert!(LeakyBucket::builder()
        .rate(0, Duration::from_secs(1))
        .build()
        .is_err());
}

#[test]
fn leaky_bucket_serves_waiters_in_arrival_order_and_refuses_past_the_bound() {
    let clock = ManualClock::new();
    let bucket = Arc::new(
        LeakyBucket::builder()
            .interval(Duration::from_millis(10))
            .max_waiting(3)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    bucket.try_acquire().unwrap(); // slot 0
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for id in 0..3 {
        let (mine, order) = (Arc::clone(&bucket), Arc::clone(&order));
        waiters.push(thread::spawn(move || {
            mine.acquire().unwrap();
            order.lock().unwrap().push(id);
        }));
        // The next caller arrives only once this one holds its slot.
        while bucket.waiting() < id + 1 {
            thread::yield_now();
        }
    }
    assert_eq!(bucket.waiting(), 3);
    assert_eq!(bucket.acquire(), Err(LeakyError::Full));
    for served in 1..=3 {
        clock.advance(Duration::from_millis(10));
        while order.lock().unwrap().len() < served {
            clock.advance(Duration::ZERO);
            thread::yield_now();
        }
    }
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
}

// ---- concurrency limiter ----

fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

#[test]
fn concurrency_basics_and_errors() {
    let limiter = ConcurrencyLimiter::new(3).unwrap();
    assert!(ConcurrencyLimiter::new(0).is_err());
    let two = limiter.acquire_many(2).unwrap();
    assert_eq!(two.count(), 2);
    assert_eq!((limiter.available(), limiter.in_use()), (1, 2));
    assert_eq!(
        limiter.try_acquire_many(2).unwrap_err(),
        AcquireError::NoPermits
    );
    assert_eq!(
        limiter.acquire_many(4).unwrap_err(),
        AcquireError::ExceedsCapacity {
            requested: 4,
            capacity: 3
        }
    );
    drop(two);
    assert_eq!(limiter.available(), 3);
    let zero = limiter.try_acquire_many(0).unwrap();
    assert_eq!(limiter.available(), 3);
    drop(zero);
    limiter.close();
    limiter.close(); // idempotent
    assert_eq!(limiter.try_acquire().unwrap_err(), AcquireError::Closed);
    assert_eq!(limiter.acquire().unwrap_err(), AcquireError::Closed);
}

#[test]
fn large_requests_are_not_starved_by_small_ones() {
    let limiter = Arc::new(ConcurrencyLimiter::new(4).unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let held = limiter.acquire_many(3).unwrap();
    let large = {
        let (limiter, log) = (Arc::clone(&limiter), Arc::clone(&log));
        thread::spawn(move || {
            let p = limiter.acquire_many(4).unwrap();
            log.lock().unwrap().push("large");
            drop(p);
        })
    };
    wait_for(|| limiter.waiting() == 1);
    // One permit is free, but the large request came first: no barging.
    assert_eq!(limiter.available(), 1);
    assert_eq!(limiter.try_acquire().unwrap_err(), AcquireError::NoPermits);
    let small = {
        let (limiter, log) = (Arc::clone(&limiter), Arc::clone(&log));
        thread::spawn(move || {
            let p = limiter.acquire().unwrap();
            log.lock().unwrap().push("small");
            drop(p);
        })
    };
    wait_for(|| limiter.waiting() == 2);
    drop(held);
    large.join().unwrap();
    small.join().unwrap();
    assert_eq!(*log.lock().unwrap(), vec!["large", "small"]);
    assert_eq!(limiter.available(), 4);
}

#[test]
fn a_timed_out_head_lets_those_behind_it_through() {
    let clock = ManualClock::new();
    let limiter = Arc::new(ConcurrencyLimiter::with_clock(2, clock.clone()).unwrap());
    let held = limiter.acquire().unwrap();
    let large = {
        let limiter = Arc::clone(&limiter);
        thread::spawn(move || {
            limiter
                .acquire_many_timeout(2, Duration::from_secs(5))
                .map(drop)
        })
    };
    wait_for(|| limiter.waiting() == 1);
    let small = {
        let limiter = Arc::clone(&limiter);
        thread::spawn(move || limiter.acquire().map(|p| p.count()))
    };
    wait_for(|| limiter.waiting() == 2);
    clock.advance(Duration::from_secs(5));
    assert_eq!(large.join().unwrap(), Err(AcquireError::TimedOut));
    assert_eq!(small.join().unwrap(), Ok(1));
    drop(held);
    assert_eq!(limiter.available(), 2);
    // Duration::MAX means forever, not a panic.
    assert!(limiter.acquire_timeout(Duration::MAX).is_ok());
}

#[test]
fn shrinking_waits_for_permits_and_growing_serves_waiters() {
    let limiter = Arc::new(ConcurrencyLimiter::new(4).unwrap());
    let a = limiter.acquire_many(3).unwrap();
    limiter.set_capacity(2).unwrap();
    // Nothing revoked: 3 still out, none free, 1 owed.
    assert_eq!(
        (limiter.in_use(), limiter.available(), limiter.capacity()),
        (3, 0, 2)
    );
    let b = limiter.try_acquire();
    assert_eq!(b.unwrap_err(), AcquireError::NoPermits);
    drop(a); // pays the debt of 1, frees 2
    assert_eq!((limiter.in_use(), limiter.available()), (0, 2));
    let x = limiter.acquire_many(2).unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        thread::spawn(move || limiter.acquire_many(2).map(|p| p.count()))
    };
    wait_for(|| limiter.waiting() == 1);
    limiter.set_capacity(4).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(2));
    drop(x);
    assert_eq!(limiter.available(), 4);
    // A waiter for more than a shrunk capacity is refused, not left forever.
    let all = limiter.acquire_many(4).unwrap();
    let big = {
        let limiter = Arc::clone(&limiter);
        thread::spawn(move || limiter.acquire_many(3).map(drop))
    };
    wait_for(|| limiter.waiting() == 1);
    limiter.set_capacity(2).unwrap();
    assert_eq!(
        big.join().unwrap(),
        Err(AcquireError::ExceedsCapacity {
            requested: 3,
            capacity: 2
        })
    );
    drop(all);
    assert_eq!((limiter.available(), limiter.in_use()), (2, 0));
    assert!(limiter.set_capacity(0).is_err());
}

#[test]
fn close_wakes_every_waiter_with_a_refusal() {
    let limiter = Arc::new(ConcurrencyLimiter::new(1).unwrap());
    let held = limiter.acquire().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.acquire().map(drop))
        })
        .collect();
    wait_for(|| limiter.waiting() == 3);
    limiter.close();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err(AcquireError::Closed));
    }
    drop(held); // returning a permit after close is fine
    assert_eq!(limiter.available(), 1);
    assert!(limiter.is_closed());
}

#[test]
fn threads_never_exceed_the_capacity() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 2_000;
    let limiter = Arc::new(ConcurrencyLimiter::new(3).unwrap());
    let now_in = Arc::new(AtomicUsize::new(0));
    let max_in = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (limiter, now_in, max_in, done) = (
                Arc::clone(&limiter),
                Arc::clone(&now_in),
                Arc::clone(&max_in),
                Arc::clone(&done),
            );
            thread::spawn(move || {
                for i in 0..ROUNDS {
                    let n = if (t + i) % 7 == 0 { 2 } else { 1 };
                    let permit = limiter.acquire_many(n).unwrap();
                    let inside = now_in.fetch_add(n as usize, Ordering::SeqCst) + n as usize;
                    max_in.fetch_max(inside, Ordering::SeqCst);
                    if i % 3 == 0 {
                        thread::yield_now();
                    }
                    now_in.fetch_sub(n as usize, Ordering::SeqCst);
                    drop(permit);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), THREADS * ROUNDS);
    assert!(max_in.load(Ordering::SeqCst) <= 3);
    assert_eq!(limiter.available(), 3);
    assert_eq!(limiter.waiting(), 0);
}

#[cfg(feature = "async")]
#[test]
fn async_acquire_queues_with_blocking_waiters() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let limiter = Arc::new(ConcurrencyLimiter::new(2).unwrap());
    let held = limiter.acquire_many(2).unwrap();
    let task = {
        let limiter = Arc::clone(&limiter);
        rt.spawn(async move { limiter.acquire_async(2).await.map(|p| p.count()) })
    };
    wait_for(|| limiter.waiting() == 1);
    drop(held);
    assert_eq!(rt.block_on(task).unwrap(), Ok(2));
    assert_eq!(limiter.available(), 2);
    // A dropped pending future leaves the queue and lets the next through.
    let held = limiter.acquire().unwrap();
    rt.block_on(async {
        let pending = limiter.acquire_async(2);
        let timed = tokio::time::timeout(Duration::from_millis(1), pending).await;
        assert!(timed.is_err());
    });
    assert_eq!(limiter.waiting(), 0);
    drop(held);
    assert_eq!(limiter.available(), 2);
}

// ---- keyed ----

#[test]
fn keyed_per_key_quotas_are_honoured() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(2).unwrap())
        .quota_for(|k| (*k >= 100).then(|| Quota::per_second(10).unwrap()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut passed = [0u64; 2];
    for (slot, key) in [(0, 7u64), (1, 100)] {
        while limiter.check(&key).is_ok() {
            passed[slot] += 1;
        }
    }
    assert_eq!(passed, [2, 10]);
    clock.advance(Duration::from_secs(1));
    assert_eq!(limiter.available(&7), 2);
    assert_eq!(limiter.available(&100), 10);
    assert_eq!(limiter.available(&5), 2); // untracked: a full default
    assert_eq!(
        limiter.check_n(&7, 3),
        Err(CheckError::ExceedsBurst {
            requested: 3,
            burst: 2
        })
    );
    assert_eq!(limiter.len(), 2);
    assert!(limiter.forget(&7));
    assert_eq!(limiter.len(), 1);
    limiter.check_invariants();
}

#[test]
fn keyed_refuse_policy_never_disturbs_tracked_keys() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(1).unwrap())
        .max_keys(3)
        .shards(1)
        .idle_sweep(Duration::MAX)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..3 {
        limiter.check(&k).unwrap();
    }
    assert_eq!(limiter.check(&3), Err(CheckError::KeysFull));
    assert_eq!(limiter.stats().refused, 1);
    assert!(limiter.check(&0).is_err()); // still limited, not reset
                                         // Once key 0 is fully replenished it makes room (dropping it changes nothing).
    clock.advance(Duration::from_secs(1));
    assert_eq!(limiter.check(&3), Ok(()));
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.stats().expired, 3);
    limiter.check_invariants();
}

#[test]
fn keyed_eviction_keeps_len_under_max_keys_for_a_million_keys() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(1).unwrap())
        .max_keys(1_000)
        .when_full(WhenFull::EvictIdlest)
        .shards(16)
        .clock(clock.clone())
        .build()
        .unwrap();
    let keys = if cfg!(miri) { 2_000 } else { 1_000_000 };
    let mut max_len = 0;
    for k in 0..keys {
        if k % 1_000 == 0 {
            clock.advance(Duration::from_micros(1));
        }
        assert_eq!(limiter.check(&k), Ok(()));
        max_len = max_len.max(limiter.len());
    }
    assert_eq!(max_len, 1_000);
    assert_eq!(limiter.len(), 1_000);
    let stats = limiter.stats();
    assert_eq!(stats.created, keys);
    assert_eq!(stats.evicted + stats.expired + 1_000, keys);
    limiter.check_invariants();
}

#[test]
fn idle_keys_expire_so_memory_tracks_active_keys() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(10).unwrap())
        .shards(64)
        .idle_sweep(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..10_000 {
        limiter.check(&k).unwrap();
    }
    assert_eq!(limiter.len(), 10_000);
    // Keys whose TAT is still ahead are kept: 50 ms later nothing expired.
    clock.advance(Duration::from_millis(50));
    assert_eq!(limiter.sweep_now(), 0);
    // A second later every key is fully replenished. Only key 0 stays in
    // use; one sweep period of its checks (one shard per step) drops the rest.
    clock.advance(Duration::from_secs(1));
    for _ in 0..64 {
        clock.advance(Duration::from_millis(1_000 / 64 + 1));
        let _ = limiter.check(&0);
    }
    assert_eq!(limiter.len(), 1);
    let stats = limiter.stats();
    assert_eq!(stats.created - stats.expired, 1);
    assert!(stats.expired >= 9_999);
    limiter.check_invariants();
}

#[test]
fn a_quiet_spell_is_caught_up_one_shard_per_check() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(10).unwrap())
        .shards(8)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..1_000 {
        limiter.check(&k).unwrap();
    }
    clock.advance(Duration::from_secs(3_600));
    for _ in 0..8 {
        let _ = limiter.check(&1_000_000);
    }
    assert_eq!(limiter.len(), 1);
}

#[test]
fn a_panicking_quota_function_is_counted_and_the_default_used() {
    let clock = ManualClock::new();
    let limiter = KeyedLimiter::<u64, _>::builder(Quota::per_second(2).unwrap())
        .quota_for(|k| if *k == 13 { panic!("unlucky") } else { None })
        .clock(clock)
        .build()
        .unwrap();
    assert_eq!(limiter.check_n(&13, 2), Ok(()));
    assert_eq!(limiter.stats().quota_panics, 1);
    assert!(limiter.check(&13).is_err());
}

#[test]
fn keyed_bad_config_is_an_error() {
    let q = Quota::per_second(1).unwrap();
    assert_eq!(
        KeyedLimiter::<u64>::builder(q)
            .max_keys(0)
            .build()
            .unwrap_err()
            .setting(),
        "max_keys"
    );
    assert_eq!(
        KeyedLimiter::<u64>::builder(q)
            .shards(3)
            .build()
            .unwrap_err()
            .setting(),
        "shards"
    );
    assert_eq!(
        KeyedLimiter::<u64>::builder(q)
            .idle_sweep(Duration::ZERO)
            .build()
            .unwrap_err()
            .setting(),
        "idle_sweep"
    );
}

#[test]
fn keyed_threads_count_exactly_per_key() {
    // 4 threads, 8 keys of burst 100: exactly 100 pass per key, whatever the race.
    let clock = ManualClock::new();
    let limiter = Arc::new(
        KeyedLimiter::<u64, _>::builder(Quota::per_second(100).unwrap())
            .max_keys(8)
            .clock(clock)
            .build()
            .unwrap(),
    );
    let admitted: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            thread::spawn(move || {
                for i in 0..2_000u64 {
                    let key = (i + t) % 8;
                    if limiter.check(&key).is_ok() {
                        admitted[key as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    for a in admitted.iter() {
        assert_eq!(a.load(Ordering::Relaxed), 100);
    }
    limiter.check_invariants();
}

#[test]
fn send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<RateLimiter>();
    is::<LeakyBucket>();
    is::<ConcurrencyLimiter>();
    is::<KeyedLimiter<String>>();
    is::<Permit<'static>>();
    is::<OwnedPermit>();
    is::<CachedRateLimiter>();
    let _ = ManualClock::new().now();
}

// ---- cached (per-core) limiter ----

#[test]
fn cached_limiter_never_passes_more_than_the_shared_state_gave_out() {
    const THREADS: usize = 4;
    const ROUNDS: u64 = 100;
    let clock = ManualClock::new();
    let limiter = Arc::new(
        CachedRateLimiter::with_clock(
            Quota::per_second(1_000).unwrap().with_burst(64).unwrap(),
            8,
            clock.clone(),
        )
        .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let admitted = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (limiter, barrier, admitted) = (
                Arc::clone(&limiter),
                Arc::clone(&barrier),
                Arc::clone(&admitted),
            );
            thread::spawn(move || {
                for _ in 0..=ROUNDS {
                    barrier.wait();
                    let mut mine = 0;
                    while limiter.check().is_ok() {
                        mine += 1;
                    }
                    admitted.fetch_add(mine, Ordering::Relaxed);
                    barrier.wait();
                }
            })
        })
        .collect();
    for round in 0..=ROUNDS {
        if round > 0 {
            clock.advance(Duration::from_micros(5_500));
        }
        barrier.wait();
        barrier.wait();
    }
    for w in workers {
        w.join().unwrap();
    }
    let strict = 64 + 5_500 * ROUNDS / 1_000;
    let admitted = admitted.load(Ordering::Relaxed);
    // Every cell the shared GCRA gave out was either admitted or is still cached.
    assert_eq!(admitted + limiter.cached(), strict);
    assert!(limiter.cached() <= limiter.over_admission_bound());
}

#[test]
fn cached_limiter_over_admission_in_a_window_is_bounded() {
    let clock = ManualClock::new();
    let limiter = CachedRateLimiter::with_clock(
        Quota::per_second(1_000).unwrap().with_burst(100).unwrap(),
        10,
        clock.clone(),
    )
    .unwrap();
    assert!(limiter.check().is_ok()); // borrows 10, caches 9
    assert_eq!(limiter.cached(), 9);
    clock.advance(Duration::from_secs(1)); // the shared state is full again
    let mut passed = 0;
    while limiter.check().is_ok() {
        passed += 1;
    }
    // The strict limiter would pass 100 here; the 9 cached cells come on top.
    assert_eq!(passed, 109);
    assert!(passed <= 100 + limiter.over_admission_bound());
    assert_eq!(
        CachedRateLimiter::new(Quota::per_second(5).unwrap(), 6)
            .unwrap_err()
            .setting(),
        "chunk"
    );
    assert!(CachedRateLimiter::new(Quota::per_second(5).unwrap(), 0).is_err());
}

#[test]
fn owned_permits_move_across_threads() {
    let limiter = Arc::new(ConcurrencyLimiter::new(3).unwrap());
    let permits: Vec<OwnedPermit> = (0..3)
        .map(|_| limiter.try_acquire_many_owned(1).unwrap())
        .collect();
    assert_eq!(
        limiter.try_acquire_many_owned(1).unwrap_err(),
        AcquireError::NoPermits
    );
    let handles: Vec<_> = permits
        .into_iter()
        .map(|p| thread::spawn(move || p.count()))
        .collect();
    let returned: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(returned, 3);
    assert_eq!(limiter.available(), 3);
    let two = limiter
        .acquire_many_timeout_owned(2, Duration::MAX)
        .unwrap();
    assert_eq!((two.count(), limiter.available()), (2, 1));
}
