use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::*;

fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 500).max(8)
    } else {
        n
    }
}

#[test]
fn builder_and_bounded_validate() {
    assert_eq!(
        builder().capacity(0).build::<u8>().unwrap_err().setting(),
        "capacity"
    );
    let r = std::panic::catch_unwind(|| bounded::<u8>(0));
    assert!(r.is_err());
    let (tx, rx) = bounded::<u8>(3);
    assert_eq!((tx.capacity(), rx.capacity()), (3, 3));
}

#[test]
fn disconnection_drains_then_reports() {
    let (tx, rx) = bounded(4);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let tx2 = tx.clone();
    drop(tx);
    tx2.send(3).unwrap();
    drop(tx2);
    assert!(rx.is_disconnected());
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.iter().collect::<Vec<_>>(), [2, 3]);
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Disconnected)
    );

    let (tx, rx) = bounded(4);
    drop(rx);
    assert_eq!(tx.send(7), Err(SendError(7)));
    assert_eq!(tx.try_send(8), Err(TrySendError::Disconnected(8)));
}

#[test]
fn policies_account_for_every_item() {
    let (tx, rx) = bounded_with(2, Overflow::DropNewest);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1]);
    let s = rx.stats();
    assert_eq!((s.sent, s.received, s.dropped_newest), (2, 2, 3));

    let (tx, rx) = bounded_with(2, Overflow::DropOldest);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [3, 4]);
    let s = rx.stats();
    assert_eq!((s.sent, s.received, s.dropped_oldest), (5, 2, 3));

    let (tx, rx) = bounded_with(2, Overflow::Reject);
    let refused: Vec<_> = (0..5)
        .filter_map(|i| tx.send(i).err().map(SendError::into_inner))
        .collect();
    assert_eq!(refused, [2, 3, 4]);
    assert_eq!(rx.stats().rejected, 3);

    let (tx, rx) = bounded_with(1, Overflow::BlockTimeout(Duration::from_millis(5)));
    tx.send(1).unwrap();
    assert_eq!(tx.send(2), Err(SendError(2)));
    assert_eq!(rx.stats().timed_out, 1);
    assert_eq!(
        tx.send_timeout(3, Duration::from_millis(1)),
        Err(SendTimeoutError::Timeout(3))
    );
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(2)),
        Err(RecvTimeoutError::Timeout)
    );
}

#[test]
fn force_send_returns_the_evicted_item() {
    let (tx, rx) = bounded(1);
    assert_eq!(tx.force_send(1), Ok(None));
    assert_eq!(tx.force_send(2), Ok(Some(1)));
    assert_eq!(rx.recv(), Ok(2));
}

#[test]
fn batches() {
    let (tx, rx) = bounded(4);
    assert_eq!(tx.try_send_batch(vec![1, 2, 3, 4, 5, 6]).unwrap(), [5, 6]);
    let mut out = Vec::new();
    assert_eq!(rx.recv_batch(&mut out, 3), Ok(3));
    assert_eq!(rx.try_recv_batch(&mut out, 3), 1);
    assert_eq!(out, [1, 2, 3, 4]);
    drop(tx);
    assert_eq!(rx.recv_batch(&mut out, 3), Err(RecvError));
}

/// Capacity 1 and more threads than cores: every send parks and is woken,
/// every item arrives exactly once, each producer's items in order at
/// their single consumer.
#[test]
fn blocking_mpmc_exactly_once() {
    for capacity in [1usize, 3, 64] {
        let producers = 4;
        let consumers = 4;
        let per = scaled(5_000);
        let (tx, rx) = bounded::<(usize, usize)>(capacity);
        let seen: Arc<Vec<AtomicUsize>> =
            Arc::new((0..producers * per).map(|_| AtomicUsize::new(0)).collect());
        let start = Arc::new(Barrier::new(producers + consumers));
        let mut handles = Vec::new();
        for p in 0..producers {
            let (tx, start) = (tx.clone(), Arc::clone(&start));
            handles.push(thread::spawn(move || {
                start.wait();
                for i in 0..per {
                    tx.send((p, i)).unwrap();
                }
            }));
        }
        drop(tx);
        let mut consumer_handles = Vec::new();
        for c in 0..consumers {
            let (rx, seen, start) = (rx.clone(), Arc::clone(&seen), Arc::clone(&start));
            consumer_handles.push(thread::spawn(move || {
                start.wait();
                let mut last = vec![None::<usize>; producers];
                let mut n = 0;
                let mut batch = Vec::new();
                loop {
                    let item = if c % 2 == 0 {
                        match rx.recv() {
                            Ok(item) => item,
                            Err(_) => break,
                        }
                    } else {
                        if batch.is_empty() && rx.recv_batch(&mut batch, 16).is_err() {
                            break;
                        }
                        batch.remove(0)
                    };
                    let (p, i) = item;
                    assert!(
                        last[p].is_none_or(|l| l < i),
                        "order of producer {p} at one consumer"
                    );
                    last[p] = Some(i);
                    seen[p * per + i].fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
                n
            }));
        }
        drop(rx);
        for h in handles {
            h.join().unwrap();
        }
        let received: usize = consumer_handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(received, producers * per);
        assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
    }
}

#[test]
fn dropping_receivers_wakes_blocked_senders() {
    let (tx, rx) = bounded(1);
    tx.send(0).unwrap();
    let blocked = thread::spawn(move || tx.send(1));
    thread::sleep(Duration::from_millis(20));
    drop(rx);
    assert_eq!(blocked.join().unwrap(), Err(SendError(1)));
}

#[test]
fn dropping_senders_wakes_blocked_receivers() {
    let (tx, rx) = bounded::<u8>(1);
    let blocked = thread::spawn(move || rx.recv());
    thread::sleep(Duration::from_millis(20));
    drop(tx);
    assert_eq!(blocked.join().unwrap(), Err(RecvError));
}

#[test]
fn closing_to_senders_drains_then_reports_and_says_why() {
    let (tx, rx) = bounded_with(2, Overflow::Reject);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.send_telling(3), Err((3, Unsent::Full)));
    assert!(tx.close());
    assert!(!tx.close(), "a second close finds it closed");
    assert!(tx.is_disconnected());
    assert_eq!(tx.send_telling(4), Err((4, Unsent::Disconnected)));
    assert_eq!(tx.try_send(5), Err(TrySendError::Disconnected(5)));
    assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.stats().rejected, 1, "only the full refusal is a loss");

    let (tx, rx) = bounded_with(1, Overflow::BlockTimeout(Duration::ZERO));
    tx.send(0).unwrap();
    assert_eq!(tx.send_telling(1), Err((1, Unsent::TimedOut)));
    drop(rx);
    assert_eq!(tx.send_telling(2), Err((2, Unsent::Disconnected)));
}

#[test]
fn closing_to_senders_wakes_blocked_senders_and_receivers() {
    let (tx, rx) = bounded::<u8>(1);
    tx.send(0).unwrap();
    let sender = {
        let tx = tx.clone();
        thread::spawn(move || tx.send(1))
    };
    // Full, and nothing is received before the close: whether the sender
    // blocked before it or tries after it, its item comes back.
    tx.close();
    assert_eq!(sender.join().unwrap(), Err(SendError(1)));
    assert_eq!(rx.iter().collect::<Vec<_>>(), [0]);

    let (tx, rx) = bounded::<u8>(1);
    let receiver = thread::spawn(move || rx.recv());
    tx.close();
    assert_eq!(receiver.join().unwrap(), Err(RecvError));
}

#[test]
fn send_sync_clone_static_checks() {
    fn assert_traits<T: Send + Sync + Clone>() {}
    assert_traits::<Sender<String>>();
    assert_traits::<Receiver<String>>();
    fn assert_error<E: std::error::Error>() {}
    assert_error::<SendError<String>>();
    assert_error::<TrySendError<String>>();
    assert_error::<SendTimeoutError<String>>();
    assert_error::<RecvError>();
    assert_error::<TryRecvError>();
    assert_error::<RecvTimeoutError>();
}

#[cfg(all(feature = "async", not(miri)))]
#[test]
fn async_send_and_recv_on_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = bounded::<u64>(2);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..1_000u64 {
                        tx.send_async(p * 1_000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut sum = 0u64;
                    let mut n = 0u64;
                    while let Ok(v) = rx.recv_async().await {
                        sum += v;
                        n += 1;
                    }
                    (n, sum)
                })
            })
            .collect();
        drop(rx);
        for p in producers {
            p.await.unwrap();
        }
        let (mut n, mut sum) = (0, 0);
        for c in consumers {
            let (cn, cs) = c.await.unwrap();
            n += cn;
            sum += cs;
        }
        assert_eq!(n, 4_000);
        assert_eq!(sum, (0..4_000u64).sum::<u64>());
    });
}

#[cfg(all(feature = "async", not(miri)))]
#[test]
fn async_mixes_with_blocking_threads_and_drop_of_pending_future() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (tx, rx) = bounded::<u32>(1);
    // A pending future that is dropped must not swallow a wake-up.
    rt.block_on(async {
        let fut = rx.recv_async();
        let r = tokio::time::timeout(Duration::from_millis(5), fut).await;
        assert!(r.is_err());
    });
    let sender = thread::spawn(move || {
        for i in 0..100 {
            tx.send(i).unwrap();
        }
    });
    let got = rt.block_on(async {
        let mut got = Vec::new();
        while let Ok(v) = rx.recv_async().await {
            got.push(v);
        }
        got
    });
    sender.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

// ---- Regression tests for the core-hardening issue (#10) ----

use crate::ring::raw::stall;

/// Runs `f` on a new thread whose next claim-to-publish (or claim-to-take)
/// stops at the ring's stall point until the returned sender is used.
/// Returns once the thread is stalled there.
fn stalled<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> (std::sync::mpsc::Sender<()>, thread::JoinHandle<R>) {
    let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        let mut once = Some((claimed_tx, resume_rx));
        stall::HOOK.with(|hook| {
            *hook.borrow_mut() = Some(Box::new(move || {
                if let Some((claimed, resume)) = once.take() {
                    claimed.send(()).unwrap();
                    resume.recv().unwrap();
                }
            }))
        });
        f()
    });
    claimed_rx.recv().unwrap();
    (resume_tx, handle)
}

/// Defect 3: with the oldest item claimed by a receiver that has not freed
/// its slot, `force_send` used to hand back its own item as if it were the
/// evicted one (and count it in `dropped_oldest`). Now it waits for that
/// receiver: room is coming, nothing is evicted.
#[test]
fn force_send_never_evicts_its_own_item_behind_a_stalled_receiver() {
    let (tx, rx) = bounded_with::<u32>(2, Overflow::DropOldest);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let (resume, receiver) = {
        let rx = rx.clone();
        stalled(move || rx.try_recv())
    };
    // The receiver holds item 1's slot mid-take: the channel is not full
    // for long, and force_send must not answer with its own item.
    let sender = {
        let tx = tx.clone();
        thread::spawn(move || tx.force_send(3))
    };
    resume.send(()).unwrap();
    assert_eq!(receiver.join().unwrap(), Ok(1));
    assert_eq!(sender.join().unwrap(), Ok(None));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), [2, 3]);
    let s = rx.stats();
    assert_eq!((s.dropped_oldest, s.sent, s.received), (0, 3, 3));
}

/// Defect 3, second half: once the receivers are gone, `force_send` (and
/// `send` under DropOldest) hand the item back.
#[test]
fn force_send_to_a_closed_channel_hands_the_item_back() {
    let (tx, rx) = bounded_with::<u32>(1, Overflow::DropOldest);
    tx.send(1).unwrap();
    drop(rx);
    assert_eq!(tx.force_send(2), Err(SendError(2)));
    assert_eq!(tx.send(3), Err(SendError(3)));
    assert_eq!(tx.stats().dropped_oldest, 0);
}

/// Defect 4: a batch of at most 0 items takes nothing.
#[test]
fn try_recv_batch_of_zero_takes_nothing() {
    let (tx, rx) = bounded::<u32>(4);
    tx.send(1).unwrap();
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_batch(&mut out, 0), 0);
    assert!(out.is_empty());
    assert_eq!(rx.len(), 1);
    assert_eq!(rx.recv_batch(&mut out, 0), Ok(0));
    assert_eq!(rx.try_recv_batch(&mut out, 5), 1);
    assert_eq!(out, [1]);
}

/// Defect 5: an unrepresentable deadline means "wait forever", never a panic.
#[test]
fn duration_max_waits_forever_instead_of_panicking() {
    let (tx, rx) = bounded::<u32>(1);
    assert_eq!(tx.send_timeout(1, Duration::MAX), Ok(()));
    assert_eq!(rx.recv_timeout(Duration::MAX), Ok(1));
    // NoSlot with no deadline, woken by the other side.
    let waiter = {
        let rx = rx.clone();
        thread::spawn(move || rx.recv_timeout(Duration::MAX))
    };
    tx.send(2).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(2));
    let (tx, rx) = bounded_with::<u32>(1, Overflow::BlockTimeout(Duration::MAX));
    tx.send(3).unwrap();
    let sender = thread::spawn(move || tx.send(4));
    assert_eq!(rx.recv(), Ok(3));
    assert_eq!(sender.join().unwrap(), Ok(()));
    assert_eq!(rx.recv(), Ok(4));
}

/// Defect 6: a capacity the ring cannot allocate is a ConfigError, not an
/// abort.
#[test]
#[cfg_attr(
    miri,
    ignore = "miri emulates the huge allocation instead of failing it"
)]
fn huge_capacity_is_a_config_error() {
    for capacity in [1usize << 40, 1 << 50, usize::MAX / 4, usize::MAX] {
        let err = builder().capacity(capacity).build::<u64>().unwrap_err();
        assert_eq!(err.setting(), "capacity", "{capacity}: {err}");
    }
}

/// Defect 7 (crossbeam-channel's `linearizable` test): a thread that sent
/// an item and then calls `try_recv` must get *an* item, even when the
/// oldest slot belongs to a sender that was preempted mid-send.
#[test]
fn try_recv_is_linearizable() {
    const THREADS: usize = 4;
    let count = scaled(25_000);
    let (tx, rx) = bounded::<usize>(THREADS);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for i in 0..count {
                    tx.send(i).unwrap();
                    rx.try_recv()
                        .expect("an item is queued: this thread sent one");
                }
            });
        }
    });
    assert!(rx.is_empty());
}

/// Defect 7, deterministically: a stalled sender at the head slot with a
/// later item published. `try_recv` waits for the stalled sender rather
/// than answer Empty; with nothing published behind it, Empty is right.
#[test]
fn try_recv_waits_for_a_stalled_sender_only_when_an_item_is_behind_it() {
    let (tx, rx) = bounded::<u32>(4);
    let (resume, sender) = {
        let tx = tx.clone();
        stalled(move || tx.send(1))
    };
    // Only the stalled send is in the channel: it has not returned, so
    // "empty" is a correct answer.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send(2).unwrap();
    let receiver = {
        let rx = rx.clone();
        thread::spawn(move || rx.try_recv())
    };
    resume.send(()).unwrap();
    assert_eq!(sender.join().unwrap(), Ok(()));
    assert_eq!(receiver.join().unwrap(), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
}

/// Defect 8: items whose `Drop` panics, dropped with the last receiver (or
/// the ring), must not abort the process: every item is dropped once and
/// the first panic comes out.
#[test]
fn panicking_item_drops_do_not_abort() {
    struct Bomb(Arc<AtomicUsize>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
            panic!("bomb");
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded::<Bomb>(4);
    for _ in 0..3 {
        tx.send(Bomb(Arc::clone(&drops))).ok().unwrap();
    }
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(rx)));
    assert!(dropped.is_err(), "the first panic is resumed");
    assert_eq!(drops.load(Ordering::Relaxed), 3, "every item dropped once");
    assert!(tx.is_disconnected());

    let drops = Arc::new(AtomicUsize::new(0));
    let ring = crate::ring::Ring::with_capacity(4).unwrap();
    for _ in 0..3 {
        ring.try_push(Bomb(Arc::clone(&drops))).ok().unwrap();
    }
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ring)));
    assert!(dropped.is_err());
    assert_eq!(drops.load(Ordering::Relaxed), 3);
}

/// Channel operations against a model, with peers stalled mid-operation by
/// the ring's stall hook (so defects 3 and 7 of the core-hardening issue
/// stay fixed): every item handed back, evicted or received is checked,
/// and the counters match the model's at the end.
mod stalled_peers_model {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        TrySend(u16),
        ForceSend(u16),
        TryRecv,
        /// A receiver thread claims the oldest item and stops before taking it.
        StallReceiver,
        /// A sender thread claims a slot and stops before publishing.
        StallSender(u16),
        Resume,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u16>().prop_map(Op::TrySend),
            2 => any::<u16>().prop_map(Op::ForceSend),
            3 => Just(Op::TryRecv),
            1 => Just(Op::StallReceiver),
            1 => any::<u16>().prop_map(Op::StallSender),
            1 => Just(Op::Resume),
        ]
    }

    /// A peer stopped at the stall point, and what it must finish with.
    enum Stalled {
        /// With the item it claimed and that item's position.
        Receiver(
            std::sync::mpsc::Sender<()>,
            thread::JoinHandle<Result<u16, TryRecvError>>,
            u16,
            u64,
        ),
        Sender(
            std::sync::mpsc::Sender<()>,
            thread::JoinHandle<Result<(), SendError<u16>>>,
        ),
    }

    struct Run {
        tx: Sender<u16>,
        rx: Receiver<u16>,
        /// (position, item) in the channel, oldest first; a stalled sender's
        /// item is in it (unpublished), a stalled receiver's item is not.
        queue: VecDeque<(u64, u16)>,
        stalled: Option<Stalled>,
        /// Index in `queue` of a stalled sender's item.
        unpublished: Option<usize>,
        /// Next position to push.
        tail: u64,
        cap: usize,
        evicted: u64,
        received: u64,
    }

    impl Run {
        /// Slots in use: the queue plus a stalled receiver's slot.
        fn occupied(&self) -> usize {
            self.queue.len() + usize::from(matches!(self.stalled, Some(Stalled::Receiver(..))))
        }

        /// The next push's slot is the one a stalled receiver still holds
        /// (the ring is FIFO over fixed slots).
        fn tail_on_stalled_slot(&self) -> bool {
            matches!(self.stalled, Some(Stalled::Receiver(_, _, _, pos)) if self.tail == pos + self.cap as u64)
        }

        fn push(&mut self, v: u16) {
            self.queue.push_back((self.tail, v));
            self.tail += 1;
        }

        fn resume(&mut self) {
            match self.stalled.take() {
                Some(Stalled::Receiver(go, handle, item, _)) => {
                    go.send(()).unwrap();
                    assert_eq!(handle.join().unwrap(), Ok(item));
                    self.received += 1;
                }
                Some(Stalled::Sender(go, handle)) => {
                    go.send(()).unwrap();
                    assert_eq!(handle.join().unwrap(), Ok(()));
                    self.unpublished = None;
                }
                None => {}
            }
        }

        fn apply(&mut self, op: Op) {
            match op {
                Op::TrySend(v) => {
                    let result = self.tx.try_send(v);
                    if self.occupied() < self.cap && !self.tail_on_stalled_slot() {
                        assert_eq!(result, Ok(()));
                        self.push(v);
                    } else {
                        // Full, or the next slot still held by a stalled
                        // receiver (documented): the item comes back.
                        assert_eq!(result, Err(TrySendError::Full(v)));
                    }
                }
                Op::ForceSend(v) => {
                    // Where the slot it needs is held mid-operation, force_send
                    // waits for that peer; only this thread could resume it,
                    // so let it finish first.
                    if self.tail_on_stalled_slot()
                        || (self.stalled.is_some() && self.occupied() == self.cap)
                        || self.unpublished.is_some()
                    {
                        self.resume();
                    }
                    let result = self.tx.force_send(v);
                    if self.occupied() < self.cap {
                        assert_eq!(result, Ok(None));
                    } else {
                        let (_, oldest) = self.queue.pop_front().unwrap();
                        assert_eq!(result, Ok(Some(oldest)), "evicts the oldest, never its own");
                        self.evicted += 1;
                    }
                    self.push(v);
                }
                Op::TryRecv => {
                    if self.unpublished == Some(0) && self.queue.len() > 1 {
                        // A later item is published behind the stalled
                        // send: try_recv would (rightly) wait for it.
                        self.resume();
                    }
                    let result = self.rx.try_recv();
                    if self.unpublished == Some(0) {
                        assert_eq!(result, Err(TryRecvError::Empty), "only an unfinished send");
                    } else if let Some((_, front)) = self.queue.pop_front() {
                        assert_eq!(result, Ok(front));
                        self.received += 1;
                        self.unpublished = self.unpublished.map(|i| i - 1);
                    } else {
                        assert_eq!(result, Err(TryRecvError::Empty));
                    }
                }
                Op::StallReceiver => {
                    if self.stalled.is_none() && !self.queue.is_empty() {
                        let rx = self.rx.clone();
                        let (go, handle) = stalled(move || rx.try_recv());
                        let (pos, item) = self.queue.pop_front().unwrap();
                        self.stalled = Some(Stalled::Receiver(go, handle, item, pos));
                    }
                }
                Op::StallSender(v) => {
                    if self.stalled.is_none() && self.queue.len() < self.cap {
                        let tx = self.tx.clone();
                        let (go, handle) = stalled(move || tx.send(v));
                        self.unpublished = Some(self.queue.len());
                        self.push(v);
                        self.stalled = Some(Stalled::Sender(go, handle));
                    }
                }
                Op::Resume => self.resume(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]
        #[test]
        fn channel_with_stalled_peers_matches_the_model(
            cap in 1usize..5,
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let (tx, rx) = bounded_with::<u16>(cap, Overflow::DropOldest);
            let mut run = Run {
                tx, rx, queue: VecDeque::new(), stalled: None, unpublished: None,
                tail: 0, cap, evicted: 0, received: 0,
            };
            for op in ops {
                run.apply(op);
            }
            run.resume();
            let rest: Vec<u16> = run.rx.try_iter().collect();
            prop_assert_eq!(&rest, &run.queue.iter().map(|&(_, v)| v).collect::<Vec<_>>());
            let s = run.rx.stats();
            prop_assert_eq!(s.dropped_oldest, run.evicted);
            prop_assert_eq!(s.received, run.received + rest.len() as u64);
            prop_assert_eq!(s.sent, s.received + s.dropped_oldest);
        }
    }
}
