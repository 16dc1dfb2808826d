//! Many producers, one sink: `sheaf::writer::SerialWriter` against its peers.
//!
//! Implementations (criterion function ids):
//! - `sheaf`: `SerialWriter::builder(sink)` with its defaults (Block,
//!   65,536 records / 16 MiB, coalescing into 64 KiB sink calls); one
//!   `WriterHandle` per producer.
//! - `tracing-appender`: `NonBlockingBuilder::default().lossy(false)
//!   .finish(sink)`; one `NonBlocking` clone per producer; its worker writes
//!   each record with its own `write_all`.
//! - `crossbeam-bufwriter`: `crossbeam_channel::bounded::<Vec<u8>>(65_536)`
//!   feeding one thread that writes into a `BufWriter` (8 KiB) over the sink.
//! - `mutex-bufwriter`: `std::sync::Mutex<BufWriter<sink>>` shared by the
//!   producers, each `write_all` under the lock.
//!
//! Every producer writes its records with `write_all` (one record per
//! call). Each implementation is built once per benchmark (untimed) over a
//! counting sink and lives across the iterations, as it would in a service.
//! One iteration spawns the producers, releases them together (a barrier)
//! and is timed from the release until every record has reached the sink:
//! `flush()` for sheaf (which returns once the records written before it
//! reached the sink and the sink was flushed) and for the mutex; for
//! tracing-appender and the crossbeam consumer, which have no synchronous
//! flush, until the counting sink has received every byte of the iteration
//! (both flush their `BufWriter`/sink whenever their channel runs dry).
//! Every iteration then checks, untimed, that the sink received exactly
//! `records × size` more bytes (and, for sheaf, that nothing was dropped or
//! failed), so no implementation can win by losing data.
//!
//! Groups (`writer/<workload>`, parameter = producer threads):
//! - `writer/throughput-64B`, `writer/throughput-512B`: 400,000 records of
//!   64 or 512 bytes per iteration, split over 2 or 8 producers, into
//!   `File::create("/dev/null")`; `writer/throughput-64B-file` writes to an
//!   unlinked temporary file on disk instead.
//! - `writer/slow-sink-latency`: 2 and 8 producers (8 oversubscribe a 2-core
//!   machine) × 200,000 records of 64 bytes
//!   into a sink that sleeps 1 ms on every 1,000th `write` call it receives
//!   (an fsync, say; the count runs on across iterations). An implementation that batches records into fewer,
//!   larger sink calls meets fewer stalls, as it would with a real disk.
//!   Each producer times each `write_all` (`Instant` before and after); the
//!   latencies of every iteration go into a histogram (about 1 % resolution)
//!   and the group prints, per implementation,
//!   `LATENCY writer/slow-sink/<impl>/<producers> p50=..ns p99=..ns p999=..ns max=..ns n=..`.
//!   Criterion's time is the whole iteration. sheaf runs with the Block
//!   policy and its default capacity, which holds far more than the producers
//!   write during one stall; the run asserts that nothing was dropped.
//!
//! Run: `cargo bench --bench writer`, or with short settings:
//!
//! ```text
//! cargo bench --bench writer -- --warm-up-time 1 --measurement-time 2 --sample-size 10
//! ```
//!
//! The default configuration (10 samples, 1 s warm-up, 3 s measurement) is
//! set in `criterion_group!`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use sheaf::writer::SerialWriter;

/// Records per iteration of the throughput groups.
const THROUGHPUT_RECORDS: usize = 400_000;
/// Records per producer of the slow-sink group.
const LATENCY_RECORDS_PER_PRODUCER: usize = 200_000;
/// The slow sink sleeps on every this many-th write call.
const STALL_EVERY_CALLS: u64 = 1_000;
const STALL: Duration = Duration::from_millis(1);
const CLOSE_DEADLINE: Duration = Duration::from_secs(120);

const IMPLS: [&str; 4] = [
    "sheaf",
    "tracing-appender",
    "crossbeam-bufwriter",
    "mutex-bufwriter",
];

/// A record of `size` bytes ending in a newline.
fn make_record(size: usize) -> &'static [u8] {
    let mut r: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    r[size - 1] = b'\n';
    Box::leak(r.into_boxed_slice())
}

/// How many bytes reached the sink, and a way to wait for a count.
#[derive(Default)]
struct Progress {
    bytes: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    reached: Condvar,
}

impl Progress {
    /// Sets the count [`wait_for`](Self::wait_for) will wait for. Called
    /// before the producers start, so the sink signals once, on the write
    /// that crosses it, whatever the implementation's write size (a stale
    /// target would make every write of a per-record writer lock and
    /// signal: a system call per record that only the peers would pay).
    fn expect(&self, target: u64) {
        self.target.store(target, Ordering::SeqCst);
    }

    /// Waits until `target` bytes in all (set by `expect`) have reached the sink.
    fn wait_for(&self, target: u64) {
        debug_assert_eq!(self.target.load(Ordering::SeqCst), target);
        let mut guard = self.lock.lock().unwrap();
        while self.bytes.load(Ordering::SeqCst) < target {
            guard = self.reached.wait(guard).unwrap();
        }
    }
}

/// Counts the bytes that reach the inner sink.
struct Counting<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S: Write> Write for Counting<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let p = &*self.progress;
        let total = p.bytes.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let target = p.target.load(Ordering::SeqCst);
        if total - (n as u64) < target && total >= target {
            drop(p.lock.lock().unwrap());
            p.reached.notify_all();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sleeps `STALL` on every `STALL_EVERY_CALLS`-th write call; the count
/// goes on across iterations, so the stalls keep their rate however few
/// calls one iteration makes.
struct SlowSink {
    calls: Arc<AtomicU64>,
}

impl Write for SlowSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.calls.fetch_add(1, Ordering::Relaxed) + 1) % STALL_EVERY_CALLS == 0 {
            thread::sleep(STALL);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Log-linear latency histogram: exact below 256 ns, then 128 sub-buckets
/// per power of two.
struct Hist {
    counts: Vec<u64>,
    max: u64,
    n: u64,
}

impl Hist {
    fn new() -> Self {
        Self {
            counts: vec![0; 256 + 56 * 128],
            max: 0,
            n: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < 256 {
            return v as usize;
        }
        let log = 63 - v.leading_zeros() as usize; // >= 8
        let shift = log - 7;
        256 + (log - 8) * 128 + ((v >> shift) as usize & 127)
    }

    fn lower_bound(b: usize) -> u64 {
        if b < 256 {
            return b as u64;
        }
        let log = (b - 256) / 128 + 8;
        let sub = ((b - 256) % 128) as u64;
        (128 + sub) << (log - 7)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::bucket(v)] += 1;
        self.max = self.max.max(v);
        self.n += 1;
    }

    fn percentile(&self, p: f64) -> u64 {
        let rank = ((self.n as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::lower_bound(b);
            }
        }
        self.max
    }
}

/// Runs `per` `write_all(record)` calls on one thread per writer, all
/// released together; returns the release instant (and the latencies when
/// asked) once every producer is done. The writers are dropped on their threads.
fn produce<W: Write + Send + 'static>(
    writers: Vec<W>,
    per: usize,
    record: &'static [u8],
    latencies: Option<&Mutex<Hist>>,
) -> Instant {
    let barrier = Arc::new(Barrier::new(writers.len() + 1));
    let timed = latencies.is_some();
    let joins: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut lat = if timed {
                    Vec::with_capacity(per)
                } else {
                    Vec::new()
                };
                barrier.wait();
                if timed {
                    for _ in 0..per {
                        let t = Instant::now();
                        w.write_all(record).unwrap();
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                } else {
                    for _ in 0..per {
                        w.write_all(record).unwrap();
                    }
                }
                drop(w);
                lat
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for j in joins {
        let lat = j.join().unwrap();
        if let Some(hist) = latencies {
            let mut hist = hist.lock().unwrap();
            for v in lat {
                hist.record(v);
            }
        }
    }
    start
}

struct MutexWriter<S: Write>(Arc<Mutex<BufWriter<S>>>);

impl<S: Write> Write for MutexWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.lock().unwrap().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap().flush()
    }
}

struct ChannelWriter(crossbeam_channel::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The mutex peer: one `BufWriter` behind a lock.
type SharedBufWriter = Arc<Mutex<BufWriter<Counting<Box<dyn Write + Send>>>>>;

/// A long-lived instance of one implementation over a counting sink.
enum Instance {
    Sheaf(SerialWriter),
    TracingAppender(
        tracing_appender::non_blocking::NonBlocking,
        tracing_appender::non_blocking::WorkerGuard,
    ),
    Crossbeam(
        Option<crossbeam_channel::Sender<Vec<u8>>>,
        Option<thread::JoinHandle<()>>,
    ),
    Mutex(SharedBufWriter),
}

impl Instance {
    fn new<S: Write + Send + 'static>(imp: &str, sink: S, progress: &Arc<Progress>) -> Self {
        let sink = Counting {
            inner: sink,
            progress: Arc::clone(progress),
        };
        match imp {
            "sheaf" => Self::Sheaf(SerialWriter::builder(sink).build().unwrap()),
            "tracing-appender" => {
                let (nb, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                    .lossy(false)
                    .finish(sink);
                Self::TracingAppender(nb, guard)
            }
            "crossbeam-bufwriter" => {
                let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(65_536);
                let consumer = thread::spawn(move || {
                    let mut out = BufWriter::new(sink);
                    while let Ok(record) = rx.recv() {
                        out.write_all(&record).unwrap();
                        // What tracing-appender's worker does too: flush
                        // once the channel runs dry.
                        if rx.is_empty() {
                            out.flush().unwrap();
                        }
                    }
                    out.flush().unwrap();
                });
                Self::Crossbeam(Some(tx), Some(consumer))
            }
            "mutex-bufwriter" => {
                let boxed: Box<dyn Write + Send> = Box::new(sink.inner);
                let sink = Counting {
                    inner: boxed,
                    progress: sink.progress,
                };
                Self::Mutex(Arc::new(Mutex::new(BufWriter::new(sink))))
            }
            other => unreachable!("unknown implementation {other}"),
        }
    }

    /// Runs `producers × per` records through the instance; returns the
    /// time from release until all of them reached the sink (`expected`
    /// bytes in all, counted by `progress`).
    fn iteration(
        &self,
        producers: usize,
        per: usize,
        record: &'static [u8],
        progress: &Progress,
        latencies: Option<&Mutex<Hist>>,
    ) -> Duration {
        let expected =
            progress.bytes.load(Ordering::SeqCst) + (producers * per * record.len()) as u64;
        progress.expect(expected);
        let elapsed = match self {
            Self::Sheaf(writer) => {
                let start = produce(
                    (0..producers).map(|_| writer.handle()).collect(),
                    per,
                    record,
                    latencies,
                );
                writer.flush().unwrap();
                start.elapsed()
            }
            Self::TracingAppender(nb, _) => {
                let start = produce(
                    (0..producers).map(|_| nb.clone()).collect(),
                    per,
                    record,
                    latencies,
                );
                progress.wait_for(expected);
                start.elapsed()
            }
            Self::Crossbeam(tx, _) => {
                let tx = tx.as_ref().unwrap();
                let start = produce(
                    (0..producers).map(|_| ChannelWriter(tx.clone())).collect(),
                    per,
                    record,
                    latencies,
                );
                progress.wait_for(expected);
                start.elapsed()
            }
            Self::Mutex(shared) => {
                let start = produce(
                    (0..producers)
                        .map(|_| MutexWriter(Arc::clone(shared)))
                        .collect(),
                    per,
                    record,
                    latencies,
                );
                shared.lock().unwrap().flush().unwrap();
                start.elapsed()
            }
        };
        assert_eq!(
            progress.bytes.load(Ordering::SeqCst),
            expected,
            "every byte reached the sink"
        );
        if let Self::Sheaf(writer) = self {
            let s = writer.stats();
            assert_eq!(
                (s.failed, s.dropped_newest, s.dropped_oldest, s.queued),
                (0, 0, 0, 0),
                "sheaf dropped nothing"
            );
            assert_eq!(s.written, s.accepted);
        }
        elapsed
    }

    fn finish(self) {
        match self {
            Self::Sheaf(writer) => {
                let report = writer.close(CLOSE_DEADLINE);
                assert!(!report.timed_out && report.unwritten == 0);
            }
            Self::TracingAppender(nb, guard) => {
                drop(nb);
                drop(guard);
            }
            Self::Crossbeam(mut tx, mut consumer) => {
                drop(tx.take());
                consumer.take().unwrap().join().unwrap();
            }
            Self::Mutex(shared) => shared.lock().unwrap().flush().unwrap(),
        }
    }
}

/// Benchmarks `imp` on a fresh long-lived instance over `make()`.
fn bench_impl<S: Write + Send + 'static>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    imp: &str,
    producers: usize,
    per: usize,
    record: &'static [u8],
    sink: S,
    latencies: Option<&Mutex<Hist>>,
) {
    let progress = Arc::new(Progress::default());
    let instance = Instance::new(imp, sink, &progress);
    group.bench_with_input(
        BenchmarkId::new(imp, producers),
        &producers,
        |b, &producers| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| instance.iteration(producers, per, record, &progress, latencies))
                    .sum()
            });
        },
    );
    instance.finish();
}

fn devnull() -> File {
    File::create("/dev/null").expect("/dev/null")
}

/// An unlinked temporary file on disk: the "to a file" sink.
fn tempfile() -> File {
    tempfile::tempfile().expect("a temporary file")
}

fn bench_throughput(c: &mut Criterion, size: usize) {
    bench_throughput_into(c, size, "", devnull);
}

fn bench_throughput_into(c: &mut Criterion, size: usize, suffix: &str, sink: fn() -> File) {
    let record = make_record(size);
    let mut group = c.benchmark_group(format!("writer/throughput-{size}B{suffix}"));
    group.throughput(Throughput::Elements(THROUGHPUT_RECORDS as u64));
    group.sampling_mode(SamplingMode::Flat);
    for producers in [2usize, 8] {
        for imp in IMPLS {
            bench_impl(
                &mut group,
                imp,
                producers,
                THROUGHPUT_RECORDS / producers,
                record,
                sink(),
                None,
            );
        }
    }
    group.finish();
}

fn bench_throughput_64(c: &mut Criterion) {
    bench_throughput(c, 64);
}

fn bench_throughput_512(c: &mut Criterion) {
    bench_throughput(c, 512);
}

fn bench_throughput_file_64(c: &mut Criterion) {
    bench_throughput_into(c, 64, "-file", tempfile);
}

fn bench_slow_sink(c: &mut Criterion) {
    let record = make_record(64);
    let mut group = c.benchmark_group("writer/slow-sink-latency");
    group.sampling_mode(SamplingMode::Flat);
    // 8 producers oversubscribe the 2-core machine.
    for (producers, imp) in [2usize, 8]
        .into_iter()
        .flat_map(|p| IMPLS.iter().map(move |imp| (p, imp)))
    {
        group.throughput(Throughput::Elements(
            (producers * LATENCY_RECORDS_PER_PRODUCER) as u64,
        ));
        let hist = Mutex::new(Hist::new());
        let calls = Arc::new(AtomicU64::new(0));
        let sink = SlowSink {
            calls: Arc::clone(&calls),
        };
        bench_impl(
            &mut group,
            imp,
            producers,
            LATENCY_RECORDS_PER_PRODUCER,
            record,
            sink,
            Some(&hist),
        );
        let hist = hist.into_inner().unwrap();
        let stalls = calls.load(Ordering::Relaxed) / STALL_EVERY_CALLS;
        if hist.n == 0 {
            continue; // filtered out
        }
        eprintln!(
            "LATENCY writer/slow-sink/{imp}/{producers} p50={}ns p99={}ns p999={}ns max={}ns n={} sink_stalls={stalls}",
            hist.percentile(0.50),
            hist.percentile(0.99),
            hist.percentile(0.999),
            hist.max,
            hist.n
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_throughput_64, bench_throughput_512, bench_throughput_file_64, bench_slow_sink
}
criterion_main!(benches);
