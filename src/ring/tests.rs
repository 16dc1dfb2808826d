use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use super::raw::{stall, SlotMap};
use super::{Ring, SlotLayout};

const LAYOUTS: [SlotLayout; 3] = [SlotLayout::Packed, SlotLayout::Padded, SlotLayout::Spread];

fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 200).max(8)
    } else {
        n
    }
}

#[test]
fn capacity_is_exact_and_validated() {
    for layout in LAYOUTS {
        assert!(Ring::<u8>::with_layout(0, layout).is_err());
        assert!(Ring::<u8>::with_layout(usize::MAX / 2, layout).is_err());
        let caps: &[usize] = if cfg!(miri) {
            &[1, 2, 3, 5, 8, 64]
        } else {
            &[1, 2, 3, 5, 8, 1000, 1024]
        };
        for &cap in caps {
            let ring = Ring::with_layout(cap, layout).unwrap();
            assert_eq!((ring.capacity(), ring.layout()), (cap, layout));
            for i in 0..cap {
                assert_eq!(ring.try_push(i), Ok(()));
            }
            assert!(ring.is_full());
            assert_eq!(ring.len(), cap);
            assert_eq!(ring.try_push(99), Err(99));
            for i in 0..cap {
                assert_eq!(ring.try_pop(), Some(i));
            }
            assert!(ring.is_empty());
            assert_eq!(ring.try_pop(), None);
        }
    }
    // Padding that would overflow the address space is a config error.
    assert!(Ring::<u8>::with_layout(usize::MAX / 8, SlotLayout::Padded).is_err());
}

/// Every layout maps the indices `0..cap` to distinct slots inside the array.
#[test]
fn slot_maps_are_injective() {
    for layout in LAYOUTS {
        for slot_size in [1usize, 16, 24, 64, 100, 200] {
            let caps: &[usize] = if cfg!(miri) {
                &[1, 2, 3, 4, 7, 8, 9, 63, 64, 65]
            } else {
                &[1, 2, 3, 4, 7, 8, 9, 63, 64, 65, 1000, 1024]
            };
            for &cap in caps {
                let map = SlotMap::new(layout, cap, slot_size).unwrap();
                let mut seen = vec![false; map.slots()];
                for index in 0..cap {
                    let slot = map.slot(index);
                    assert!(
                        !seen[slot],
                        "{layout:?} size {slot_size} cap {cap}: {index} collides"
                    );
                    seen[slot] = true;
                }
            }
        }
    }
    // Spread puts consecutive u64 slots (16 bytes each) on different lines.
    let map = SlotMap::new(SlotLayout::Spread, 1024, 16).unwrap();
    for index in 0..1023 {
        assert_ne!(map.slot(index) / 4, map.slot(index + 1) / 4);
    }
    let map = SlotMap::new(SlotLayout::Padded, 1024, 16).unwrap();
    assert_eq!(map.slot(3), 3 * 8);
}

#[test]
fn wraps_many_laps_in_order_and_counts() {
    for layout in LAYOUTS {
        wraps_many_laps(Ring::with_layout(3, layout).unwrap());
        wraps_many_laps(Ring::with_layout(8, layout).unwrap());
    }
}

fn wraps_many_laps(ring: Ring<usize>) {
    let mut next_out = 0;
    for i in 0..scaled(10_000) {
        ring.try_push(i).unwrap();
        if i % 2 == 1 {
            assert_eq!(ring.try_pop(), Some(next_out));
            assert_eq!(ring.try_pop(), Some(next_out + 1));
            next_out += 2;
        }
    }
    assert_eq!(ring.pushed(), scaled(10_000) as u64);
    assert_eq!(ring.popped(), next_out as u64);
}

#[test]
fn force_push_evicts_oldest_first() {
    for layout in LAYOUTS {
        force_push_evicts_oldest(Ring::with_layout(3, layout).unwrap());
    }
}

fn force_push_evicts_oldest(ring: Ring<usize>) {
    assert_eq!(ring.force_push(1), Ok(None));
    assert_eq!(ring.force_push(2), Ok(None));
    assert_eq!(ring.force_push(3), Ok(None));
    assert_eq!(ring.force_push(4), Ok(Some(1)));
    assert_eq!(ring.force_push(5), Ok(Some(2)));
    assert_eq!(ring.len(), 3);
    let mut out = Vec::new();
    ring.pop_batch(&mut out, 10);
    assert_eq!(out, [3, 4, 5]);
    for i in 0..10 {
        assert_eq!(ring.force_push(i), Ok((i >= 3).then(|| i - 3)));
    }
}

#[test]
fn batches_claim_runs_and_wrap() {
    for layout in LAYOUTS {
        batches_claim_runs(Ring::with_layout(5, layout).unwrap());
    }
}

fn batches_claim_runs(ring: Ring<usize>) {
    assert!(ring.push_batch(vec![0, 1, 2]).is_empty());
    let mut out = Vec::new();
    assert_eq!(ring.pop_batch(&mut out, 2), 2);
    // 3 slots left before the end of the array, 2 after wrapping.
    assert_eq!(ring.push_batch(3..9), vec![7, 8]);
    assert_eq!(ring.len(), 5);
    assert_eq!(ring.pop_batch(&mut out, 100), 5);
    assert_eq!(out, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(ring.pop_batch(&mut out, 100), 0);
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_item_is_dropped_exactly_once() {
    for layout in LAYOUTS {
        every_item_dropped_once(layout);
    }
}

fn every_item_dropped_once(layout: SlotLayout) {
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let ring = Ring::with_layout(4, layout).unwrap();
        for _ in 0..3 {
            ring.try_push(Counted(drops.clone())).ok().unwrap();
        }
        drop(ring.try_pop());
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        for _ in 0..3 {
            drop(ring.force_push(Counted(drops.clone())));
        }
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let rejected = ring.push_batch((0..3).map(|_| Counted(drops.clone())));
        assert_eq!(rejected.len(), 3);
        drop(rejected);
        assert_eq!(drops.load(Ordering::Relaxed), 5);
        // 4 items left in the ring for Drop.
    }
    assert_eq!(drops.load(Ordering::Relaxed), 9);
}

/// A producer stalled between its claim and its publish: `try_pop` reports
/// empty up to that slot (bounded, no waiting on the stall) and the ring
/// recovers in order once the producer runs again.
#[test]
fn stalled_producer_makes_pop_report_empty_not_spin() {
    let ring = Arc::new(Ring::with_capacity(4).unwrap());
    let (claimed_tx, claimed_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let producer = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || {
            stall::HOOK.with(|hook| {
                *hook.borrow_mut() = Some(Box::new(move || {
                    claimed_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }))
            });
            ring.try_push(1).unwrap();
        })
    };
    claimed_rx.recv().unwrap();
    // Another producer publishes behind the stalled one.
    ring.try_push(2).unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.pop_or_status().err(), Some(super::NoSlot::InFlight));
    for _ in 0..3 {
        assert_eq!(ring.try_pop(), None, "the oldest item is not published yet");
    }
    resume_tx.send(()).unwrap();
    producer.join().unwrap();
    assert_eq!(ring.try_pop(), Some(1));
    assert_eq!(ring.try_pop(), Some(2));
}

/// A consumer stalled between its claim and freeing the slot: producers that
/// lap around to that slot get `Err(item)` after a bounded wait.
#[test]
fn stalled_consumer_makes_push_report_full_not_spin() {
    let ring = Arc::new(Ring::with_capacity(2).unwrap());
    ring.try_push(10).unwrap();
    ring.try_push(11).unwrap();
    let (claimed_tx, claimed_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let consumer = {
        let ring = Arc::clone(&ring);
        thread::spawn(move || {
            stall::HOOK.with(|hook| {
                *hook.borrow_mut() = Some(Box::new(move || {
                    claimed_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }))
            });
            ring.try_pop()
        })
    };
    claimed_rx.recv().unwrap();
    // One slot is logically free but still held by the stalled consumer.
    assert_eq!(ring.len(), 1);
    assert_eq!(ring.try_push(12), Err(12));
    // The stalled consumer holds the oldest slot: refused, distinctly (the
    // item comes back as an error, never as an "evicted" item).
    assert_eq!(ring.force_push(13), Err(13));
    assert_eq!(ring.try_pop(), Some(11));
    resume_tx.send(()).unwrap();
    assert_eq!(consumer.join().unwrap(), Some(10));
    assert_eq!(ring.try_push(12), Ok(()));
    assert_eq!(ring.try_pop(), Some(12));
}

#[test]
fn mpmc_every_item_once_and_per_producer_order_at_one_consumer() {
    for layout in LAYOUTS {
        mpmc_every_item_once(layout);
    }
}

fn mpmc_every_item_once(layout: SlotLayout) {
    let producers = 3;
    let per = scaled(20_000);
    let ring = Arc::new(Ring::with_layout(64, layout).unwrap());
    let start = Arc::new(Barrier::new(producers + 1));
    let handles: Vec<_> = (0..producers)
        .map(|p| {
            let (ring, start) = (Arc::clone(&ring), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut i = 0;
                while i < per {
                    // Alternate single and batch pushes.
                    if i % 7 == 0 {
                        let batch: Vec<_> = (i..(i + 5).min(per)).map(|j| (p, j)).collect();
                        let n = batch.len();
                        let rest = ring.push_batch(batch);
                        i += n - rest.len();
                    } else if ring.try_push((p, i)).is_ok() {
                        i += 1;
                    }
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    start.wait();
    let mut next = vec![0usize; producers];
    let mut got = 0;
    let mut out = Vec::new();
    while got < producers * per {
        out.clear();
        if ring.pop_batch(&mut out, 8) == 0 {
            std::hint::spin_loop();
        }
        for &(p, i) in &out {
            assert_eq!(i, next[p], "producer {p} out of order");
            next[p] += 1;
            got += 1;
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(next, vec![per; producers]);
    assert_eq!(ring.try_pop(), None);
}

#[test]
fn mpmc_with_force_push_accounts_for_every_item() {
    for layout in LAYOUTS {
        mpmc_with_force_push(layout);
    }
}

fn mpmc_with_force_push(layout: SlotLayout) {
    let ring = Arc::new(Ring::with_layout(8, layout).unwrap());
    let threads = 2;
    let per = scaled(20_000);
    let popped = Arc::new(AtomicUsize::new(0));
    let evicted = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ring, popped, evicted) =
                (Arc::clone(&ring), Arc::clone(&popped), Arc::clone(&evicted));
            thread::spawn(move || {
                for i in 0..per {
                    let mut item = i;
                    // A refusal (a consumer mid-take holds the oldest slot)
                    // is transient: retry until the item is in.
                    loop {
                        match ring.force_push(item) {
                            Ok(Some(_)) => {
                                evicted.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(None) => break,
                            Err(back) => {
                                item = back;
                                thread::yield_now();
                            }
                        }
                    }
                    if i % 3 == 0 && ring.try_pop().is_some() {
                        popped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let left = ring.len();
    assert_eq!(
        popped.load(Ordering::Relaxed) + evicted.load(Ordering::Relaxed) + left,
        threads * per
    );
}
