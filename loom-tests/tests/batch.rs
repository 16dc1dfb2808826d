//! Loom models of the group batcher: an add racing a seal of the same
//! group (by flush, and by a deadline pass), and an add racing shutdown.
//! In every interleaving each accepted item is in exactly one batch, items
//! of a batch are in add order, and a refused item comes back.
//!
//! Run with `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests --test batch`.
//! Under loom the batcher has 2 shards and no driver threads: the model
//! runs the deadline passes itself (`tick`).
#![cfg(sheaf_loom)]

use std::convert::Infallible;
use std::time::Duration;

use loom::thread;
use loom_tests::model;
use sheaf::batch::{AddError, Batch, GroupBatcher, GroupBatcherBuilder};
use sheaf::clock::ManualClock;

type Batcher = GroupBatcher<u8, u8, Vec<u8>>;

fn builder(clock: &ManualClock) -> GroupBatcherBuilder<u8, u8, Vec<u8>> {
    Batcher::builder()
        .clock(clock.clone())
        .manual_ticks()
        .output_capacity(8)
        .aggregate(|_, items: &mut Vec<u8>| Ok::<_, Infallible>(Some(std::mem::take(items))))
}

/// Every item of every batch, checking each batch is in add order.
fn items_of(batches: impl IntoIterator<Item = Batch<u8, Vec<u8>>>) -> Vec<u8> {
    let mut all = Vec::new();
    for batch in batches {
        assert!(
            batch.output.windows(2).all(|w| w[0] < w[1]),
            "{:?}",
            batch.output
        );
        assert_eq!(batch.items, batch.output.len());
        all.extend(batch.output);
    }
    all.sort_unstable();
    all
}

#[test]
fn add_racing_a_flush_of_the_same_group() {
    model(|| {
        let clock = ManualClock::new();
        let b = builder(&clock).max_items(3).build().unwrap();
        b.add(1, 0).unwrap();
        let adder = {
            let b = b.clone();
            thread::spawn(move || {
                b.add(1, 1).unwrap();
            })
        };
        b.flush(&1);
        adder.join().unwrap();
        b.tick();
        let report = b.shutdown(Duration::from_secs(1));
        assert!(report.undelivered.is_empty());
        assert_eq!(items_of(b.receiver().try_iter()), [0, 1]);
    });
}

#[test]
fn add_racing_a_deadline_seal_of_the_same_group() {
    model(|| {
        let clock = ManualClock::new();
        let b = builder(&clock)
            .grace(Duration::from_millis(1))
            .build()
            .unwrap();
        b.add(1, 0).unwrap();
        clock.advance(Duration::from_millis(1));
        let adder = {
            let b = b.clone();
            thread::spawn(move || {
                b.add(1, 1).unwrap();
                b.add(1, 2).unwrap();
            })
        };
        b.tick(); // seals the group unless an add reset its grace first
        adder.join().unwrap();
        let sealed_by_tick = b.stats().sealed.grace;
        let report = b.shutdown(Duration::from_secs(1));
        assert!(report.undelivered.is_empty());
        let batches: Vec<_> = b.receiver().try_iter().collect();
        assert_eq!(batches.len() as u64, 1 + sealed_by_tick);
        assert_eq!(items_of(batches), [0, 1, 2]);
    });
}

#[test]
fn add_racing_shutdown_is_delivered_or_handed_back() {
    model(|| {
        let clock = ManualClock::new();
        let b = builder(&clock)
            .grace(Duration::from_millis(5))
            .build()
            .unwrap();
        b.add(2, 0).unwrap();
        let adder = {
            let b = b.clone();
            thread::spawn(move || match b.add(2, 1) {
                Ok(_) => true,
                Err(AddError::Closed(2, 1)) => false,
                Err(other) => panic!("unexpected {other:?}"),
            })
        };
        let report = b.shutdown(Duration::from_secs(1));
        let accepted = adder.join().unwrap();
        let mut batches: Vec<_> = b.receiver().try_iter().collect();
        batches.extend(report.undelivered);
        let expected: &[u8] = if accepted { &[0, 1] } else { &[0] };
        assert_eq!(items_of(batches), expected);
        assert_eq!(b.stats().refused_closed, u64::from(!accepted));
    });
}
