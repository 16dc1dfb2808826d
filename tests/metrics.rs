//! Every component's exported series equal its own stats, through a
//! Prometheus recorder, rendered in-process and scraped over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use sheaf::batch::GroupBatcher;
use sheaf::channel::{self, Overflow};
use sheaf::clock::{Clock, ManualClock};
use sheaf::limit::{
    CachedRateLimiter, ConcurrencyLimiter, KeyedLimiter, LeakyBucket, Quota, RateLimiter,
};
use sheaf::merge::Sum;
use sheaf::metrics::{Emitter, Sampler, Source};
use sheaf::pool::WorkerPool;
use sheaf::schedule::Scheduler;
use sheaf::{Aggregator, SerialWriter};

/// `series{labels}` → value, from Prometheus text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Checks series one by one and, at the end, that none was left unchecked.
struct Check {
    series: BTreeMap<String, f64>,
    seen: BTreeSet<String>,
}

impl Check {
    fn new(text: &str) -> Self {
        Self {
            series: parse(text),
            seen: BTreeSet::new(),
        }
    }

    fn eq(&mut self, name: &str, instance: &str, want: f64) {
        let key = format!("{name}{{name=\"{instance}\"}}");
        let got = self.series.get(&key).copied();
        assert_eq!(got, Some(want), "{key}");
        self.seen.insert(key);
    }

    fn count(&mut self, component: &str, instance: &str, name: &str, want: u64) {
        self.eq(
            &format!("sheaf_{component}_{name}_total"),
            instance,
            want as f64,
        );
    }

    fn gauge(&mut self, component: &str, instance: &str, name: &str, want: f64) {
        self.eq(&format!("sheaf_{component}_{name}"), instance, want);
    }

    fn all_seen(&self) {
        let unchecked: Vec<_> = self
            .series
            .keys()
            .filter(|k| k.starts_with("sheaf_") && !self.seen.contains(*k))
            .collect();
        assert!(unchecked.is_empty(), "unchecked series: {unchecked:?}");
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An aggregator and a writer after a load that has stopped.
struct Loaded {
    aggregator: Arc<Aggregator<u32, u64>>,
    writer: Arc<SerialWriter>,
}

fn load_aggregator_and_writer() -> Loaded {
    let aggregator = Arc::new(
        Aggregator::<u32, u64>::builder()
            .merge_with(Sum)
            .output_capacity(4)
            .build()
            .unwrap(),
    );
    let writer = Arc::new(SerialWriter::builder(io::sink()).build().unwrap());
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let aggregator = Arc::clone(&aggregator);
            let handle = writer.handle();
            std::thread::spawn(move || {
                for i in 0..1_000u32 {
                    aggregator.add((i + t) % 10, 1).unwrap();
                    handle.write_record(&i.to_le_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    aggregator.flush();
    // Four fit the output; the rest stay (the default policy retains them).
    for _ in 0..2 {
        aggregator.receiver().recv().unwrap();
    }
    writer.flush().unwrap();
    Loaded { aggregator, writer }
}

fn check_aggregator(check: &mut Check, agg: &Aggregator<u32, u64>, instance: &str) {
    let s = agg.stats();
    assert_eq!(s.added, 2_000);
    let c = "aggregator";
    check.count(c, instance, "added", s.added);
    check.count(c, instance, "inserted", s.inserted);
    check.count(c, instance, "merged", s.merged);
    check.count(c, instance, "flushed", s.flushed);
    check.count(c, instance, "retained", s.retained);
    check.count(c, instance, "refused_full", s.refused_full);
    check.count(c, instance, "refused_closed", s.refused_closed);
    check.count(c, instance, "dropped_newest", s.dropped_newest);
    check.count(c, instance, "dropped_oldest", s.dropped_oldest);
    check.count(c, instance, "dropped_merge_panic", s.dropped_merge_panic);
    check.count(c, instance, "merge_panics", s.merge_panics);
    check.count(c, instance, "lost_at_drop", s.lost_at_drop);
    check.count(c, instance, "flushes", s.flushes);
    check.count(c, instance, "ticks_run", s.ticks_run);
    check.count(c, instance, "ticks_skipped", s.ticks_skipped);
    check.gauge(c, instance, "last_flush_seconds", secs(s.last_flush));
    check.gauge(c, instance, "longest_flush_seconds", secs(s.longest_flush));
    check.gauge(c, instance, "entries", s.entries as f64);
    check.gauge(c, instance, "queued", s.queued as f64);
}

fn check_writer(check: &mut Check, writer: &SerialWriter, instance: &str) {
    let s = writer.stats();
    assert_eq!((s.accepted, s.written, s.queued), (2_000, 2_000, 0));
    let c = "writer";
    check.count(c, instance, "accepted", s.accepted);
    check.count(c, instance, "accepted_bytes", s.accepted_bytes);
    check.count(c, instance, "written", s.written);
    check.count(c, instance, "written_bytes", s.written_bytes);
    check.count(c, instance, "failed", s.failed);
    check.count(c, instance, "failed_bytes", s.failed_bytes);
    check.count(c, instance, "sink_calls", s.sink_calls);
    check.count(c, instance, "sink_errors", s.sink_errors);
    check.count(c, instance, "sink_panics", s.sink_panics);
    check.count(c, instance, "sink_flushes", s.sink_flushes);
    check.count(c, instance, "flush_errors", s.flush_errors);
    check.count(c, instance, "dropped_newest", s.dropped_newest);
    check.count(c, instance, "dropped_oldest", s.dropped_oldest);
    check.count(c, instance, "dropped_oldest_bytes", s.dropped_oldest_bytes);
    check.count(c, instance, "rejected", s.rejected);
    check.count(c, instance, "timed_out", s.timed_out);
    check.count(c, instance, "too_large", s.too_large);
    check.count(c, instance, "refused_closed", s.refused_closed);
    check.count(c, instance, "unwritten", s.unwritten);
    check.count(c, instance, "sync_runs", s.sync_runs);
    check.count(c, instance, "sync_errors", s.sync_errors);
    check.count(c, instance, "async_runs", s.async_runs);
    check.count(c, instance, "async_skipped", s.async_skipped);
    check.count(c, instance, "async_panics", s.async_panics);
    check.count(c, instance, "errors", s.errors);
    check.count(c, instance, "spilled", s.spilled);
    check.count(c, instance, "spilled_bytes", s.spilled_bytes);
    check.count(c, instance, "recovered", s.recovered);
    check.count(c, instance, "spill_lost", s.spill_lost);
    check.count(c, instance, "spill_failed", s.spill_failed);
    check.gauge(c, instance, "on_disk", s.on_disk as f64);
    check.gauge(c, instance, "on_disk_bytes", s.on_disk_bytes as f64);
    check.gauge(c, instance, "queued", s.queued as f64);
    check.gauge(c, instance, "queued_bytes", s.queued_bytes as f64);
    check.gauge(c, instance, "waiting", s.waiting as f64);
    check.gauge(c, instance, "waiting_bytes", s.waiting_bytes as f64);
    check.gauge(c, instance, "async_running", s.async_running as f64);
}

fn sample_into(recorder: &PrometheusRecorder, sampler: &Sampler) -> usize {
    metrics::with_local_recorder(recorder, || sampler.sample())
}

#[test]
fn every_component_exports_its_stats() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let sampler = Sampler::new();
    let clock = ManualClock::new();

    let Loaded { aggregator, writer } = load_aggregator_and_writer();
    sampler.register(&aggregator, "agg").unwrap();
    sampler.register(&writer, "log").unwrap();

    // A channel that dropped two sends and delivered one.
    let (tx, rx) = channel::builder()
        .capacity(4)
        .overflow(Overflow::DropNewest)
        .build::<u32>()
        .unwrap();
    for i in 0..6 {
        let _ = tx.send(i);
    }
    rx.recv().unwrap();
    let tx = Arc::new(tx);
    sampler.register(&tx, "chan").unwrap();

    // A batcher with sealed, emitted and failed groups.
    let batcher = Arc::new(
        GroupBatcher::<u32, u32, u32>::builder()
            .clock(clock.clone())
            .max_items(2)
            .aggregate(|k: &u32, items: &mut Vec<u32>| match k % 2 {
                0 => Ok(Some(items.iter().sum())),
                _ => Err(format!("group {k} refused")),
            })
            .build()
            .unwrap(),
    );
    for i in 0..9u32 {
        batcher.add(i % 3, i).unwrap();
    }
    batcher.settle();
    sampler.register(&batcher, "batches").unwrap();

    // The limiters, on the manual clock.
    let quota = Quota::per_second(10).unwrap().with_burst(5).unwrap();
    let rate = Arc::new(RateLimiter::with_clock(quota, clock.clone()));
    for _ in 0..3 {
        rate.check().unwrap();
    }
    let cached = Arc::new(CachedRateLimiter::with_clock(quota, 2, clock.clone()).unwrap());
    cached.check().unwrap();
    let keyed = Arc::new(
        KeyedLimiter::<u32, _>::builder(quota)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    for k in 0..4 {
        keyed.check(&k).unwrap();
    }
    let leaky = Arc::new(
        LeakyBucket::builder()
            .interval(Duration::from_millis(10))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    leaky.try_acquire().unwrap();
    let concurrency = Arc::new(ConcurrencyLimiter::with_clock(3, clock.clone()).unwrap());
    let permit = concurrency.try_acquire_many(2).unwrap();
    sampler.register(&rate, "api").unwrap();
    sampler.register(&cached, "api").unwrap();
    sampler.register(&keyed, "users").unwrap();
    sampler.register(&leaky, "pace").unwrap();
    sampler.register(&concurrency, "db").unwrap();

    // A pool that ran tasks, one panicking; shut down so `busy` is exact.
    let pool = Arc::new(WorkerPool::builder().workers(2).build().unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            pool.submit(move || {
                assert!(i != 3, "task 3 fails");
                i
            })
            .unwrap()
        })
        .collect();
    for task in tasks {
        let _ = task.join();
    }
    pool.shutdown(Duration::MAX, sheaf::pool::ShutdownMode::Drain);
    sampler.register(&pool, "workers").unwrap();

    // A scheduler on the manual clock that ran one job and holds another.
    let scheduler = Arc::new(
        Scheduler::builder()
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    scheduler.after(Duration::from_millis(5), || {}).unwrap();
    scheduler.after(Duration::from_secs(60), || {}).unwrap();
    clock.advance(Duration::from_millis(5));
    scheduler.settle();
    sampler.register(&scheduler, "jobs").unwrap();

    assert_eq!(sample_into(&recorder, &sampler), 11);
    let mut check = Check::new(&recorder.handle().render());

    check_aggregator(&mut check, &aggregator, "agg");
    check_writer(&mut check, &writer, "log");

    let s = tx.stats();
    assert_eq!((s.sent, s.received, s.dropped_newest), (4, 1, 2));
    let c = "channel";
    check.count(c, "chan", "sent", s.sent);
    check.count(c, "chan", "received", s.received);
    check.count(c, "chan", "dropped_newest", s.dropped_newest);
    check.count(c, "chan", "dropped_oldest", s.dropped_oldest);
    check.count(c, "chan", "rejected", s.rejected);
    check.count(c, "chan", "timed_out", s.timed_out);
    check.count(c, "chan", "spilled", s.spilled);
    check.count(c, "chan", "unspilled", s.unspilled);
    check.count(c, "chan", "spill_lost", s.spill_lost);
    check.gauge(c, "chan", "queued", s.len as f64);
    check.gauge(c, "chan", "on_disk", s.on_disk as f64);
    check.gauge(c, "chan", "capacity", s.capacity as f64);
    check.gauge(c, "chan", "waiting_senders", s.waiting_senders as f64);
    check.gauge(c, "chan", "waiting_receivers", s.waiting_receivers as f64);

    let s = batcher.stats();
    assert_eq!((s.added, s.sealed.max_items), (9, 3));
    let (c, i) = ("batcher", "batches");
    check.count(c, i, "added", s.added);
    check.count(c, i, "sealed_grace", s.sealed.grace);
    check.count(c, i, "sealed_max_delay", s.sealed.max_delay);
    check.count(c, i, "sealed_max_items", s.sealed.max_items);
    check.count(c, i, "sealed_max_bytes", s.sealed.max_bytes);
    check.count(c, i, "sealed_manual", s.sealed.manual);
    check.count(c, i, "sealed_shutdown", s.sealed.shutdown);
    check.count(c, i, "emitted", s.emitted);
    check.count(c, i, "empty", s.empty);
    check.count(c, i, "failures", s.failures);
    check.count(c, i, "panics", s.panics);
    check.count(c, i, "dead_letters", s.dead_letters);
    check.count(c, i, "dead_letters_dropped", s.dead_letters_dropped);
    check.count(c, i, "refused_closed", s.refused_closed);
    check.count(c, i, "refused_full", s.refused_full);
    check.count(c, i, "dropped_newest", s.dropped_newest);
    check.count(c, i, "dropped_oldest", s.dropped_oldest);
    check.count(c, i, "rejected", s.rejected);
    check.count(c, i, "timed_out", s.timed_out);
    check.count(c, i, "spilled", s.spilled);
    check.count(c, i, "unspilled", s.unspilled);
    check.count(c, i, "spill_lost", s.spill_lost);
    check.count(c, i, "spill_failed", s.spill_failed);
    check.count(c, i, "late", s.late_count);
    check.gauge(c, i, "late_sum_seconds", secs(s.late_sum));
    check.gauge(c, i, "late_max_seconds", secs(s.late_max));
    check.gauge(c, i, "groups_open", s.groups_open as f64);
    check.gauge(c, i, "queued", s.queued as f64);
    check.gauge(c, i, "on_disk", s.on_disk as f64);

    assert_eq!(rate.available(), 2);
    check.gauge("rate_limiter", "api", "available", rate.available() as f64);
    check.gauge("rate_limiter", "api", "burst", 5.0);
    check.gauge("rate_limiter", "api", "interval_seconds", 0.1);
    check.gauge("cached_limiter", "api", "cached", cached.cached() as f64);
    check.gauge(
        "cached_limiter",
        "api",
        "over_admission_bound",
        cached.over_admission_bound() as f64,
    );
    check.gauge("cached_limiter", "api", "burst", 5.0);
    check.gauge("cached_limiter", "api", "interval_seconds", 0.1);
    let s = keyed.stats();
    assert_eq!((s.keys, s.created), (4, 4));
    check.count("keyed_limiter", "users", "created", s.created);
    check.count("keyed_limiter", "users", "expired", s.expired);
    check.count("keyed_limiter", "users", "evicted", s.evicted);
    check.count("keyed_limiter", "users", "refused", s.refused);
    check.count("keyed_limiter", "users", "quota_panics", s.quota_panics);
    check.gauge("keyed_limiter", "users", "keys", s.keys as f64);
    check.gauge("leaky_bucket", "pace", "waiting", leaky.waiting() as f64);
    check.gauge("leaky_bucket", "pace", "interval_seconds", 0.01);
    assert_eq!((concurrency.available(), concurrency.in_use()), (1, 2));
    check.gauge("concurrency_limiter", "db", "available", 1.0);
    check.gauge("concurrency_limiter", "db", "in_use", 2.0);
    check.gauge("concurrency_limiter", "db", "capacity", 3.0);
    check.gauge("concurrency_limiter", "db", "waiting", 0.0);
    drop(permit);

    let s = pool.stats();
    assert_eq!((s.completed, s.panicked), (9, 1));
    let (c, i) = ("pool", "workers");
    check.count(c, i, "completed", s.completed);
    check.count(c, i, "panicked", s.panicked);
    check.count(c, i, "timed_out", s.timed_out);
    check.count(c, i, "cancelled", s.cancelled);
    check.count(c, i, "rejected", s.rejected);
    check.count(c, i, "dropped", s.dropped);
    check.count(c, i, "not_run", s.not_run);
    check.gauge(c, i, "queued", s.queued as f64);
    check.gauge(c, i, "running", s.running as f64);
    check.gauge(c, i, "workers", s.busy.len() as f64);
    check.gauge(c, i, "busy_seconds", secs(s.busy.iter().sum()));

    let s = scheduler.stats();
    assert_eq!((s.runs, scheduler.len()), (1, 1));
    let (c, i) = ("scheduler", "jobs");
    check.count(c, i, "runs", s.runs);
    check.count(c, i, "failed", s.failed);
    check.count(c, i, "panicked", s.panicked);
    check.count(c, i, "retried", s.retried);
    check.count(c, i, "gave_up", s.gave_up);
    check.count(c, i, "skipped_window", s.skipped_window);
    check.count(c, i, "missed", s.missed);
    check.count(c, i, "rejected", s.rejected);
    check.gauge(c, i, "jobs", 1.0);

    check.all_seen();
}

#[test]
fn names_follow_the_convention_and_have_help() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let sampler = Sampler::new();
    let Loaded { aggregator, writer } = load_aggregator_and_writer();
    sampler.register(&aggregator, "agg").unwrap();
    sampler.register(&writer, "log").unwrap();
    sample_into(&recorder, &sampler);
    let text = recorder.handle().render();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
        }
    }
    assert_eq!(types.len(), 19 + 30);
    for (name, kind) in &types {
        assert!(name.starts_with("sheaf_aggregator_") || name.starts_with("sheaf_writer_"));
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
}

#[test]
fn registration_checks_labels_and_forgets_dropped_sources() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let sampler = Sampler::new();
    let (tx, rx) = channel::bounded::<u8>(2);
    let tx = Arc::new(tx);
    let rx = Arc::new(rx);
    let err = sampler
        .register_labeled(&tx, vec![metrics::Label::new("shard", "1")])
        .unwrap_err();
    assert_eq!(err.setting(), "labels");
    sampler.register(&tx, "q").unwrap();
    // The same component with the same labels would overwrite the series.
    assert_eq!(sampler.register(&rx, "q").unwrap_err().setting(), "labels");
    sampler
        .register_labeled(&rx, [("name", "q"), ("side", "rx")].as_slice())
        .unwrap();
    assert_eq!(sampler.len(), 2);
    assert_eq!(sample_into(&recorder, &sampler), 2);
    drop(tx);
    assert_eq!(sampler.len(), 1);
    assert_eq!(sample_into(&recorder, &sampler), 1);
    // The name is free again once its source is gone.
    let tx2 = Arc::new(rx.as_ref().clone());
    sampler.register(&tx2, "q").unwrap();
    let text = recorder.handle().render();
    assert!(text.contains("sheaf_channel_sent_total{name=\"q\",side=\"rx\"} 0"));
}

/// A source defined outside sheaf joins with one trait impl.
struct Hits(u64);

impl Source for Hits {
    fn component(&self) -> &'static str {
        "cache"
    }

    fn sample(&self, out: &mut Emitter<'_>) {
        out.counter("hits", "Lookups that found the key.", self.0);
        out.gauge("size_bytes", "Bytes held.", 1.5);
    }
}

#[test]
fn a_foreign_source_joins_with_one_impl() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let sampler = Sampler::new();
    let hits = Arc::new(Hits(42));
    sampler.register(&hits, "c").unwrap();
    sample_into(&recorder, &sampler);
    let series = parse(&recorder.handle().render());
    assert_eq!(
        series.get("sheaf_cache_hits_total{name=\"c\"}"),
        Some(&42.0)
    );
    assert_eq!(series.get("sheaf_cache_size_bytes{name=\"c\"}"), Some(&1.5));
}

#[test]
fn the_background_thread_samples_on_its_clock_and_once_more_at_stop() {
    let sampler = Sampler::new();
    let hits = Arc::new(Hits(1));
    sampler.register(&hits, "c").unwrap();
    let clock = ManualClock::new();
    assert_eq!(
        sampler
            .spawn(Duration::ZERO, clock.clone())
            .unwrap_err()
            .setting(),
        "interval"
    );
    let thread = sampler
        .spawn(Duration::from_secs(1), clock.clone())
        .unwrap();
    for round in 1..=3 {
        clock.advance(Duration::from_secs(1));
        while sampler.samples() < round {
            std::thread::yield_now();
        }
    }
    // Nothing more is due until the clock moves.
    assert_eq!(sampler.samples(), 3);
    thread.stop();
    assert_eq!(sampler.samples(), 4);
    let _ = clock.now();
}

/// A port the kernel just handed out (then released for the exporter).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Undoes chunked transfer encoding if the server used it.
fn dechunk(head_and_body: &str) -> String {
    let mut out = String::new();
    let mut rest = head_and_body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return head_and_body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return head_and_body.to_owned();
        };
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[test]
fn a_scrape_over_http_equals_the_stats() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Another process may take the port between the probe and the bind.
    let (recorder, addr) = (0..20)
        .find_map(|_| {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let _guard = runtime.enter();
            let (recorder, exporter) = PrometheusBuilder::new()
                .with_http_listener(addr)
                .build()
                .ok()?;
            runtime.spawn(exporter);
            Some((recorder, addr))
        })
        .expect("a free port");
    let server = std::thread::spawn(move || {
        runtime.block_on(std::future::pending::<()>());
    });
    drop(server); // detached: the test process ends it

    let Loaded { aggregator, writer } = load_aggregator_and_writer();
    let sampler = Sampler::new();
    sampler.register(&aggregator, "agg").unwrap();
    sampler.register(&writer, "log").unwrap();
    sample_into(&recorder, &sampler);

    let body = dechunk(&http_get(addr, "/metrics"));
    let mut check = Check::new(&body);
    check_aggregator(&mut check, &aggregator, "agg");
    check_writer(&mut check, &writer, "log");
    check.all_seen();
}
