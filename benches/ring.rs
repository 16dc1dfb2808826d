//! Bounded MPMC queues: `sheaf::channel` and `sheaf::ring::Ring` against
//! their peers.
//!
//! Every queue holds 1,024 `u64` items. Producers and consumers run on fresh
//! threads, spawned outside the timing and released together by a barrier;
//! the time runs from the release until every thread is joined. Each
//! iteration moves 1,000,000 items: each of `p` producers sends its own
//! contiguous range of values and each of `c` consumers receives exactly
//! `1,000,000 / c` of them (so no disconnection is needed); the consumers'
//! value sums are checked against the expected total, so nothing is lost,
//! duplicated or optimized away. Group ids are `ring/<workload>`, function
//! ids the implementation, parameters `<p>p<c>c`.
//!
//! - `ring/blocking`: one item per blocking `send` / `recv`, at `1p1c`,
//!   `2p2c` and `4p4c` (4p4c oversubscribes a 2-core machine). Peers:
//!   `sheaf` (`sheaf::channel::bounded`; `sheaf-padded` and `sheaf-spread`
//!   are the same channel over a ring with that `SlotLayout`),
//!   `crossbeam-channel`, `kanal`,
//!   `flume`, `std-sync-channel` (`std::sync::mpsc::sync_channel`; its
//!   receiver is single-consumer, so several consumers share it through a
//!   `Mutex`) and `arrayqueue` (crossbeam-queue's `ArrayQueue`, spinning then
//!   yielding while full or empty).
//! - `ring/algorithm`: the ring algorithms themselves, without a channel
//!   layer: every thread waits by spinning, then yielding, while full or
//!   empty. `sheaf`, `sheaf-padded`, `sheaf-spread`: `sheaf::ring::Ring`
//!   (stamps, CAS-claimed head and tail) in each `SlotLayout`;
//!   `faa-tickets` and `faa-tickets-padded`: a fetch-and-add ticket ring
//!   (folly's and rigtorp's turn sequencer, the core of SCQ/LCRQ; see
//!   `ring/ticket.rs`), packed and with 128-byte slots; `arrayqueue`:
//!   crossbeam's `ArrayQueue`. DESIGN.md reads the result.
//! - `ring/batch64`: producers send in batches of 64, consumers take up to 64
//!   at a time, at `1p1c` and `2p2c`. `sheaf` is the raw `Ring`
//!   (`push_batch` / `pop_batch`, spinning then yielding; each producer
//!   refills one `Vec`, which `push_batch` hands back), `sheaf-channel`
//!   the channel (`try_send_batch`, blocking on `send` of the first leftover
//!   when full; `recv_batch`). crossbeam's `ArrayQueue` and channel have no
//!   batch calls: `arrayqueue-loop64` and `crossbeam-channel-loop64` loop over
//!   64 single operations. (kanal 0.1 has no batch send, so it is absent.)
//! - `ring/latency`: one-way latency, 1 producer and 1 consumer; the producer
//!   sends its clock reading (nanoseconds since a shared epoch) at most every
//!   2 µs (spinning in between) and only once the previous message was
//!   received, so a descheduled consumer delays one message rather than a
//!   queue of them; the consumer subtracts it from its own reading. One
//!   iteration is one message and its reported time is the latency, so
//!   criterion's time per iteration is the mean latency. Percentiles cannot
//!   be stored by criterion: after each implementation a line
//!   `LATENCY ring/latency/<impl> p50=… ns p99=… ns n=…` is printed to
//!   stdout, over every message sent for that implementation (warm-up
//!   included). Implementations: `sheaf`, `crossbeam-channel`, `kanal`.
//!
//! Run it with `cargo bench --bench ring`, or one group with short settings:
//!
//! ```text
//! cargo bench --bench ring -- --warm-up-time 1 --measurement-time 2 --sample-size 10 'ring/blocking'
//! ```
//!
//! The default configuration (10 samples, 1 s warm-up, 3 s measurement) is
//! set in `criterion_group!`; command-line flags override it.

use std::hint::{black_box, spin_loop};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use crossbeam_queue::ArrayQueue;
use sheaf::ring::{Ring, SlotLayout};

mod common;
use common::thread_counts;

#[path = "ring/ticket.rs"]
mod ticket;
use ticket::TicketRing;

/// Capacity of every queue.
const CAP: usize = 1024;
/// Items moved per iteration of `ring/blocking` and `ring/batch64`.
const ITEMS: u64 = 1_000_000;
/// Batch size of `ring/batch64`.
const BATCH: usize = 64;
/// Least time between two sends of `ring/latency`.
const LATENCY_INTERVAL: Duration = Duration::from_micros(2);
/// Failed attempts spent spinning before the non-blocking queues yield.
const SPINS: u32 = 16;

/// Spin-then-yield waiting for the non-blocking queues.
struct Backoff(u32);

impl Backoff {
    fn new() -> Self {
        Self(0)
    }

    /// Waits a little after a failed attempt: spins for the first few
    /// failures, then yields the CPU.
    #[inline]
    fn snooze(&mut self) {
        if self.0 < SPINS {
            spin_loop();
            self.0 += 1;
        } else {
            thread::yield_now();
        }
    }
}

/// Pushes `v` with `try_push`, waiting (spin, then yield) while it is full.
#[inline]
fn push_wait(mut v: u64, try_push: impl Fn(u64) -> Result<(), u64>) {
    let mut backoff = Backoff::new();
    while let Err(back) = try_push(v) {
        v = back;
        backoff.snooze();
    }
}

/// Pops with `try_pop`, waiting (spin, then yield) while it is empty.
#[inline]
fn pop_wait(try_pop: impl Fn() -> Option<u64>) -> u64 {
    let mut backoff = Backoff::new();
    loop {
        if let Some(v) = try_pop() {
            return v;
        }
        backoff.snooze();
    }
}

/// Runs every producer and consumer on its own fresh thread, all released
/// together by a barrier; returns the time from the release until all were
/// joined, and the consumers' results.
fn run_pc<P, C, R>(producers: Vec<P>, consumers: Vec<C>) -> (Duration, Vec<R>)
where
    P: FnOnce() + Send,
    C: FnOnce() -> R + Send,
    R: Send,
{
    let barrier = Barrier::new(producers.len() + consumers.len() + 1);
    let barrier = &barrier;
    thread::scope(|s| {
        let producers: Vec<_> = producers
            .into_iter()
            .map(|p| {
                s.spawn(move || {
                    barrier.wait();
                    p();
                })
            })
            .collect();
        let consumers: Vec<_> = consumers
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    barrier.wait();
                    c()
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for p in producers {
            p.join().expect("producer panicked");
        }
        let results = consumers
            .into_iter()
            .map(|c| c.join().expect("consumer panicked"))
            .collect();
        (start.elapsed(), results)
    })
}

/// Sum of the values `0..n`, as the consumers' sums add up to it.
fn expected_sum(n: u64) -> u64 {
    (0..n).fold(0u64, u64::wrapping_add)
}

/// The `<p>p<c>c` parameter.
fn config(p: u64, c: u64) -> String {
    format!("{p}p{c}c")
}

/// A bounded queue used one item at a time, with blocking (or waiting) calls.
trait Blocking {
    /// The criterion function id.
    const NAME: &'static str;
    /// The sending end, cloned for each producer.
    type Tx: Clone + Send;
    /// The receiving end, cloned for each consumer.
    type Rx: Clone + Send;
    /// A queue holding `cap` items.
    fn channel(cap: usize) -> (Self::Tx, Self::Rx);
    /// Sends `v`, waiting while the queue is full.
    fn send(tx: &Self::Tx, v: u64);
    /// Receives one item, waiting while the queue is empty.
    fn recv(rx: &Self::Rx) -> u64;
}

/// `sheaf::channel` over a ring with the given [`SlotLayout`] (`L` indexes
/// [`LAYOUTS`]).
struct SheafChannelLayout<const L: usize>;
impl<const L: usize> Blocking for SheafChannelLayout<L> {
    const NAME: &'static str = LAYOUT_NAMES[L];
    type Tx = sheaf::channel::Sender<u64>;
    type Rx = sheaf::channel::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        sheaf::channel::builder()
            .capacity(cap)
            .slot_layout(LAYOUTS[L])
            .build()
            .expect("valid capacity")
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).expect("receivers alive");
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("senders alive")
    }
}

/// The slot layouts compared, and their function ids.
const LAYOUTS: [SlotLayout; 3] = [SlotLayout::Packed, SlotLayout::Padded, SlotLayout::Spread];
const LAYOUT_NAMES: [&str; 3] = ["sheaf", "sheaf-padded", "sheaf-spread"];

/// The raw `sheaf::ring::Ring` with the given layout, waiting like
/// `arrayqueue` (spin, then yield) while full or empty.
struct SheafRingLayout<const L: usize>;
impl<const L: usize> Blocking for SheafRingLayout<L> {
    const NAME: &'static str = LAYOUT_NAMES[L];
    type Tx = Arc<Ring<u64>>;
    type Rx = Arc<Ring<u64>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        let ring = Arc::new(Ring::with_layout(cap, LAYOUTS[L]).expect("valid capacity"));
        (Arc::clone(&ring), ring)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        push_wait(v, |v| tx.try_push(v));
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        pop_wait(|| rx.try_pop())
    }
}

/// The fetch-and-add ticket ring of [`ticket`], packed or padded.
struct Tickets<const PADDED: bool>;
impl<const PADDED: bool> Blocking for Tickets<PADDED> {
    const NAME: &'static str = if PADDED {
        "faa-tickets-padded"
    } else {
        "faa-tickets"
    };
    type Tx = Arc<TicketRing<PADDED>>;
    type Rx = Arc<TicketRing<PADDED>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        let ring = Arc::new(TicketRing::new(cap));
        (Arc::clone(&ring), ring)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.push(v);
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.pop()
    }
}

/// `crossbeam_channel::bounded`.
struct CrossbeamChannel;
impl Blocking for CrossbeamChannel {
    const NAME: &'static str = "crossbeam-channel";
    type Tx = crossbeam_channel::Sender<u64>;
    type Rx = crossbeam_channel::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(cap)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).expect("receivers alive");
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("senders alive")
    }
}

/// `kanal::bounded`.
struct Kanal;
impl Blocking for Kanal {
    const NAME: &'static str = "kanal";
    type Tx = kanal::Sender<u64>;
    type Rx = kanal::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        kanal::bounded(cap)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).expect("receivers alive");
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("senders alive")
    }
}

/// `flume::bounded`.
struct Flume;
impl Blocking for Flume {
    const NAME: &'static str = "flume";
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(cap)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).expect("receivers alive");
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.recv().expect("senders alive")
    }
}

/// `std::sync::mpsc::sync_channel`; consumers share the single receiver
/// through a mutex.
struct StdSyncChannel;
impl Blocking for StdSyncChannel {
    const NAME: &'static str = "std-sync-channel";
    type Tx = SyncSender<u64>;
    type Rx = Arc<Mutex<Receiver<u64>>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        let (tx, rx) = mpsc::sync_channel(cap);
        (tx, Arc::new(Mutex::new(rx)))
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).expect("receiver alive");
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        rx.lock()
            .expect("not poisoned")
            .recv()
            .expect("senders alive")
    }
}

/// crossbeam-queue's `ArrayQueue`, waiting by spinning then yielding.
struct ArrayQueueSpin;
impl Blocking for ArrayQueueSpin {
    const NAME: &'static str = "arrayqueue";
    type Tx = Arc<ArrayQueue<u64>>;
    type Rx = Arc<ArrayQueue<u64>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        let q = Arc::new(ArrayQueue::new(cap));
        (Arc::clone(&q), q)
    }
    #[inline]
    fn send(tx: &Self::Tx, v: u64) {
        push_wait(v, |v| tx.push(v));
    }
    #[inline]
    fn recv(rx: &Self::Rx) -> u64 {
        pop_wait(|| rx.pop())
    }
}

/// Moves `iters × ITEMS` items through the fresh queue `(tx, rx)` with `p`
/// producers running `producer(tx, values)` and `c` consumers running
/// `consumer(rx, count)` (which returns the sum of the values it received);
/// checks the total and returns the time.
fn move_items<Tx: Clone + Send, Rx: Clone + Send>(
    (tx, rx): (Tx, Rx),
    (p, c): (u64, u64),
    iters: u64,
    producer: impl Fn(&Tx, Range<u64>) + Sync,
    consumer: impl Fn(&Rx, u64) -> u64 + Sync,
) -> Duration {
    let total = iters * ITEMS;
    let (per_p, per_c) = (total / p, total / c);
    let (producer, consumer) = (&producer, &consumer);
    let producers = (0..p)
        .map(|k| {
            let tx = tx.clone();
            move || producer(&tx, k * per_p..(k + 1) * per_p)
        })
        .collect();
    let consumers = (0..c)
        .map(|_| {
            let rx = rx.clone();
            move || consumer(&rx, per_c)
        })
        .collect();
    drop((tx, rx));
    let (elapsed, sums) = run_pc(producers, consumers);
    let sum = sums.into_iter().fold(0u64, u64::wrapping_add);
    assert_eq!(sum, expected_sum(total), "items lost or duplicated");
    elapsed
}

/// `ring/blocking` for one implementation.
fn blocking<Q: Blocking>(group: &mut BenchmarkGroup<'_, WallTime>) {
    for pc in thread_counts(&[1, 2, 4])
        .into_iter()
        .map(|n| (n as u64, n as u64))
    {
        group.bench_with_input(
            BenchmarkId::new(Q::NAME, config(pc.0, pc.1)),
            &pc,
            |b, &pc| {
                b.iter_custom(|iters| {
                    move_items(
                        Q::channel(CAP),
                        pc,
                        iters,
                        |tx, values| {
                            for v in values {
                                Q::send(tx, v);
                            }
                        },
                        |rx, count| (0..count).fold(0u64, |sum, _| sum.wrapping_add(Q::recv(rx))),
                    )
                });
            },
        );
    }
}

/// A bounded queue used in batches of up to 64 items.
trait Batched {
    /// The criterion function id.
    const NAME: &'static str;
    /// The sending end, cloned for each producer.
    type Tx: Clone + Send;
    /// The receiving end, cloned for each consumer.
    type Rx: Clone + Send;
    /// A queue holding `cap` items.
    fn channel(cap: usize) -> (Self::Tx, Self::Rx);
    /// Sends the values `items` (at most 64), waiting while the queue is
    /// full; `buffer` is the producer's own, empty and reusable between
    /// calls (for APIs that take a `Vec`).
    fn send_batch(tx: &Self::Tx, items: Range<u64>, buffer: &mut Vec<u64>);
    /// Appends between 1 and `max` items to `out`, waiting while the queue is empty.
    fn recv_batch(rx: &Self::Rx, out: &mut Vec<u64>, max: usize);
}

/// The raw `sheaf::ring::Ring`: `push_batch` / `pop_batch`, spin then yield.
struct SheafRing;
impl Batched for SheafRing {
    const NAME: &'static str = "sheaf";
    type Tx = Arc<Ring<u64>>;
    type Rx = Arc<Ring<u64>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        let ring = Arc::new(Ring::with_capacity(cap).expect("valid capacity"));
        (Arc::clone(&ring), ring)
    }
    #[inline]
    fn send_batch(tx: &Self::Tx, items: Range<u64>, buffer: &mut Vec<u64>) {
        buffer.extend(items);
        let mut backoff = Backoff::new();
        loop {
            // `push_batch` hands the same allocation back, emptied.
            *buffer = tx.push_batch(std::mem::take(buffer));
            if buffer.is_empty() {
                return;
            }
            backoff.snooze();
        }
    }
    #[inline]
    fn recv_batch(rx: &Self::Rx, out: &mut Vec<u64>, max: usize) {
        let mut backoff = Backoff::new();
        while rx.pop_batch(out, max) == 0 {
            backoff.snooze();
        }
    }
}

/// `sheaf::channel`: `try_send_batch`, blocking on `send` of the first
/// leftover when full; `recv_batch`.
struct SheafChannelBatch;
impl Batched for SheafChannelBatch {
    const NAME: &'static str = "sheaf-channel";
    type Tx = sheaf::channel::Sender<u64>;
    type Rx = sheaf::channel::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        sheaf::channel::bounded(cap)
    }
    #[inline]
    fn send_batch(tx: &Self::Tx, items: Range<u64>, buffer: &mut Vec<u64>) {
        buffer.extend(items);
        loop {
            *buffer = tx
                .try_send_batch(std::mem::take(buffer))
                .expect("receivers alive");
            if buffer.is_empty() {
                return;
            }
            let first = buffer.remove(0);
            tx.send(first).expect("receivers alive");
        }
    }
    #[inline]
    fn recv_batch(rx: &Self::Rx, out: &mut Vec<u64>, max: usize) {
        rx.recv_batch(out, max).expect("senders alive");
    }
}

/// `ArrayQueue` with 64 single pushes / pops (it has no batch calls).
struct ArrayQueueLoop64;
impl Batched for ArrayQueueLoop64 {
    const NAME: &'static str = "arrayqueue-loop64";
    type Tx = Arc<ArrayQueue<u64>>;
    type Rx = Arc<ArrayQueue<u64>>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        ArrayQueueSpin::channel(cap)
    }
    #[inline]
    fn send_batch(tx: &Self::Tx, items: Range<u64>, _: &mut Vec<u64>) {
        for v in items {
            push_wait(v, |v| tx.push(v));
        }
    }
    #[inline]
    fn recv_batch(rx: &Self::Rx, out: &mut Vec<u64>, max: usize) {
        out.extend((0..max).map(|_| pop_wait(|| rx.pop())));
    }
}

/// `crossbeam_channel` with 64 single sends / receives (it has no batch calls).
struct CrossbeamLoop64;
impl Batched for CrossbeamLoop64 {
    const NAME: &'static str = "crossbeam-channel-loop64";
    type Tx = crossbeam_channel::Sender<u64>;
    type Rx = crossbeam_channel::Receiver<u64>;
    fn channel(cap: usize) -> (Self::Tx, Self::Rx) {
        crossbeam_channel::bounded(cap)
    }
    #[inline]
    fn send_batch(tx: &Self::Tx, items: Range<u64>, _: &mut Vec<u64>) {
        for v in items {
            tx.send(v).expect("receivers alive");
        }
    }
    #[inline]
    fn recv_batch(rx: &Self::Rx, out: &mut Vec<u64>, max: usize) {
        out.extend((0..max).map(|_| rx.recv().expect("senders alive")));
    }
}

/// `ring/batch64` for one implementation.
fn batch64<Q: Batched>(group: &mut BenchmarkGroup<'_, WallTime>) {
    for pc in thread_counts(&[1, 2])
        .into_iter()
        .map(|n| (n as u64, n as u64))
    {
        group.bench_with_input(
            BenchmarkId::new(Q::NAME, config(pc.0, pc.1)),
            &pc,
            |b, &pc| {
                b.iter_custom(|iters| {
                    move_items(
                        Q::channel(CAP),
                        pc,
                        iters,
                        |tx, values| {
                            let mut buffer = Vec::with_capacity(BATCH);
                            let mut next = values.start;
                            while next < values.end {
                                let end = (next + BATCH as u64).min(values.end);
                                Q::send_batch(tx, next..end, &mut buffer);
                                next = end;
                            }
                        },
                        |rx, count| {
                            let mut out = Vec::with_capacity(BATCH);
                            let (mut left, mut sum) = (count, 0u64);
                            while left > 0 {
                                out.clear();
                                Q::recv_batch(rx, &mut out, (left as usize).min(BATCH));
                                left -= out.len() as u64;
                                sum = out.iter().fold(sum, |s, &v| s.wrapping_add(v));
                            }
                            black_box(sum)
                        },
                    )
                });
            },
        );
    }
}

/// `ring/latency` for one implementation; prints its percentiles.
///
/// The producer sends a message at most every 2 µs and never before the
/// previous one was received: with one message in flight, a consumer that is
/// descheduled for a while delays that message only, instead of leaving a
/// queue of hundreds behind it whose waits would swamp the hand-off latency.
fn latency<Q: Blocking>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mut all: Vec<u64> = Vec::new();
    group.bench_function(Q::NAME, |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = Q::channel(CAP);
            let epoch = Instant::now();
            let received = AtomicU64::new(0);
            let received = &received;
            let producer = move || {
                for i in 0..iters {
                    let sent = epoch.elapsed();
                    Q::send(&tx, sent.as_nanos() as u64);
                    let next = sent + LATENCY_INTERVAL;
                    let mut backoff = Backoff::new();
                    while received.load(Ordering::Acquire) <= i {
                        backoff.snooze();
                    }
                    while epoch.elapsed() < next {
                        spin_loop();
                    }
                }
            };
            let consumer = move || {
                let mut latencies = Vec::with_capacity(iters as usize);
                for i in 0..iters {
                    let sent = Q::recv(&rx);
                    let now = epoch.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(sent));
                    received.store(i + 1, Ordering::Release);
                }
                latencies
            };
            let (_, mut results) = run_pc(vec![producer], vec![consumer]);
            let latencies = results.pop().expect("one consumer");
            assert_eq!(latencies.len() as u64, iters, "messages lost");
            let sum: u64 = latencies.iter().sum();
            all.extend_from_slice(&latencies);
            Duration::from_nanos(sum)
        });
    });
    if !all.is_empty() {
        all.sort_unstable();
        let at = |q: usize| all[(all.len() * q / 100).min(all.len() - 1)];
        println!(
            "LATENCY ring/latency/{} p50={} ns p99={} ns n={}",
            Q::NAME,
            at(50),
            at(99),
            all.len()
        );
    }
}

fn bench_blocking(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/blocking");
    group.throughput(Throughput::Elements(ITEMS));
    blocking::<SheafChannelLayout<0>>(&mut group);
    blocking::<SheafChannelLayout<1>>(&mut group);
    blocking::<SheafChannelLayout<2>>(&mut group);
    blocking::<CrossbeamChannel>(&mut group);
    blocking::<Kanal>(&mut group);
    blocking::<Flume>(&mut group);
    blocking::<StdSyncChannel>(&mut group);
    blocking::<ArrayQueueSpin>(&mut group);
    group.finish();
}

fn bench_algorithm(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/algorithm");
    group.throughput(Throughput::Elements(ITEMS));
    blocking::<SheafRingLayout<0>>(&mut group);
    blocking::<SheafRingLayout<1>>(&mut group);
    blocking::<SheafRingLayout<2>>(&mut group);
    blocking::<Tickets<false>>(&mut group);
    blocking::<Tickets<true>>(&mut group);
    blocking::<ArrayQueueSpin>(&mut group);
    group.finish();
}

fn bench_batch64(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/batch64");
    group.throughput(Throughput::Elements(ITEMS));
    batch64::<SheafRing>(&mut group);
    batch64::<SheafChannelBatch>(&mut group);
    batch64::<ArrayQueueLoop64>(&mut group);
    batch64::<CrossbeamLoop64>(&mut group);
    group.finish();
}

fn bench_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/latency");
    group.throughput(Throughput::Elements(1));
    latency::<SheafChannelLayout<0>>(&mut group);
    latency::<CrossbeamChannel>(&mut group);
    latency::<Kanal>(&mut group);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_blocking, bench_algorithm, bench_batch64, bench_latency
}
criterion_main!(benches);
