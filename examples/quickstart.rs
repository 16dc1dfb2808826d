//! sheaf's main job end to end: producer threads add counters under
//! realistic metric keys, the aggregator merges them per core and flushes
//! them periodically into its bounded output, a consumer reads the output,
//! and at the end the delivered totals are checked against what was added,
//! exactly.
//!
//! Run it with `cargo run --release --example quickstart` (add `-- SECONDS`
//! to run longer than the default 2 seconds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sheaf::merge::Sum;
use sheaf::topology::Topology;
use sheaf::Aggregator;

/// Metric names a web service would count: route × method × status.
fn metric_keys() -> Vec<String> {
    let routes = [
        "/api/v1/users",
        "/api/v1/orders",
        "/api/v1/cart",
        "/health",
        "/login",
        "/search",
        "/static/app.js",
        "/api/v1/payments",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let statuses = [200, 201, 204, 301, 400, 401, 404, 429, 500, 503];
    let mut keys = Vec::new();
    for route in routes {
        for method in methods {
            for status in statuses {
                keys.push(format!(
                    "http.requests{{route={route},method={method},status={status}}}"
                ));
            }
        }
    }
    keys
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let topology = Topology::detect();
    println!("topology: {topology}");

    let aggregator = Aggregator::<String, u64>::builder()
        .merge_with(Sum)
        .flush_every(Duration::from_millis(50))
        .output_capacity(4096)
        .pin(true)
        .build()
        .expect("a valid configuration");
    println!(
        "aggregator: {} per-core partial table(s), flushing every 50 ms into an output of 4096",
        aggregator.partial_tables()
    );

    // The consumer: sums what the output delivers, per key.
    let output = aggregator.receiver();
    let consumer = thread::spawn(move || {
        let mut totals: HashMap<String, u64> = HashMap::new();
        let mut batch = Vec::new();
        while output.recv_batch(&mut batch, 256).is_ok() {
            for (key, count) in batch.drain(..) {
                *totals.entry(key).or_default() += count;
            }
        }
        totals
    });

    // Producers: one per CPU, each with its own skew over the keys.
    let keys = Arc::new(metric_keys());
    let stop = Arc::new(AtomicBool::new(false));
    let added = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..topology.cpus().len().max(2))
        .map(|p| {
            let (aggregator, keys, stop, added) = (
                aggregator.clone(),
                Arc::clone(&keys),
                Arc::clone(&stop),
                Arc::clone(&added),
            );
            thread::spawn(move || {
                let mut expected: HashMap<String, u64> = HashMap::new();
                let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ p as u64;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        // xorshift; squaring the draw skews traffic to a few hot keys.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let r = (state >> 11) as f64 / (1u64 << 53) as f64;
                        let key = &keys[((r * r) * keys.len() as f64) as usize];
                        let count = 1 + (state & 3);
                        aggregator
                            .add(key.clone(), count)
                            .expect("open and uncapped");
                        *expected.entry(key.clone()).or_default() += count;
                        n += 1;
                    }
                    added.fetch_add(1024, Ordering::Relaxed);
                }
                (n, expected)
            })
        })
        .collect();

    let start = Instant::now();
    let mut last_added = 0;
    while start.elapsed().as_secs_f64() < seconds {
        thread::sleep(Duration::from_millis(250));
        let s = aggregator.stats();
        let now_added = added.load(Ordering::Relaxed);
        println!(
            "  {:>5.2}s  {:>7.1} M adds/s  entries {:>4}  flushed {:>7}  flushes {:>4}  queued {:>5}",
            start.elapsed().as_secs_f64(),
            (now_added - last_added) as f64 / 0.25 / 1e6,
            s.entries,
            s.flushed,
            s.flushes,
            s.queued,
        );
        last_added = now_added;
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut adds = 0u64;
    for producer in producers {
        let (n, partial) = producer.join().expect("producer");
        adds += n;
        for (k, v) in partial {
            *expected.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();

    let report = aggregator.shutdown(Duration::from_secs(10));
    let stats = aggregator.stats();
    let delivered = consumer.join().expect("consumer");

    println!();
    println!(
        "adds:       {adds} in {:.2}s = {:.1} M adds/s",
        elapsed.as_secs_f64(),
        adds as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "flushes:    {} ({} periodic ticks run, {} skipped), last {:?}, longest {:?}",
        stats.flushes, stats.ticks_run, stats.ticks_skipped, stats.last_flush, stats.longest_flush
    );
    println!(
        "output:     {} entries delivered, {} retained while full, {} dropped, {} undelivered at shutdown",
        report.delivered,
        stats.retained,
        report.dropped,
        report.undelivered.len()
    );
    let expected_total: u64 = expected.values().sum();
    let delivered_total: u64 = delivered.values().sum();
    println!(
        "totals:     added {expected_total}, delivered {delivered_total} over {} keys",
        delivered.len()
    );
    if delivered == expected && report.undelivered.is_empty() {
        println!("check:      OK — every key's delivered total equals what was added, exactly");
    } else {
        let wrong = expected
            .iter()
            .filter(|(k, v)| delivered.get(*k) != Some(v))
            .count();
        println!("check:      MISMATCH on {wrong} keys");
        std::process::exit(1);
    }
}
