//! Group batcher benchmarks.
//!
//! - `batch/e2e/{groups}`: producers add 400,000 items whose group keys
//!   are drawn from Zipf(s = 1.0) over 100, 10,000 or 1,000,000 keys;
//!   grace 5 ms, max delay 50 ms, max items 100; a consumer thread receives
//!   every batch (the items themselves, `Vec<u64>`). Timed from the barrier
//!   that releases the producers to the last item received (so the grace
//!   tail is in every row). 1, 2 and 8 producers (8 oversubscribes two
//!   cores). Peers in the same group:
//!   - `sheaf`: [`GroupBatcher`] (one driver thread);
//!   - `mutex-scan`: a `Mutex<HashMap<u64, Group>>` (foldhash) and a
//!     flusher thread that scans every group once per millisecond, what the
//!     seed and asynq's aggregator loop do in process;
//!   - `tokio-chunks`: one tokio `mpsc` channel per group read by
//!     `tokio-stream`'s `chunks_timeout(100, 50 ms)` in its own task (max
//!     size and max delay; it has no grace period), two runtime workers.
//!     Not run at 1M groups (a million tasks and channels per iteration).
//!
//!   After each row the lateness of groups sealed by a deadline (seal time
//!   minus deadline) is printed as p50 / p99 / max over all its iterations.
//! - `batch/wheel/{live}`: the timer structure alone, `live` timers whose
//!   deadlines move (a re-arm per "add"): 20 simulated milliseconds with
//!   200,000 re-arms per millisecond (at 10k timers each moves about 100
//!   times per grace period, at 1M about once), each moving a random timer to now
//!   plus 5 ms; a timer that comes due fires and is re-armed at now plus 5 ms
//!   (its group re-opened). `wheel-lazy`: sheaf's wheel, a re-arm is a
//!   store and a firing entry re-arms in place when its deadline moved;
//!   `wheel-eager`: sheaf's wheel, a re-arm unlinks and relinks the entry
//!   (what tokio's timer does on `Sleep::reset`); `heap-lazy`: a
//!   `BinaryHeap` with the same lazy re-check; `heap-eager`: a re-arm pushes
//!   a new heap entry and stale ones are skipped when popped.
//!
//! Before the groups run, the bytes each design holds per idle open group
//! are measured with a counting global allocator (allocated minus freed
//! while 1,000,000 groups of one 8-byte item each are opened, divided by
//! the groups, minus the 8-byte item).
//!
//! Run: `cargo bench --bench batch -- --warm-up-time 1 --measurement-time 2`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use sheaf::batch::{GroupBatcher, Trigger};
use sheaf::timer::Wheel;

mod common;
use common::thread_counts;

type Foldhash = foldhash::fast::RandomState;

const ITEMS: usize = 400_000;
const GRACE: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(50);
const MAX_ITEMS: usize = 100;

// ---------------------------------------------------------------- memory

#[path = "common/alloc.rs"]
mod alloc;
use alloc::measure;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn memory_per_idle_group() {
    const GROUPS: u64 = 1_000_000;
    const ITEM: f64 = 8.0;
    let sheaf = GroupBatcher::<u64, u64, Vec<u64>>::builder()
        .grace(Duration::from_secs(3_600))
        .aggregate(|_, items: &mut Vec<u64>| Ok::<_, Infallible>(Some(std::mem::take(items))))
        .build()
        .unwrap();
    let (bytes, ()) = measure(|| {
        for k in 0..GROUPS {
            sheaf.add(k, k).unwrap();
        }
    });
    assert_eq!(sheaf.stats().groups_open, GROUPS as usize);
    let sheaf_per = bytes as f64 / GROUPS as f64 - ITEM;
    drop(sheaf.shutdown(Duration::ZERO));

    let map: Mutex<HashMap<u64, ScanGroup, Foldhash>> = Mutex::new(HashMap::default());
    let (bytes, ()) = measure(|| {
        let now = Instant::now();
        for k in 0..GROUPS {
            map.lock().unwrap().insert(
                k,
                ScanGroup {
                    items: vec![k],
                    opened: now,
                    last: now,
                },
            );
        }
    });
    let scan_per = bytes as f64 / GROUPS as f64 - ITEM;
    drop(map);

    const TOKIO_GROUPS: u64 = 100_000;
    let runtime = tokio_runtime();
    let (bytes, senders) = measure(|| {
        let (out, _rx) = crossbeam_channel::bounded::<Vec<(u64, Instant)>>(16);
        let senders: Vec<_> = (0..TOKIO_GROUPS)
            .map(|_| spawn_chunker(&runtime, out.clone()))
            .collect();
        for (k, s) in senders.iter().enumerate() {
            s.send((k as u64, Instant::now())).unwrap();
        }
        // Let every task take its item and arm its timeout.
        thread::sleep(Duration::from_millis(200));
        senders
    });
    // Items are 16 bytes here (an id and the time it was added).
    let tokio_per = bytes as f64 / TOKIO_GROUPS as f64 - 16.0;
    drop(senders);
    drop(runtime);
    println!(
        "batch/memory: bytes per idle open group, beyond its item (net allocated / groups - item): \
         sheaf {sheaf_per:.1} (1M groups), mutex-scan {scan_per:.1} (1M groups), \
         tokio-chunks {tokio_per:.1} (100k groups: task + channel + stream + timer)"
    );
}

// ---------------------------------------------------------------- workload

/// Zipf(1.0) keys over `0..groups`, one list per producer, fixed seeds.
fn zipf_keys(groups: usize, threads: usize) -> Vec<Vec<u64>> {
    let zipf = Zipf::new(groups as f64, 1.0).expect("valid Zipf parameters");
    (0..threads)
        .map(|t| {
            let mut rng = StdRng::seed_from_u64(0x5eed + t as u64);
            (0..ITEMS / threads)
                .map(|_| zipf.sample(&mut rng) as u64 - 1)
                .collect()
        })
        .collect()
}

/// Lateness samples (ns) of deadline-sealed groups, across a row's iterations.
#[derive(Default)]
struct Lateness(Vec<u64>);

impl Lateness {
    fn report(&mut self, row: &str) {
        let v = &mut self.0;
        if v.is_empty() {
            println!("{row}: no deadline-sealed groups");
            return;
        }
        v.sort_unstable();
        let pick = |q: f64| Duration::from_nanos(v[((v.len() - 1) as f64 * q) as usize]);
        println!(
            "{row}: lateness p50 {:?} p99 {:?} max {:?} over {} deadline-sealed groups",
            pick(0.5),
            pick(0.99),
            pick(1.0),
            v.len()
        );
        v.clear();
    }
}

/// Room for one lateness sample per item, its pages already touched, so
/// recording samples inside the timed region neither reallocates nor
/// faults pages in (the same for every peer).
fn lateness_buffer() -> Vec<u64> {
    let mut buffer = vec![1u64; ITEMS];
    buffer.clear();
    buffer
}

/// Releases `threads` producers running `add(t, key, i)` over their keys;
/// returns the release instant (the caller times to the last item received).
fn produce(keys: &[Vec<u64>], add: impl Fn(usize, u64, u64) + Sync) -> Instant {
    let start = Barrier::new(keys.len() + 1);
    thread::scope(|s| {
        for (t, keys) in keys.iter().enumerate() {
            let (start, add) = (&start, &add);
            s.spawn(move || {
                start.wait();
                for (i, &k) in keys.iter().enumerate() {
                    add(t, k, (t * ITEMS + i) as u64);
                }
            });
        }
        start.wait();
        Instant::now()
    })
}

fn run_sheaf(keys: &[Vec<u64>], late: &mut Lateness) -> Duration {
    let batcher = GroupBatcher::<u64, u64, Vec<u64>>::builder()
        .grace(GRACE)
        .max_delay(MAX_DELAY)
        .max_items(MAX_ITEMS)
        .hasher(Foldhash::default())
        .aggregate(|_, items: &mut Vec<u64>| Ok::<_, Infallible>(Some(std::mem::take(items))))
        .build()
        .unwrap();
    let rx = batcher.receiver();
    let total: usize = keys.iter().map(Vec::len).sum();
    let consumer = thread::spawn(move || {
        let (mut seen, mut lateness) = (0, lateness_buffer());
        while seen < total {
            let batch = rx.recv().unwrap();
            seen += batch.output.len();
            if matches!(batch.reason, Trigger::Grace | Trigger::MaxDelay) {
                lateness.push(batch.late.as_nanos() as u64);
            }
        }
        (Instant::now(), lateness)
    });
    let began = produce(keys, |_, k, i| {
        batcher.add(k, i).unwrap();
    });
    let (ended, lateness) = consumer.join().unwrap();
    late.0.extend(lateness);
    drop(batcher.shutdown(Duration::from_secs(1)));
    ended - began
}

struct ScanGroup {
    items: Vec<u64>,
    opened: Instant,
    last: Instant,
}

fn run_mutex_scan(keys: &[Vec<u64>], late: &mut Lateness) -> Duration {
    let map: Arc<Mutex<HashMap<u64, ScanGroup, Foldhash>>> =
        Arc::new(Mutex::new(HashMap::default()));
    let (out, rx) = crossbeam_channel::bounded::<Vec<u64>>(1 << 16);
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (map, out, stop) = (Arc::clone(&map), out.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut lateness = lateness_buffer();
            let mut due_now = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
                {
                    let mut map = map.lock().unwrap();
                    let now = Instant::now();
                    map.retain(|_, g| {
                        let due = (g.last + GRACE).min(g.opened + MAX_DELAY);
                        if due > now {
                            return true;
                        }
                        lateness.push((now - due).as_nanos() as u64);
                        due_now.push(std::mem::take(&mut g.items));
                        false
                    });
                }
                for batch in due_now.drain(..) {
                    out.send(batch).unwrap();
                }
            }
            lateness
        })
    };
    let total: usize = keys.iter().map(Vec::len).sum();
    let consumer = thread::spawn(move || {
        let mut seen = 0;
        while seen < total {
            seen += rx.recv().unwrap().len();
        }
        Instant::now()
    });
    let began = produce(keys, |_, k, i| {
        let now = Instant::now();
        let full = {
            let mut map = map.lock().unwrap();
            let g = map.entry(k).or_insert_with(|| ScanGroup {
                items: Vec::new(),
                opened: now,
                last: now,
            });
            g.items.push(i);
            g.last = now;
            if g.items.len() >= MAX_ITEMS {
                map.remove(&k).map(|g| g.items)
            } else {
                None
            }
        };
        if let Some(items) = full {
            out.send(items).unwrap();
        }
    });
    let ended = consumer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    late.0.extend(flusher.join().unwrap());
    ended - began
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

type Chunk = Vec<(u64, Instant)>;

fn spawn_chunker(
    runtime: &tokio::runtime::Runtime,
    out: crossbeam_channel::Sender<Chunk>,
) -> tokio::sync::mpsc::UnboundedSender<(u64, Instant)> {
    use tokio_stream::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move {
        let chunks = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .chunks_timeout(MAX_ITEMS, MAX_DELAY);
        tokio::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            if out.send(chunk).is_err() {
                return;
            }
        }
    });
    tx
}

fn run_tokio(
    runtime: &tokio::runtime::Runtime,
    groups: usize,
    keys: &[Vec<u64>],
    late: &mut Lateness,
) -> Duration {
    let (out, rx) = crossbeam_channel::bounded::<Chunk>(1 << 16);
    let senders: Vec<_> = (0..groups)
        .map(|_| spawn_chunker(runtime, out.clone()))
        .collect();
    drop(out);
    let total: usize = keys.iter().map(Vec::len).sum();
    let consumer = thread::spawn(move || {
        let (mut seen, mut lateness) = (0, lateness_buffer());
        while seen < total {
            let chunk = rx.recv().unwrap();
            let now = Instant::now();
            seen += chunk.len();
            if chunk.len() < MAX_ITEMS {
                let due = chunk[0].1 + MAX_DELAY;
                lateness.push(now.saturating_duration_since(due).as_nanos() as u64);
            }
        }
        (Instant::now(), lateness)
    });
    let began = produce(keys, |_, k, i| {
        senders[k as usize].send((i, Instant::now())).unwrap();
    });
    let (ended, lateness) = consumer.join().unwrap();
    late.0.extend(lateness);
    drop(senders);
    ended - began
}

fn e2e(c: &mut Criterion) {
    let runtime = tokio_runtime();
    for groups in [100usize, 10_000, 1_000_000] {
        let mut group = c.benchmark_group(format!("batch/e2e/{groups}"));
        group.throughput(Throughput::Elements(ITEMS as u64));
        group.sample_size(10);
        for threads in thread_counts(&[1, 2, 8]) {
            let keys = zipf_keys(groups, threads);
            let mut late = Lateness::default();
            group.bench_with_input(BenchmarkId::new("sheaf", threads), &threads, |b, _| {
                b.iter_custom(|iters| (0..iters).map(|_| run_sheaf(&keys, &mut late)).sum())
            });
            late.report(&format!("batch/e2e/{groups}/sheaf/{threads}"));
            group.bench_with_input(BenchmarkId::new("mutex-scan", threads), &threads, |b, _| {
                b.iter_custom(|iters| (0..iters).map(|_| run_mutex_scan(&keys, &mut late)).sum())
            });
            late.report(&format!("batch/e2e/{groups}/mutex-scan/{threads}"));
            if groups <= 10_000 {
                group.bench_with_input(
                    BenchmarkId::new("tokio-chunks", threads),
                    &threads,
                    |b, _| {
                        b.iter_custom(|iters| {
                            (0..iters)
                                .map(|_| run_tokio(&runtime, groups, &keys, &mut late))
                                .sum()
                        })
                    },
                );
                late.report(&format!("batch/e2e/{groups}/tokio-chunks/{threads}"));
            }
        }
        group.finish();
    }
}

// ---------------------------------------------------------------- wheel vs heap

const SIM_MS: u64 = 20;
/// Deadline moves ("adds") per simulated millisecond.
const REARMS_PER_MS: usize = 200_000;
const REARM_AHEAD: u64 = 5;

/// A cheap deterministic stream of timer ids.
struct Ids(u64);

impl Ids {
    #[inline]
    fn next(&mut self, live: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % live as u64) as usize
    }
}

/// Returns how many timers fired (so the work cannot be optimized away).
fn wheel_lazy(live: usize) -> u64 {
    let mut wheel = Wheel::new();
    let mut deadline: Vec<u64> = (0..live as u64).map(|i| 1 + i % REARM_AHEAD).collect();
    for (id, &d) in deadline.iter().enumerate() {
        wheel.insert(d, id);
    }
    let (mut ids, mut fired) = (Ids(0x9e37_79b9), 0);
    for now in 1..=SIM_MS {
        for _ in 0..REARMS_PER_MS {
            deadline[ids.next(live)] = now + REARM_AHEAD; // the store
        }
        wheel.advance(now, |_, id| {
            if deadline[id] <= now {
                fired += 1;
                deadline[id] = now + REARM_AHEAD;
            }
            Some((deadline[id], id))
        });
    }
    fired
}

fn wheel_eager(live: usize) -> u64 {
    let mut wheel = Wheel::new();
    let keys: Vec<_> = (0..live)
        .map(|id| wheel.insert(1 + id as u64 % REARM_AHEAD, id))
        .collect();
    let (mut ids, mut fired) = (Ids(0x9e37_79b9), 0);
    for now in 1..=SIM_MS {
        for _ in 0..REARMS_PER_MS {
            wheel.reschedule(keys[ids.next(live)], now + REARM_AHEAD);
        }
        wheel.advance(now, |_, id| {
            fired += 1;
            Some((now + REARM_AHEAD, id))
        });
    }
    fired
}

fn heap_lazy(live: usize) -> u64 {
    let mut deadline: Vec<u64> = (0..live as u64).map(|i| 1 + i % REARM_AHEAD).collect();
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = deadline
        .iter()
        .enumerate()
        .map(|(id, &d)| Reverse((d, id)))
        .collect();
    let (mut ids, mut fired) = (Ids(0x9e37_79b9), 0);
    for now in 1..=SIM_MS {
        for _ in 0..REARMS_PER_MS {
            deadline[ids.next(live)] = now + REARM_AHEAD;
        }
        while let Some(&Reverse((at, id))) = heap.peek() {
            if at > now {
                break;
            }
            heap.pop();
            if deadline[id] <= now {
                fired += 1;
                deadline[id] = now + REARM_AHEAD;
            }
            heap.push(Reverse((deadline[id], id)));
        }
    }
    fired
}

fn heap_eager(live: usize) -> u64 {
    let mut generation = vec![0u32; live];
    let mut heap: BinaryHeap<Reverse<(u64, usize, u32)>> = (0..live)
        .map(|id| Reverse((1 + id as u64 % REARM_AHEAD, id, 0)))
        .collect();
    let (mut ids, mut fired) = (Ids(0x9e37_79b9), 0);
    for now in 1..=SIM_MS {
        for _ in 0..REARMS_PER_MS {
            let id = ids.next(live);
            generation[id] += 1;
            heap.push(Reverse((now + REARM_AHEAD, id, generation[id])));
        }
        while let Some(&Reverse((at, id, g))) = heap.peek() {
            if at > now {
                break;
            }
            heap.pop();
            if g == generation[id] {
                fired += 1;
                generation[id] += 1;
                heap.push(Reverse((now + REARM_AHEAD, id, generation[id])));
            }
        }
    }
    fired
}

/// One timer design run over `live` timers; returns how many fired.
type Design = fn(usize) -> u64;

fn wheel(c: &mut Criterion) {
    for live in [10_000usize, 1_000_000] {
        let mut group = c.benchmark_group(format!("batch/wheel/{live}"));
        group.sample_size(10);
        // Elements: re-arms (the expirations they cause are in the time).
        group.throughput(Throughput::Elements(SIM_MS * REARMS_PER_MS as u64));
        let fired = wheel_lazy(live);
        assert_eq!(fired, heap_lazy(live));
        let designs: [(&str, Design); 4] = [
            ("wheel-lazy", wheel_lazy),
            ("wheel-eager", wheel_eager),
            ("heap-lazy", heap_lazy),
            ("heap-eager", heap_eager),
        ];
        for (name, run) in designs {
            group.bench_function(name, |b| b.iter(|| std::hint::black_box(run(live))));
        }
        group.finish();
    }
}

fn memory(_: &mut Criterion) {
    memory_per_idle_group();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = memory, wheel, e2e
}
criterion_main!(benches);
