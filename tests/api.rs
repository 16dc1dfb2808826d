//! The crate as its users see it: only public items, through `sheaf::...`
//! paths (the unit tests beside each module see the internals).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sheaf::channel::{self, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use sheaf::clock::{deadline_after, Clock, ManualClock, MonotonicClock, QuantaClock};
use sheaf::merge::Sum;
use sheaf::ring::Ring;
use sheaf::{AddError, Aggregator, ConfigError, OnFull, Overflow, ShardedTable, Upsert};

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<channel::Sender<String>>();
    send_sync::<channel::Receiver<String>>();
    send_sync::<Ring<String>>();
    send_sync::<ShardedTable<String, u64>>();
    send_sync::<Aggregator<String, u64>>();
    send_sync::<ManualClock>();
    send_sync::<MonotonicClock>();
    send_sync::<QuantaClock>();
    send_sync::<ConfigError>();
}

#[test]
fn channel_policies_account_for_every_item() {
    for overflow in [
        Overflow::Block,
        Overflow::BlockTimeout(Duration::MAX),
        Overflow::DropNewest,
        Overflow::DropOldest,
        Overflow::Reject,
    ] {
        let (tx, rx) = channel::builder()
            .capacity(2)
            .overflow(overflow.clone())
            .build::<u32>()
            .unwrap();
        let mut handed_back = 0;
        let sends = if overflow.may_wait() { 2 } else { 5 };
        for i in 0..sends {
            if let Err(SendError(_)) = tx.send(i) {
                handed_back += 1;
            }
        }
        let got: Vec<u32> = rx.try_iter().collect();
        let s = rx.stats();
        assert_eq!(
            got.len() as u64 + s.dropped_newest + s.dropped_oldest + handed_back,
            u64::from(sends),
            "{overflow:?}"
        );
        assert_eq!(s.received, got.len() as u64);
    }
}

#[test]
fn channel_errors_hand_items_back() {
    let (tx, rx) = channel::bounded::<String>(1);
    tx.send("a".into()).unwrap();
    assert_eq!(tx.try_send("b".into()), Err(TrySendError::Full("b".into())));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Ok("a".to_string())
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1)),
        Err(RecvTimeoutError::Timeout)
    );
    drop(rx);
    assert_eq!(tx.send("c".into()), Err(SendError("c".into())));
    let (tx, rx) = channel::bounded::<u8>(1);
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn ring_force_push_distinguishes_eviction_from_refusal() {
    let ring = Ring::with_capacity(2).unwrap();
    assert_eq!(ring.force_push(1), Ok(None));
    assert_eq!(ring.force_push(2), Ok(None));
    assert_eq!(ring.force_push(3), Ok(Some(1)));
    assert_eq!(ring.try_pop(), Some(2));
    assert_eq!(ring.try_pop(), Some(3));
    assert!(ring.close());
    assert_eq!(ring.force_push(4), Err(4));
}

#[test]
fn table_upserts_from_threads_sum_exactly() {
    let table = Arc::new(ShardedTable::<u64, u64>::new());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                for i in 0..10_000u64 {
                    table.upsert(i % 100, 1, |a, b| *a += b);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let drained: HashMap<u64, u64> = table.drain().collect();
    assert_eq!(drained.len(), 100);
    assert!(drained.values().all(|&v| v == 400));
    assert!(table.is_empty());
}

#[test]
fn aggregator_end_to_end_with_every_policy() {
    for on_full in [
        OnFull::Retain,
        OnFull::Block,
        OnFull::DropNewest,
        OnFull::DropOldest,
    ] {
        let agg = Aggregator::<String, u64>::builder()
            .merge_with(Sum)
            // One table: under per-core combining a key takes an entry per
            // core it was added on, so which keys the cap refuses would
            // depend on where the scheduler ran this thread.
            .per_core(false)
            .output_capacity(1_000)
            .on_full(on_full)
            .max_keys(10)
            .build()
            .unwrap();
        for i in 0..1_000u64 {
            match agg.add(format!("k{}", i % 12), 1) {
                Ok(Upsert::Inserted | Upsert::Merged) => {}
                Err(AddError::Full(key, 1)) => assert!(key == "k10" || key == "k11"),
                Err(other) => panic!("{other:?}"),
            }
        }
        let report = agg.shutdown(Duration::MAX);
        let total: u64 = agg.receiver().iter().map(|(_, n)| n).sum();
        assert!(report.undelivered.is_empty());
        assert_eq!(total + agg.stats().refused_full, 1_000, "{on_full:?}");
        assert!(matches!(
            agg.add("late".into(), 1),
            Err(AddError::Closed(_, 1))
        ));
    }
}

#[test]
fn manual_clock_drives_deadlines() {
    let clock = ManualClock::new();
    let start = clock.now();
    let deadline = deadline_after(start, Duration::from_secs(5)).unwrap();
    clock.advance(Duration::from_secs(4));
    assert!(clock.now() < deadline);
    clock.advance(Duration::from_secs(1));
    assert_eq!(clock.now(), deadline);
    assert_eq!(deadline_after(start, Duration::MAX), None);
}

#[test]
fn config_errors_name_the_setting() {
    let cases: [(&str, ConfigError); 4] = [
        (
            "capacity",
            channel::builder().capacity(0).build::<u8>().unwrap_err(),
        ),
        ("capacity", Ring::<u8>::with_capacity(0).unwrap_err()),
        (
            "shards",
            ShardedTable::<u8, u8>::builder()
                .shards(3)
                .build()
                .unwrap_err(),
        ),
        (
            "merge",
            Aggregator::<u8, u8>::builder().build().unwrap_err(),
        ),
    ];
    for (setting, err) in cases {
        assert_eq!(err.setting(), setting, "{err}");
        assert!(!err.to_string().is_empty());
    }
}
