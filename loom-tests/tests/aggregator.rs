//! Loom models of the aggregator's concurrency paths: add against flush,
//! add against shutdown, flush against flush (a periodic tick that finds its
//! partition busy is skipped), retain-on-full re-merge, and per-core partial
//! folding against `get`.
//!
//! Run with `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests`.
//! Under loom the aggregator has 2 per-core tables (chosen by thread id),
//! 2 shards per table, no flusher threads (flushes are called by the model).
#![cfg(sheaf_loom)]

use std::time::Duration;

use loom::thread;
use loom_tests::model;
use sheaf::merge::Sum;
use sheaf::{AddError, Aggregator, OnFull};

fn sum_output(agg: &Aggregator<u8, u64>) -> u64 {
    agg.receiver().try_iter().map(|(_, v)| v).sum()
}

#[test]
fn add_against_flush_loses_nothing() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_with(Sum)
            .shards(2)
            .output_capacity(4)
            .build()
            .unwrap();
        let adder = {
            let agg = agg.clone();
            thread::spawn(move || {
                agg.add(1, 1).unwrap();
                agg.add(1, 2).unwrap();
            })
        };
        let flushed = agg.flush();
        adder.join().unwrap();
        let flushed = flushed + agg.flush();
        assert!((1..=3).contains(&flushed));
        assert_eq!(sum_output(&agg), 3);
        assert!(agg.is_empty());
    });
}

#[test]
fn add_against_shutdown_is_delivered_or_handed_back() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_with(Sum)
            .shards(2)
            .output_capacity(4)
            .build()
            .unwrap();
        let adder = {
            let agg = agg.clone();
            thread::spawn(move || match agg.add(7, 5) {
                Ok(_) => 0,
                Err(AddError::Closed(7, v)) => v,
                Err(e) => panic!("{e}"),
            })
        };
        let report = agg.shutdown(Duration::from_secs(3600));
        let returned = adder.join().unwrap();
        assert!(report.undelivered.is_empty());
        assert_eq!(sum_output(&agg) + returned, 5);
        // A second shutdown reports nothing more.
        assert_eq!(agg.shutdown(Duration::ZERO).delivered, 0);
    });
}

#[test]
fn concurrent_flushes_deliver_each_entry_once_and_ticks_skip_overlaps() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_with(Sum)
            .per_core(false)
            .shards(1)
            .output_capacity(4)
            .build()
            .unwrap();
        agg.add(1, 1).unwrap();
        agg.add(2, 1).unwrap();
        let ticker = {
            let agg = agg.clone();
            thread::spawn(move || agg.tick())
        };
        let manual = agg.flush();
        let ticked = ticker.join().unwrap();
        assert_eq!(manual + ticked.unwrap_or(0), 2);
        let stats = agg.stats();
        assert_eq!(stats.ticks_run + stats.ticks_skipped, 1);
        assert_eq!(ticked.is_none(), stats.ticks_skipped == 1);
        assert_eq!(sum_output(&agg), 2);
    });
}

#[test]
fn retained_entries_re_merge_with_concurrent_adds() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_with(Sum)
            .per_core(false)
            .shards(1)
            .output_capacity(1)
            .on_full(OnFull::Retain)
            .build()
            .unwrap();
        agg.add(1, 1).unwrap();
        agg.add(2, 10).unwrap();
        let adder = {
            let agg = agg.clone();
            thread::spawn(move || {
                agg.add(1, 100).unwrap();
                agg.add(2, 1000).unwrap();
            })
        };
        // Room for one: the other entry is retained (re-merged) mid-flush.
        let flushed = agg.flush();
        adder.join().unwrap();
        assert_eq!(flushed, 1);
        assert!(agg.stats().retained >= 1);
        let rx = agg.receiver();
        let mut total = 0;
        loop {
            while let Ok((_, v)) = rx.try_recv() {
                total += v;
            }
            if agg.is_empty() {
                break;
            }
            agg.flush();
        }
        assert_eq!(total, 1111);
    });
}

#[test]
fn per_core_partials_fold_consistently_for_get() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_with(Sum)
            .shards(1)
            .build()
            .unwrap();
        assert_eq!(agg.partial_tables(), 2);
        let adders: Vec<_> = (0..2)
            .map(|_| {
                let agg = agg.clone();
                thread::spawn(move || agg.add(9, 1).unwrap())
            })
            .collect();
        let seen = agg.get(&9).unwrap_or(0);
        assert!(seen <= 2);
        for a in adders {
            a.join().unwrap();
        }
        assert_eq!(agg.get(&9), Some(2));
        assert_eq!(agg.snapshot(), vec![(9, 2)]);
        assert_eq!(agg.flush(), 1);
    });
}

/// A closure declared commutative gets the per-core path: `add_ref` from
/// two threads into two partials against a flush loses nothing and folds
/// with the closure.
#[test]
fn commutative_closure_add_ref_against_flush_loses_nothing() {
    model(|| {
        let agg = Aggregator::<u8, u64>::builder()
            .merge_commutative(|held, added| *held += added)
            .shards(1)
            .output_capacity(4)
            .build()
            .unwrap();
        assert_eq!(agg.partial_tables(), 2);
        let adder = {
            let agg = agg.clone();
            thread::spawn(move || {
                agg.add_ref(&5, 1).unwrap();
            })
        };
        agg.add_ref(&5, 2).unwrap();
        let flushed = agg.flush();
        adder.join().unwrap();
        let flushed = flushed + agg.flush();
        assert!((1..=2).contains(&flushed));
        assert_eq!(sum_output(&agg), 3);
        assert!(agg.is_empty());
    });
}
