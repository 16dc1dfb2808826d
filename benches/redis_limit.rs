//! `RedisRateLimiter` against a plain Lua GCRA script called with `EVALSHA`
//! (the redis_rate approach), on the same private `redis-server` (unix
//! socket), in the same run.
//!
//! - `sheaf`: `RedisRateLimiter::check` (one `FCALL` of the `sheaf_limit_v1`
//!   function; exact integer-pair arithmetic in ns).
//! - `evalsha-gcra`: [`REDIS_RATE_GCRA`] below, a port of redis_rate's
//!   `allow_n` script (float seconds, `GET` + `SET EX`), through redis-rs's
//!   `Script` (`EVALSHA`, reloaded on `NOSCRIPT`).
//!
//! Each implementation runs with 1 and 4 client threads, each thread on its
//! own connection, for a fixed wall time; every thread checks keys
//! `bench:<thread>:<i % 1000>` with a quota of 1,000,000 a second per key
//! (burst 1,000), so almost every check passes and writes the key: the
//! costly path. The figure is checks per second over all threads, the
//! median of 5 runs, the two implementations alternating.
//!
//! Run: `cargo bench --features redis --bench redis_limit` (optional
//! argument: seconds per run, default 2).

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use sheaf::limit::redis::RedisRateLimiter;
use sheaf::limit::Quota;

/// redis_rate's GCRA (github.com/go-redis/redis_rate, `allowN`), with the
/// same arithmetic: emission interval and times in float seconds.
const REDIS_RATE_GCRA: &str = r#"
local rate_limit_key = KEYS[1]
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst

local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", rate_limit_key)
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)

local new_tat = tat + increment
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / emission_interval

if remaining < 0 then
  local reset_after = tat - now
  local retry_after = diff * -1
  return {0, 0, tostring(retry_after), tostring(reset_after)}
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
local retry_after = -1
return {cost, remaining, tostring(retry_after), tostring(reset_after)}
"#;

const KEYS: u64 = 1000;
const ROUNDS: usize = 5;
const PER_SECOND: u64 = 1_000_000;
const BURST: u64 = 1000;

/// Runs `check(thread, i)` on `threads` threads for `secs`; checks per second.
fn run<S: Send + 'static>(
    threads: usize,
    secs: f64,
    setup: impl Fn(usize) -> S,
    check: impl Fn(&mut S, usize, u64) + Send + Sync + Copy + 'static,
) -> f64 {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let deadline = Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut state = setup(t);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut done = 0u64;
                while start.elapsed() < deadline {
                    for _ in 0..64 {
                        check(&mut state, t, done);
                        done += 1;
                    }
                }
                (done, start.elapsed())
            })
        })
        .collect();
    barrier.wait();
    let mut total = 0.0;
    for h in handles {
        let (done, elapsed) = h.join().unwrap();
        total += done as f64 / elapsed.as_secs_f64();
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2.0);
    let server = RedisServer::start();
    let quota = Quota::per_second(PER_SECOND)
        .unwrap()
        .with_burst(BURST)
        .unwrap();
    let limiter = Arc::new(
        RedisRateLimiter::builder(quota)
            .url(server.url())
            .build()
            .unwrap(),
    );
    limiter.load().unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let script = redis::Script::new(REDIS_RATE_GCRA);

    println!("redis_limit: checks/s, median of {ROUNDS} alternating runs of {secs} s, unix socket");
    println!("| clients | sheaf (FCALL) | evalsha-gcra | ratio |");
    println!("|---:|---:|---:|---:|");
    for threads in [1usize, 4] {
        // Alternate the two, ROUNDS times each, and keep the medians: the
        // machine is shared, so load drifts during a run.
        let (mut sheaf, mut evalsha) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            sheaf.push(run(
                threads,
                secs,
                |_| limiter.clone(),
                |l, t, i| {
                    let key = format!("bench:{t}:{}", i % KEYS);
                    black_box(l.check(&key)).unwrap();
                },
            ));
            evalsha.push(run(
                threads,
                secs,
                |_| (client.get_connection().unwrap(), script.clone()),
                |(con, script), t, i| {
                    let key = format!("rr:bench:{t}:{}", i % KEYS);
                    let reply: (i64, i64, String, String) = script
                        .key(key)
                        .arg(BURST)
                        .arg(PER_SECOND)
                        .arg(1)
                        .arg(1)
                        .invoke(con)
                        .unwrap();
                    assert_eq!(black_box(reply).0, 1);
                },
            ));
        }
        let (sheaf, evalsha) = (median(sheaf), median(evalsha));
        println!(
            "| {threads} | {sheaf:.0} | {evalsha:.0} | {:.2}x |",
            sheaf / evalsha
        );
    }
}
