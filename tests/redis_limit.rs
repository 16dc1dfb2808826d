//! `sheaf::limit::redis::RedisRateLimiter` against a real `redis-server`
//! (started by the harness on a unix socket in a temp dir; a missing
//! server fails the test, it never skips).

mod support {
    pub mod redis_server;
}

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use sheaf::limit::redis::{RedisCheckError, RedisRateLimiter};
use sheaf::limit::{CheckError, Quota};
use support::redis_server::RedisServer;

const VECTORS: &str = include_str!("vectors/gcra.txt");

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Deny(u64),
    Exceeds,
}

struct Case {
    name: String,
    interval_ns: u64,
    burst: u64,
    steps: Vec<(u64, u64, Expect)>,
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in VECTORS.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| words[i].parse::<u64>().unwrap();
        if words[0] == "case" {
            cases.push(Case {
                name: words[1].to_owned(),
                interval_ns: num(2),
                burst: num(3),
                steps: Vec::new(),
            });
        } else {
            let expect = match words[2] {
                "allow" => Expect::Allow,
                "deny" => Expect::Deny(num(3)),
                "exceeds" => Expect::Exceeds,
                other => panic!("unknown expectation {other}"),
            };
            cases
                .last_mut()
                .unwrap()
                .steps
                .push((num(0), num(1), expect));
        }
    }
    cases
}

fn quota(interval_ns: u64, burst: u64) -> Quota {
    Quota::with_interval(Duration::from_nanos(interval_ns))
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

fn limiter(server: &RedisServer, quota: Quota) -> RedisRateLimiter {
    RedisRateLimiter::builder(quota)
        .url(server.url())
        .build()
        .unwrap()
}

/// The server's clock in ns (`TIME`, microsecond resolution).
fn server_time_ns(con: &mut redis::Connection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    secs * 1_000_000_000 + micros * 1_000
}

#[test]
fn shared_vectors_replay_against_the_server() {
    let server = RedisServer::start();
    let mut steps = 0;
    for case in cases() {
        let limiter = limiter(&server, quota(case.interval_ns, case.burst));
        // Each case on a time line of its own that starts at an arbitrary,
        // large offset (so the pair arithmetic carries across seconds).
        let origin = Duration::from_secs(1_796_000_000) + Duration::from_nanos(999_999_950);
        for (t_ns, n, expect) in case.steps {
            let got = match limiter.check_n_at(&case.name, n, origin + Duration::from_nanos(t_ns)) {
                Ok(()) => Expect::Allow,
                Err(RedisCheckError::Wait { retry_after, .. }) => {
                    Expect::Deny(retry_after.as_nanos() as u64)
                }
                Err(RedisCheckError::ExceedsBurst { requested, burst }) => {
                    assert_eq!((requested, burst), (n, case.burst));
                    Expect::Exceeds
                }
                Err(e) => panic!("case {}: {e}", case.name),
            };
            assert_eq!(got, expect, "case {} at t={t_ns} n={n}", case.name);
            steps += 1;
        }
    }
    assert_eq!(steps, 39);
}

#[test]
fn vectors_also_replay_from_time_zero_and_near_the_u64_limit() {
    // The same vectors on time lines starting at 0 and at 2^63 ns: the
    // arithmetic is exact across the whole range a `u64` of ns covers.
    let server = RedisServer::start();
    for (prefix, origin) in [("zero:", 0u64), ("high:", 1 << 63)] {
        for case in cases() {
            let limiter = RedisRateLimiter::builder(quota(case.interval_ns, case.burst))
                .url(server.url())
                .prefix(prefix)
                .build()
                .unwrap();
            for (t_ns, n, expect) in case.steps {
                let got =
                    match limiter.check_n_at(&case.name, n, Duration::from_nanos(origin + t_ns)) {
                        Ok(()) => Expect::Allow,
                        Err(e) => match e.retry_after() {
                            Some(r) => Expect::Deny(r.as_nanos() as u64),
                            None => match e.check_error() {
                                Some(CheckError::ExceedsBurst { .. }) => Expect::Exceeds,
                                _ => panic!("{e}"),
                            },
                        },
                    };
                assert_eq!(got, expect, "{prefix}{} at t={t_ns} n={n}", case.name);
            }
        }
    }
}

#[test]
fn state_is_one_key_with_the_tat_in_ns_and_an_expiry() {
    let server = RedisServer::start();
    // One cell an hour, burst 2.
    let q = Quota::with_interval(Duration::from_secs(3600))
        .unwrap()
        .with_burst(2)
        .unwrap();
    let limiter = limiter(&server, q);
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let before = server_time_ns(&mut con);
    limiter.check_n("alice", 2).unwrap();
    let after = server_time_ns(&mut con);
    let tat: u64 = server
        .cli(&["GET", "sheaf:limit:alice"])
        .trim()
        .parse()
        .unwrap();
    assert!(tat >= before + 2 * 3_600_000_000_000 && tat <= after + 2 * 3_600_000_000_000);
    let expire_at_ms: u64 = server
        .cli(&["PEXPIRETIME", "sheaf:limit:alice"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(expire_at_ms, tat.div_ceil(1_000_000));
    // A denial: the retry delay is what the TAT says, on the server's clock.
    let e = limiter.check("alice").unwrap_err();
    let retry = e.retry_after().unwrap().as_nanos() as u64;
    let done = server_time_ns(&mut con);
    assert!(retry <= tat - 3_600_000_000_000 * 2 + 3_600_000_000_000 - before);
    assert!(retry >= tat - 3_600_000_000_000 - done);
    assert!(matches!(e.check_error(), Some(CheckError::Wait(_))));
    // Zero cells pass without writing.
    limiter.check_n("bob", 0).unwrap();
    assert_eq!(server.cli(&["EXISTS", "sheaf:limit:bob"]).trim(), "0");
    // reset: full again.
    limiter.reset("alice").unwrap();
    limiter.check_n("alice", 2).unwrap();
}

#[test]
fn four_clients_never_admit_more_than_the_formula() {
    let server = RedisServer::start();
    // One cell every 2 ms, burst 5: four clients hammering one key are
    // refused most of the time, so the bound is what limits them.
    let interval_ns = 2_000_000u64;
    let burst = 5u64;
    let limiter = Arc::new(limiter(&server, quota(interval_ns, burst)));
    limiter.load().unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    const CHECKS: u64 = 1_500;
    let barrier = Arc::new(Barrier::new(5));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let (mut admitted, mut denied) = (0u64, 0u64);
                for _ in 0..CHECKS {
                    match limiter.check("shared") {
                        Ok(()) => admitted += 1,
                        Err(RedisCheckError::Wait { .. }) => denied += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (admitted, denied)
            })
        })
        .collect();
    let start = server_time_ns(&mut con);
    barrier.wait();
    let (mut admitted, mut denied) = (0, 0);
    for t in threads {
        let (a, d) = t.join().unwrap();
        admitted += a;
        denied += d;
    }
    let end = server_time_ns(&mut con);
    assert_eq!(admitted + denied, 4 * CHECKS, "every check answered");
    let bound = burst + (end - start) / interval_ns;
    eprintln!(
        "4 clients: {admitted} admitted, {denied} denied, bound {bound} over {} ns of server time",
        end - start
    );
    assert!(
        admitted <= bound,
        "admitted {admitted} > burst + elapsed/T = {bound} over {} ns",
        end - start
    );
    // Starting full, the first `burst` checks all pass.
    assert!(admitted >= burst, "admitted {admitted}");
}

#[test]
fn the_function_is_reloaded_after_a_flush() {
    let server = RedisServer::start();
    let q = Quota::with_interval(Duration::from_secs(3600))
        .unwrap()
        .with_burst(3)
        .unwrap();
    let limiter = limiter(&server, q);
    // First use loads the library.
    limiter.check("k").unwrap();
    assert!(server.cli(&["FUNCTION", "LIST"]).contains("sheaf_limit_v1"));
    server.cli(&["SCRIPT", "FLUSH"]);
    limiter.check("k").unwrap();
    server.cli(&["FUNCTION", "FLUSH"]);
    assert!(!server.cli(&["FUNCTION", "LIST"]).contains("sheaf_limit_v1"));
    // Reloaded transparently; the key's state survived (3 taken, the 4th waits).
    limiter.check("k").unwrap();
    assert!(server.cli(&["FUNCTION", "LIST"]).contains("sheaf_limit_v1"));
    server.cli(&["FUNCTION", "FLUSH"]);
    assert!(matches!(
        limiter.check("k"),
        Err(RedisCheckError::Wait { .. })
    ));
}

#[test]
fn a_lost_server_is_an_error_then_recovers() {
    let mut server = RedisServer::start();
    let limiter = restartable_limiter(&server);
    limiter.check("k").unwrap();
    server.kill();
    assert!(matches!(limiter.check("k"), Err(RedisCheckError::Redis(_))));
    server.restart();
    // The pooled connection died with the server: the next check may see
    // that once, then a fresh connection answers (and reloads the function).
    assert!(answers_within_three_tries(|| limiter.check("k")));
}

/// 100 checks a second, with a timeout so a check on a killed server fails.
fn restartable_limiter(server: &RedisServer) -> RedisRateLimiter {
    RedisRateLimiter::builder(Quota::per_second(100).unwrap())
        .url(server.url())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// After a server restart: `true` once a check passes within three tries,
/// where only connection errors may come first.
fn answers_within_three_tries(mut check: impl FnMut() -> Result<(), RedisCheckError>) -> bool {
    for _ in 0..3 {
        match check() {
            Ok(()) => return true,
            Err(RedisCheckError::Redis(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    false
}

#[test]
fn bad_config_is_a_config_error() {
    let q = Quota::per_second(10).unwrap();
    let e = RedisRateLimiter::builder(q).build().unwrap_err();
    assert_eq!(e.setting(), "url");
    let e = RedisRateLimiter::builder(q)
        .url("not a url")
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "url");
    let e = RedisRateLimiter::builder(q)
        .url("redis+unix:///nonexistent/sheaf-no-server.sock")
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "timeout");
    let e = RedisRateLimiter::builder(q)
        .url("redis+unix:///nonexistent/sheaf-no-server.sock")
        .max_idle_connections(0)
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "max_idle_connections");
    assert_eq!(Quota::per_second(0).unwrap_err().setting(), "quota");
    assert_eq!(q.with_burst(0).unwrap_err().setting(), "burst");
    // Building connects to nothing: a valid URL with no server is fine
    // until a check, which then fails with an error, not a panic.
    let limiter = RedisRateLimiter::builder(q)
        .url("redis+unix:///nonexistent/sheaf-no-server.sock")
        .build()
        .unwrap();
    assert!(matches!(limiter.check("k"), Err(RedisCheckError::Redis(_))));
}

/// A two-worker tokio runtime for the async checks.
#[cfg(feature = "async")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[cfg(feature = "async")]
#[test]
fn async_checks_share_each_keys_state_with_blocking_ones() {
    let server = RedisServer::start();
    // One cell an hour, burst 3: nothing refills during the test.
    let limiter = limiter(&server, quota(3_600_000_000_000, 3));
    runtime().block_on(async {
        limiter.check("k").unwrap();
        limiter.check_async("k").await.unwrap();
        limiter.check_n_async("k", 1).await.unwrap();
        let refused = limiter.check_async("k").await.unwrap_err();
        let retry = refused.retry_after().expect("a wait");
        assert!(retry > Duration::ZERO && retry <= Duration::from_secs(3600));
        assert!(matches!(refused.check_error(), Some(CheckError::Wait(_))));
        assert!(matches!(
            limiter.check("k"),
            Err(RedisCheckError::Wait { .. })
        ));
        // Over the burst: refused here, no round trip.
        assert!(matches!(
            limiter.check_n_async("other", 4).await,
            Err(RedisCheckError::ExceedsBurst {
                requested: 4,
                burst: 3
            })
        ));
        // Another key is untouched, and `n = 3` takes it whole.
        limiter.check_n_async("other", 3).await.unwrap();
        assert!(limiter.check_async("other").await.is_err());
    });
}

#[cfg(feature = "async")]
#[test]
fn async_tasks_on_one_key_admit_exactly_the_burst() {
    let server = RedisServer::start();
    let limiter = Arc::new(limiter(&server, quota(3_600_000_000_000, 5)));
    let admitted = runtime().block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    let mut admitted = 0u64;
                    for _ in 0..50 {
                        match limiter.check_async("shared").await {
                            Ok(()) => admitted += 1,
                            Err(RedisCheckError::Wait { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        admitted
    });
    // 400 checks within an hour of one cell an hour: exactly the burst.
    assert_eq!(admitted, 5);
}

#[cfg(feature = "async")]
#[test]
fn async_checks_reload_the_function_and_survive_a_lost_server() {
    let mut server = RedisServer::start();
    let limiter = restartable_limiter(&server);
    let rt = runtime();
    rt.block_on(async {
        limiter.check_async("k").await.unwrap();
        assert!(server.cli(&["FUNCTION", "LIST"]).contains("sheaf_limit_v1"));
        server.cli(&["FUNCTION", "FLUSH"]);
        limiter.check_async("k").await.unwrap();
        assert!(server.cli(&["FUNCTION", "LIST"]).contains("sheaf_limit_v1"));
    });
    server.kill();
    rt.block_on(async {
        assert!(matches!(
            limiter.check_async("k").await,
            Err(RedisCheckError::Redis(_))
        ));
    });
    server.restart();
    // The shared connection died with the server: a check may see that
    // once, then a new connection answers (and reloads the function).
    assert!(answers_within_three_tries(
        || rt.block_on(limiter.check_async("k"))
    ));
}
