//! `RedisBatcher` against asynq's group scheme on the same private
//! redis-server: items/s into shared groups from 1, 2 and 8 clients, round
//! trips per item, and seal lateness / seal-to-commit latency at 10k live
//! groups. Run: `cargo bench --features redis --bench redis`.
//! `SHEAF_REDIS_BENCH_ITEMS` sets the items per client (default 20,000),
//! `SHEAF_CLAIM_LIMIT` the latency run's claim limit (default 32, the
//! builder's), and `SHEAF_LATENCY_ONLY=1` skips the throughput rows.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::Value;
use redis_server::RedisServer;
use sheaf::batch::redis::RedisBatcher;
use sheaf::codec::Utf8;

const GROUPS: usize = 1_000;
const PIPELINE: usize = 100;

/// asynq's scheme (hibiken/asynq 785bb72, peers.md §3): a task hash per
/// item, a sorted set per group scored in seconds, a set of groups; the
/// aggregator runs SMEMBERS and one Lua check per group per tick, which
/// moves a due group's members into an aggregation set.
const ASYNQ_ENQUEUE: &str = r"
redis.call('HSET', KEYS[1], 'msg', ARGV[1], 'state', 'aggregating', 'group', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
return 1";

const ASYNQ_CHECK: &str = r"
local size = redis.call('ZCARD', KEYS[1])
if size == 0 then return 0 end
local maxSize = tonumber(ARGV[1])
local maxDelay = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if (maxSize > 0 and size >= maxSize) or (maxDelay > 0 and now - tonumber(oldest[2]) >= maxDelay)
   or (now - tonumber(newest[2]) >= grace) then
  local ids = redis.call('ZRANGE', KEYS[1], 0, maxSize > 0 and maxSize - 1 or -1)
  for _, id in ipairs(ids) do
    redis.call('ZADD', KEYS[2], tonumber(redis.call('ZSCORE', KEYS[1], id)), id)
    redis.call('ZREM', KEYS[1], id)
  end
  redis.call('ZADD', KEYS[3], now + 120, KEYS[2])
  return 1
end
return 0";

fn con(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Loads asynq's scripts (pipelined EVALSHA does not load them itself).
fn load_asynq(server: &RedisServer) {
    let mut con = con(server);
    for script in [ASYNQ_ENQUEUE, ASYNQ_CHECK] {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(&mut con)
            .unwrap();
    }
}

fn items_per_client() -> usize {
    std::env::var("SHEAF_REDIS_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// The throughput rows' batcher: grace 50 ms, max 100 items.
fn batcher(server: &RedisServer) -> RedisBatcher<String, String> {
    RedisBatcher::<String, String>::builder(server.url())
        .codecs(Utf8, Utf8)
        .aggregate(|_, items: &mut Vec<String>| Ok::<_, String>(items.join(",")))
        .grace(Duration::from_millis(50))
        .max_items(100)
        .idle_poll(Duration::from_millis(20))
        .build()
        .unwrap()
}

/// Shuts the batchers down; (items/s since `start`, round trips per item).
fn finish<B: std::borrow::Borrow<RedisBatcher<String, String>>>(
    batchers: &[B],
    start: Instant,
    items: usize,
) -> (f64, f64) {
    let elapsed = start.elapsed();
    let round_trips: u64 = batchers
        .iter()
        .map(|b| b.borrow().stats().round_trips)
        .sum();
    for b in batchers {
        b.borrow().shutdown(Duration::from_secs(10));
    }
    let total = items as f64;
    (total / elapsed.as_secs_f64(), round_trips as f64 / total)
}

/// (items/s, round trips per item) for sheaf with `clients` batchers
/// (one per client, as separate processes would be), each driving.
fn sheaf_run(clients: usize, pipelined: bool, per_client: usize) -> (f64, f64) {
    let server = RedisServer::start();
    let batchers: Vec<_> = (0..clients).map(|_| batcher(&server)).collect();
    let start = Instant::now();
    thread::scope(|s| {
        for (c, batcher) in batchers.iter().enumerate() {
            s.spawn(move || {
                let items: Vec<(String, String)> = (0..per_client)
                    .map(|i| (format!("g{}", (i * 7 + c) % GROUPS), format!("c{c}-{i}")))
                    .collect();
                if pipelined {
                    for chunk in items.chunks(PIPELINE) {
                        batcher
                            .add_all(chunk.iter().map(|(g, item)| (g.as_str(), item)))
                            .unwrap();
                    }
                } else {
                    for (g, item) in &items {
                        batcher.add(g, item).unwrap();
                    }
                }
            });
        }
    });
    finish(&batchers, start, clients * per_client)
}

/// (items/s, round trips per item) for sheaf's `add_async`: per client one
/// batcher, its items split over `TASKS` tokio tasks that each await one
/// add at a time; redis-rs multiplexes the client's concurrent adds over
/// one connection.
fn sheaf_async_run(clients: usize, per_client: usize) -> (f64, f64) {
    const TASKS: usize = 16;
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let batchers: Vec<_> = (0..clients)
        .map(|_| std::sync::Arc::new(batcher(&server)))
        .collect();
    let start = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for (c, batcher) in batchers.iter().enumerate() {
            for t in 0..TASKS {
                let batcher = std::sync::Arc::clone(batcher);
                tasks.push(tokio::spawn(async move {
                    for i in (t..per_client).step_by(TASKS) {
                        let group = format!("g{}", (i * 7 + c) % GROUPS);
                        let item = format!("c{c}-{i}");
                        batcher.add_async(&group, &item).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    finish(&batchers, start, clients * per_client)
}

/// The same load through asynq's scheme: enqueue per item (pipelined or
/// one round trip each, as asynq's client does), and an aggregator thread
/// per client ticking every grace period (asynq: min(grace, 7 s)).
fn asynq_run(clients: usize, pipelined: bool, per_client: usize) -> (f64, f64) {
    let server = RedisServer::start();
    load_asynq(&server);
    let enqueue = redis::Script::new(ASYNQ_ENQUEUE);
    let check = redis::Script::new(ASYNQ_CHECK);
    let round_trips = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    thread::scope(|s| {
        let mut adders = Vec::new();
        for c in 0..clients {
            let (server, enqueue, round_trips) = (&server, &enqueue, &round_trips);
            adders.push(s.spawn(move || {
                let mut con = con(server);
                let mut pipe = redis::pipe();
                for i in 0..per_client {
                    let g = format!("g{}", (i * 7 + c) % GROUPS);
                    let id = format!("c{c}-{i}");
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let mut inv = enqueue.key(format!("asynq:{{q}}:t:{id}"));
                    inv.key(format!("asynq:{{q}}:g:{g}"))
                        .key("asynq:{q}:groups")
                        .arg(&id)
                        .arg(now)
                        .arg(&g)
                        .arg(&id);
                    if pipelined {
                        pipe.invoke_script(&inv);
                        if pipe.len() == PIPELINE {
                            let _: Value = pipe.query(&mut con).unwrap();
                            round_trips.fetch_add(1, Ordering::Relaxed);
                            pipe = redis::pipe();
                        }
                    } else {
                        let _: Value = inv.invoke(&mut con).unwrap();
                        round_trips.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !pipe.is_empty() {
                    let _: Value = pipe.query(&mut con).unwrap();
                    round_trips.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for _ in 0..clients {
            let (server, check, round_trips, stop) = (&server, &check, &round_trips, &stop);
            s.spawn(move || {
                let mut con = con(server);
                let mut set = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let groups: Vec<String> = redis::cmd("SMEMBERS")
                        .arg("asynq:{q}:groups")
                        .query(&mut con)
                        .unwrap();
                    round_trips.fetch_add(1, Ordering::Relaxed);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    for g in groups {
                        set += 1;
                        let _: Value = check
                            .key(format!("asynq:{{q}}:g:{g}"))
                            .key(format!("asynq:{{q}}:g:{g}:{set}"))
                            .key("asynq:{q}:aggregation_sets")
                            .arg(100)
                            .arg(0)
                            .arg(1) // grace: 1 s, asynq's minimum
                            .arg(now)
                            .invoke(&mut con)
                            .unwrap();
                        round_trips.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            });
        }
        for a in adders {
            a.join().unwrap();
        }
        stop.store(true, Ordering::Release);
    });
    let elapsed = start.elapsed();
    let total = (clients * per_client) as f64;
    (
        total / elapsed.as_secs_f64(),
        round_trips.load(Ordering::Relaxed) as f64 / total,
    )
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// 10k groups open at once (one item each, grace 1 s); the driver seals
/// each at its deadline. Lateness = sealed_ms - due_ms, seal-to-commit =
/// committed_ms - sealed_ms, from the stream entries (server clock).
fn latency_run(live: usize) {
    let server = RedisServer::start();
    let batcher = RedisBatcher::<String, String>::builder(server.url())
        .codecs(Utf8, Utf8)
        .aggregate(|_, items: &mut Vec<String>| Ok::<_, String>(items.join(",")))
        .grace(Duration::from_secs(1))
        .claim_limit(
            std::env::var("SHEAF_CLAIM_LIMIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(32),
        )
        .build()
        .unwrap();
    let items: Vec<(String, String)> = (0..live)
        .map(|i| (format!("l{i}"), format!("x{i}")))
        .collect();
    for chunk in items.chunks(PIPELINE) {
        batcher
            .add_all(chunk.iter().map(|(g, item)| (g.as_str(), item)))
            .unwrap();
    }
    let open = batcher.groups().unwrap().len();
    let key = batcher.stream_keys()[0].clone();
    let mut con = con(&server);
    loop {
        let n: usize = redis::cmd("XLEN").arg(&key).query(&mut con).unwrap();
        if n == live {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let v: Value = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let (mut late, mut commit) = (Vec::new(), Vec::new());
    let Value::Array(entries) = v else { panic!() };
    for e in entries {
        let Value::Array(parts) = e else { panic!() };
        let Value::Array(fields) = &parts[1] else {
            panic!()
        };
        let get = |name: &str| -> u64 {
            let i = fields
                .iter()
                .position(|f| matches!(f, Value::BulkString(b) if b == name.as_bytes()))
                .unwrap();
            match &fields[i + 1] {
                Value::BulkString(b) => std::str::from_utf8(b).unwrap().parse().unwrap(),
                _ => panic!(),
            }
        };
        late.push(get("sealed_ms") - get("due_ms"));
        commit.push(get("committed_ms") - get("sealed_ms"));
    }
    late.sort_unstable();
    commit.sort_unstable();
    let stats = batcher.stats();
    println!(
        "redis_batch/latency live_groups={open} batches={} seal_lateness_ms p50={} p99={} max={} \
         seal_to_commit_ms p50={} p99={} max={} driver_round_trips={}",
        late.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late[late.len() - 1],
        percentile(&commit, 0.5),
        percentile(&commit, 0.99),
        commit[commit.len() - 1],
        stats.round_trips,
    );
    batcher.shutdown(Duration::from_secs(10));

    // asynq: one aggregator tick over the same number of live groups.
    load_asynq(&server);
    let check = redis::Script::new(ASYNQ_CHECK);
    let enqueue = redis::Script::new(ASYNQ_ENQUEUE);
    let mut pipe = redis::pipe();
    for i in 0..live {
        let mut inv = enqueue.key(format!("asynq:{{q}}:t:{i}"));
        inv.key(format!("asynq:{{q}}:g:l{i}"))
            .key("asynq:{q}:groups")
            .arg(i)
            .arg(0)
            .arg(format!("l{i}"))
            .arg(i);
        pipe.invoke_script(&inv);
    }
    let _: Value = pipe.query(&mut con).unwrap();
    let start = Instant::now();
    let groups: Vec<String> = redis::cmd("SMEMBERS")
        .arg("asynq:{q}:groups")
        .query(&mut con)
        .unwrap();
    for g in &groups {
        let _: Value = check
            .key(format!("asynq:{{q}}:g:{g}"))
            .key(format!("asynq:{{q}}:g:{g}:1"))
            .key("asynq:{q}:aggregation_sets")
            .arg(0)
            .arg(0)
            .arg(1)
            .arg(10)
            .invoke(&mut con)
            .unwrap();
    }
    println!(
        "asynq/latency one tick over {} groups: {:.1} ms, {} round trips (asynq seals up to grace + 7 s late, 1 s resolution)",
        groups.len(),
        start.elapsed().as_secs_f64() * 1e3,
        groups.len() + 1
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not:
    // then only check that it runs on a small load.
    let quick = !std::env::args().any(|a| a == "--bench");
    let per_client = if quick { 500 } else { items_per_client() };
    let clients_list: &[usize] = if std::env::var("SHEAF_LATENCY_ONLY").is_ok() {
        &[]
    } else {
        &[1, 2, 8]
    };
    for &clients in clients_list {
        let (s_pipe, s_pipe_rt) = sheaf_run(clients, true, per_client);
        let (s_one, s_one_rt) = sheaf_run(clients, false, per_client);
        let (s_async, s_async_rt) = sheaf_async_run(clients, per_client);
        let (a_one, a_one_rt) = asynq_run(clients, false, per_client);
        let (a_pipe, a_pipe_rt) = asynq_run(clients, true, per_client);
        println!(
            "redis_batch/add clients={clients} groups={GROUPS} items/client={per_client}\n  \
             sheaf add_all(pipeline {PIPELINE}): {s_pipe:>10.0} items/s  {s_pipe_rt:.3} round trips/item\n  \
             sheaf add (one per call):          {s_one:>10.0} items/s  {s_one_rt:.3} round trips/item\n  \
             sheaf add_async (16 tasks/client): {s_async:>10.0} items/s  {s_async_rt:.3} round trips/item\n  \
             asynq (one per enqueue, as asynq): {a_one:>10.0} items/s  {a_one_rt:.3} round trips/item\n  \
             asynq (pipelined {PIPELINE}):            {a_pipe:>10.0} items/s  {a_pipe_rt:.3} round trips/item\n  \
             ratio sheaf add_all / asynq as asynq: {:.2}x; / asynq pipelined: {:.2}x; sheaf add / asynq as asynq: {:.2}x; sheaf add_async / asynq as asynq: {:.2}x",
            s_pipe / a_one,
            s_pipe / a_pipe,
            s_one / a_one,
            s_async / a_one
        );
    }
    latency_run(if quick { 1_000 } else { 10_000 });
}
