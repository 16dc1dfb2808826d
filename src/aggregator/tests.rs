use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::*;
use crate::merge::{Count, Last, Max, Min, Sum};

fn scaled(n: u64) -> u64 {
    if cfg!(miri) {
        (n / 100).max(10)
    } else {
        n
    }
}

fn sum_of(pairs: &[(u64, u64)]) -> u64 {
    pairs.iter().map(|(_, v)| v).sum()
}

#[test]
fn config_errors_say_what_to_change() {
    let no_merge = Aggregator::<u64, u64>::builder().build().unwrap_err();
    assert_eq!(no_merge.setting(), "merge");
    let cases = [
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .output_capacity(0)
                .build()
                .unwrap_err(),
            "output_capacity",
        ),
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .max_keys(0)
                .build()
                .unwrap_err(),
            "max_keys",
        ),
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .flush_every(Duration::ZERO)
                .build()
                .unwrap_err(),
            "flush_every",
        ),
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .flush_threads(0)
                .build()
                .unwrap_err(),
            "flush_threads",
        ),
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .shards(4)
                .flush_threads(5)
                .build()
                .unwrap_err(),
            "flush_threads",
        ),
        (
            Aggregator::<u64, u64>::builder()
                .merge_with(Sum)
                .shards(3)
                .build()
                .unwrap_err(),
            "shards",
        ),
    ];
    for (err, setting) in cases {
        assert_eq!(err.setting(), setting, "{err}");
    }
}

#[test]
fn ready_merges_and_per_core_default() {
    let sum = Aggregator::<&str, u64>::builder()
        .merge_with(Sum)
        .build()
        .unwrap();
    let min = Aggregator::<&str, i64>::builder()
        .merge_with(Min)
        .build()
        .unwrap();
    let max = Aggregator::<&str, f64>::builder()
        .merge_with(Max)
        .build()
        .unwrap();
    let last = Aggregator::<&str, &str>::builder()
        .merge_with(Last)
        .build()
        .unwrap();
    let count = Aggregator::<&str, u64>::builder()
        .merge_with(Count)
        .build()
        .unwrap();
    for (i, v) in [5i64, -3, 9].into_iter().enumerate() {
        sum.add("k", v as u64 & 0xff).unwrap();
        min.add("k", v).unwrap();
        max.add("k", v as f64).unwrap();
        last.add("k", ["a", "b", "c"][i]).unwrap();
        count.add("k", 1000).unwrap();
    }
    assert_eq!(sum.get("k"), Some(5 + 253 + 9));
    assert_eq!(min.get("k"), Some(-3));
    assert_eq!(max.get("k"), Some(9.0));
    assert_eq!(last.get("k"), Some("c"));
    assert_eq!(count.get("k"), Some(3));
    assert_eq!(
        last.partial_tables(),
        1,
        "Last is not commutative: one table"
    );
    let closure = Aggregator::<&str, u64>::builder()
        .merge(|a, b| *a += b)
        .build()
        .unwrap();
    assert_eq!(closure.partial_tables(), 1);
    let forced = Aggregator::<&str, u64>::builder()
        .merge(|a, b| *a += b)
        .per_core(true)
        .build()
        .unwrap();
    assert_eq!(forced.partial_tables(), sum.partial_tables());
}

#[test]
fn add_reports_insert_and_merge_and_stats_count() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .per_core(false)
        .build()
        .unwrap();
    assert_eq!(agg.add(1, 1).unwrap(), Upsert::Inserted);
    assert_eq!(agg.add(1, 1).unwrap(), Upsert::Merged);
    assert_eq!(agg.add(2, 1).unwrap(), Upsert::Inserted);
    let s = agg.stats();
    assert_eq!((s.added, s.inserted, s.merged, s.entries), (3, 2, 1, 2));
    assert_eq!(agg.flush(), 2);
    let s = agg.stats();
    assert_eq!((s.flushed, s.flushes, s.entries, s.queued), (2, 1, 0, 2));
    let mut got: Vec<_> = agg.receiver().try_iter().collect();
    got.sort_unstable();
    assert_eq!(got, [(1, 2), (2, 1)]);
}

#[test]
fn per_core_partials_fold_on_get_snapshot_and_flush() {
    let agg = Aggregator::<String, u64>::builder()
        .merge_with(Sum)
        .build()
        .unwrap();
    let threads = 4;
    let per = scaled(10_000);
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (agg, start) = (agg.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..per {
                    agg.add(format!("metric.{}", i % 5), 1).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let expected = threads as u64 * per / 5;
    assert_eq!(agg.get("metric.3"), Some(expected));
    let mut snap = agg.snapshot();
    snap.sort();
    assert_eq!(
        snap,
        (0..5)
            .map(|k| (format!("metric.{k}"), expected))
            .collect::<Vec<_>>()
    );
    assert_eq!(agg.stats().added, threads as u64 * per);
    assert_eq!(agg.flush(), 5);
    let mut flushed: Vec<_> = agg.receiver().try_iter().collect();
    flushed.sort();
    assert_eq!(flushed, snap);
}

/// The seed's zero-loss promise: output of capacity 1, a slow consumer,
/// periodic flushes; every unit added arrives, exactly.
#[test]
fn retain_with_output_capacity_one_and_a_slow_consumer_delivers_exact_totals() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .output_capacity(1)
        .flush_every(Duration::from_millis(1))
        .build()
        .unwrap();
    let rx = agg.receiver();
    let consumer = thread::spawn(move || {
        let mut per_key: HashMap<u64, u64> = HashMap::new();
        for (k, v) in rx.iter() {
            *per_key.entry(k).or_default() += v;
            thread::sleep(Duration::from_micros(50));
        }
        per_key
    });
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let agg = agg.clone();
            thread::spawn(move || {
                for i in 0..scaled(20_000) {
                    agg.add((i + p) % 50, 1).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let report = agg.shutdown(Duration::from_secs(30));
    assert!(
        report.undelivered.is_empty(),
        "a consumer is reading: everything fits by the deadline"
    );
    let per_key = consumer.join().unwrap();
    let total: u64 = per_key.values().sum();
    assert_eq!(total, 3 * scaled(20_000));
    assert_eq!(per_key.len(), 50);
    // (Whether a periodic flush found the output full depends on how the
    // threads were scheduled, so `retained` is not asserted here; the
    // deterministic retain tests are `every_policy_accounts_for_every_entry`
    // and `retain_path_counts_exactly`.)
    let s = agg.stats();
    assert_eq!(report.delivered, s.flushed);
    assert_eq!(report.dropped, 0);
}

/// For every policy: delivered + dropped + undelivered = what was added.
#[test]
fn every_policy_accounts_for_every_entry() {
    for policy in [
        OnFull::Retain,
        OnFull::Block,
        OnFull::DropNewest,
        OnFull::DropOldest,
    ] {
        let agg = Aggregator::<u64, u64>::builder()
            .merge_with(Sum)
            .output_capacity(4)
            .on_full(policy)
            .build()
            .unwrap();
        let n = 100u64;
        for k in 0..n {
            agg.add(k, k).unwrap();
        }
        if policy != OnFull::Block {
            // Nobody reads: the output fills after 4.
            agg.flush();
        }
        let report = agg.shutdown(Duration::from_millis(20));
        let received: Vec<(u64, u64)> = agg.receiver().iter().collect();
        assert_eq!(received.len() as u64, report.delivered, "{policy:?}");
        assert_eq!(
            received.len() as u64 + report.dropped + report.undelivered.len() as u64,
            n,
            "{policy:?}"
        );
        let s = agg.stats();
        match policy {
            OnFull::Retain | OnFull::Block => {
                assert_eq!(report.dropped, 0);
                assert!(report.timed_out);
                // Values too: nothing lost.
                assert_eq!(
                    sum_of(&received) + sum_of(&report.undelivered),
                    (0..n).sum::<u64>()
                );
            }
            OnFull::DropNewest => assert_eq!(s.dropped_newest, n - 4),
            OnFull::DropOldest => {
                assert_eq!(s.dropped_oldest, n - 4);
                assert!(report.undelivered.is_empty());
            }
        }
    }
}

#[test]
fn shutdown_while_producers_run_loses_nothing() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .output_capacity(64)
        .flush_every(Duration::from_millis(2))
        .build()
        .unwrap();
    let rx = agg.receiver();
    let consumer = thread::spawn(move || rx.iter().map(|(_, v)| v).sum::<u64>());
    let accepted = Arc::new(AtomicU64::new(0));
    let returned = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..3u64)
        .map(|p| {
            let (agg, accepted, returned) =
                (agg.clone(), Arc::clone(&accepted), Arc::clone(&returned));
            thread::spawn(move || {
                let mut i = 0u64;
                loop {
                    match agg.add((i * 3 + p) % 1000, 1) {
                        Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(AddError::Closed(_, v)) => {
                            returned.fetch_add(v, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(30));
    let report = agg.shutdown(Duration::from_secs(30));
    for p in producers {
        p.join().unwrap();
    }
    let received = consumer.join().unwrap();
    assert!(report.undelivered.is_empty());
    assert_eq!(received, accepted.load(Ordering::Relaxed));
    assert_eq!(returned.load(Ordering::Relaxed), 3);
    assert_eq!(agg.stats().refused_closed, 3);
}

#[test]
fn shutdown_without_a_consumer_returns_by_its_deadline_and_is_idempotent() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .output_capacity(2)
        .on_full(OnFull::Block)
        .flush_every(Duration::from_millis(1))
        .build()
        .unwrap();
    for k in 0..10 {
        agg.add(k, 1).unwrap();
    }
    // The flusher blocks on the full output; shutdown must still return.
    thread::sleep(Duration::from_millis(10));
    let report = agg.shutdown(Duration::from_millis(50));
    assert!(report.timed_out);
    assert_eq!(report.delivered, 2);
    assert_eq!(report.undelivered.len(), 8);
    let again = agg.shutdown(Duration::from_secs(1));
    assert_eq!(
        (again.delivered, again.dropped, again.undelivered.len()),
        (0, 0, 0)
    );
    match agg.add(99, 7) {
        Err(AddError::Closed(99, 7)) => {}
        other => panic!("expected Closed(99, 7), got {other:?}"),
    }
}

#[test]
fn panicking_merge_is_isolated_and_counted() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge(|acc, v| {
            if v == 13 {
                panic!("unlucky value");
            }
            *acc += v;
        })
        .build()
        .unwrap();
    agg.add(1, 1).unwrap();
    agg.add(2, 2).unwrap();
    assert!(matches!(agg.add(1, 13), Err(AddError::MergePanicked)));
    let s = agg.stats();
    assert_eq!((s.merge_panics, s.dropped_merge_panic), (1, 1));
    assert_eq!(agg.last_panic().as_deref(), Some("unlucky value"));
    assert_eq!(
        agg.get(&1),
        None,
        "the entry whose merge panicked is removed"
    );
    assert_eq!(agg.add(1, 5).unwrap(), Upsert::Inserted);
    assert_eq!(agg.get(&1), Some(5));
    assert_eq!(agg.get(&2), Some(2));
    assert_eq!(agg.flush(), 2);
}

#[test]
fn key_cap_refuses_new_keys_and_hands_them_back() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .per_core(false)
        .max_keys(3)
        .build()
        .unwrap();
    for k in 0..3 {
        agg.add(k, 1).unwrap();
    }
    assert!(matches!(agg.add(3, 9), Err(AddError::Full(3, 9))));
    assert_eq!(
        agg.add(0, 1).unwrap(),
        Upsert::Merged,
        "existing keys still merge"
    );
    assert_eq!(agg.stats().refused_full, 1);
    assert_eq!(agg.flush(), 3);
    assert_eq!(
        agg.add(3, 9).unwrap(),
        Upsert::Inserted,
        "a flush frees the cap"
    );
}

#[test]
fn retained_entries_merge_before_newer_adds() {
    let agg = Aggregator::<&str, u32>::builder()
        .merge_with(Last)
        .build()
        .unwrap();
    // A newer value arrived while the older one was out for delivery.
    agg.add("a", 2).unwrap();
    agg.inner.retain("a", 1).unwrap();
    assert_eq!(agg.get("a"), Some(2), "Last keeps the newer value");
    let sum = Aggregator::<&str, u32>::builder()
        .merge_with(Sum)
        .per_core(false)
        .build()
        .unwrap();
    sum.add("a", 2).unwrap();
    sum.inner.retain("a", 1).unwrap();
    assert_eq!(sum.get("a"), Some(3));
    assert_eq!(sum.stats().added, 1, "re-merges are not adds");
}

#[test]
fn dropping_the_last_handle_shuts_down_and_ends_the_output() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .flush_every(Duration::from_millis(5))
        .build()
        .unwrap();
    let rx = agg.receiver();
    let clone = agg.clone();
    agg.add(1, 1).unwrap();
    drop(agg);
    clone.add(1, 1).unwrap();
    drop(clone);
    let got: Vec<_> = rx.iter().collect();
    assert_eq!(got, [(1, 2)]);
}

#[test]
fn periodic_ticks_run_and_flush_in_background() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .flush_every(Duration::from_millis(1))
        .flush_threads(2)
        .pin(true)
        .build()
        .unwrap();
    let rx = agg.receiver();
    for k in 0..100 {
        agg.add(k, 1).unwrap();
    }
    let mut got = 0;
    while got < 100 {
        got += rx
            .recv_timeout(Duration::from_secs(10))
            .map(|_| 1)
            .expect("the flushers deliver");
    }
    let s = agg.stats();
    assert!(s.ticks_run > 0);
    assert_eq!(s.flushed, 100);
    drop(agg.shutdown(Duration::from_secs(1)));
}

#[test]
fn stop_flag_is_seen_by_flushers_quickly_enough_to_join() {
    // Many flusher threads with a long period: shutdown wakes and joins them all.
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .flush_every(Duration::from_secs(3600))
        .flush_threads(4)
        .shards(8)
        .build()
        .unwrap();
    agg.add(1, 1).unwrap();
    let report = agg.shutdown(Duration::from_secs(1));
    assert_eq!(report.delivered, 1);
}

// ---- Regression tests for the core-hardening issue (#10, defect 2) ----

/// A key whose `Hash` or `Eq` panics while its fuse is lit (for keys
/// `id % 10 == 3`), to drive user-code panics into every path.
#[derive(Clone, Debug)]
struct Touchy {
    id: u64,
    hash_fuse: Arc<std::sync::atomic::AtomicBool>,
    eq_fuse: Arc<std::sync::atomic::AtomicBool>,
    flusher_fuse: Arc<std::sync::atomic::AtomicBool>,
}

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if self.id % 10 == 3 && self.hash_fuse.load(Ordering::Relaxed) {
            panic!("Hash of key {}", self.id);
        }
        let on_flusher = thread::current()
            .name()
            .is_some_and(|n| n.starts_with("sheaf-flush"));
        if self.id % 10 == 3 && on_flusher && self.flusher_fuse.load(Ordering::Relaxed) {
            panic!("Hash of key {} on a flusher", self.id);
        }
        self.id.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if self.id % 10 == 3 && self.eq_fuse.load(Ordering::Relaxed) {
            panic!("Eq of key {}", self.id);
        }
        self.id == other.id
    }
}

impl Eq for Touchy {}

struct Fuses {
    hash: Arc<std::sync::atomic::AtomicBool>,
    eq: Arc<std::sync::atomic::AtomicBool>,
    /// `Hash` panics only on a flusher thread.
    flusher: Arc<std::sync::atomic::AtomicBool>,
}

impl Fuses {
    fn new() -> Self {
        Self {
            hash: Arc::default(),
            eq: Arc::default(),
            flusher: Arc::default(),
        }
    }

    fn key(&self, id: u64) -> Touchy {
        Touchy {
            id,
            hash_fuse: Arc::clone(&self.hash),
            eq_fuse: Arc::clone(&self.eq),
            flusher_fuse: Arc::clone(&self.flusher),
        }
    }
}

/// A `Hash` panic while the flush folds per-core partials used to unwind
/// out of the flush, dropping the shard storage it had taken and the fold
/// map (values vanished uncounted). Now each panicking pair is counted and
/// every other pair is delivered.
#[test]
fn hash_panic_in_the_fold_loses_nothing_uncounted() {
    let fuses = Fuses::new();
    let agg = Aggregator::<Touchy, u64>::builder()
        .merge_with(Sum)
        .per_core(true)
        .max_keys(1_000)
        .build()
        .unwrap();
    let rx = agg.receiver();
    for id in 0..200 {
        agg.add(fuses.key(id), 1).unwrap();
    }
    fuses.hash.store(true, Ordering::Relaxed);
    let delivered = agg.flush();
    fuses.hash.store(false, Ordering::Relaxed);
    let got: Vec<(Touchy, u64)> = rx.try_iter().collect();
    let s = agg.stats();
    assert_eq!(got.len(), delivered);
    assert_eq!(got.len() as u64 + s.dropped_merge_panic, 200, "{s:?}");
    if agg.partial_tables() > 1 {
        // The fold hashes every pair: exactly the 20 keys ending in 3 panic.
        assert_eq!((s.dropped_merge_panic, s.merge_panics), (20, 20));
        assert!(got.iter().all(|(k, v)| k.id % 10 != 3 && *v == 1));
    }
    // The key count came back down: 1,000 new keys fit under the cap.
    for id in 1_000..2_000 {
        agg.add(fuses.key(id), 1).unwrap();
    }
    let report = agg.shutdown(Duration::from_secs(10));
    assert_eq!(report.undelivered.len(), 0);
    assert_eq!(rx.try_iter().count(), 1_000);
}

/// A `Hash` or `Eq` panic in `add` used to be taken for a merge panic and
/// decrement the key count (wrapping it to usize::MAX under a cap of 2, so
/// every later new key was refused, or letting keys past the cap).
#[test]
fn hash_and_eq_panics_in_add_keep_the_key_count_exact() {
    let fuses = Fuses::new();
    let agg = Aggregator::<Touchy, u64>::builder()
        .merge(|a: &mut u64, b| *a += b)
        .max_keys(2)
        .build()
        .unwrap();
    fuses.hash.store(true, Ordering::Relaxed);
    assert!(matches!(
        agg.add(fuses.key(3), 1),
        Err(AddError::MergePanicked)
    ));
    fuses.hash.store(false, Ordering::Relaxed);
    assert_eq!(agg.add(fuses.key(13), 1).unwrap(), Upsert::Inserted);
    // An Eq panic while probing for a present key: the table is unchanged.
    fuses.eq.store(true, Ordering::Relaxed);
    assert!(matches!(
        agg.add(fuses.key(13), 1),
        Err(AddError::MergePanicked)
    ));
    fuses.eq.store(false, Ordering::Relaxed);
    assert_eq!(agg.add(fuses.key(1), 1).unwrap(), Upsert::Inserted);
    assert!(matches!(agg.add(fuses.key(2), 1), Err(AddError::Full(..))));
    let s = agg.stats();
    assert_eq!(
        (s.merge_panics, s.dropped_merge_panic, s.refused_full),
        (2, 2, 1)
    );
    let report = agg.shutdown(Duration::from_secs(10));
    let mut got: Vec<(u64, u64)> = agg.receiver().try_iter().map(|(k, v)| (k.id, v)).collect();
    got.sort_unstable();
    assert_eq!(got, [(1, 1), (13, 1)]);
    assert_eq!(report.delivered, 2);
}

/// A panic in user code on a flusher thread must not end periodic flushing.
#[test]
fn flusher_survives_a_hash_panic() {
    let fuses = Fuses::new();
    let agg = Aggregator::<Touchy, u64>::builder()
        .merge_with(Sum)
        .per_core(true)
        .flush_every(Duration::from_millis(1))
        .build()
        .unwrap();
    let rx = agg.receiver();
    fuses.hash.store(true, Ordering::Relaxed);
    let multi = agg.partial_tables() > 1;
    // Key 3's Hash panics in `add` itself here: counted, nothing held.
    assert!(agg.add(fuses.key(3), 1).is_err());
    fuses.hash.store(false, Ordering::Relaxed);
    if multi {
        // Key 13's Hash panics on the flusher thread only: the periodic
        // fold of per-core partials hits it. Wait for that state.
        fuses.flusher.store(true, Ordering::Relaxed);
        agg.add(fuses.key(13), 1).unwrap();
        while agg.stats().merge_panics < 2 {
            thread::sleep(Duration::from_millis(1));
        }
        fuses.flusher.store(false, Ordering::Relaxed);
    } else {
        agg.add(fuses.key(13), 1).unwrap();
    }
    agg.add(fuses.key(100), 7).unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&100) {
        let (k, _) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the flusher is still running");
        seen.push(k.id);
    }
    let s = agg.stats();
    assert_eq!(s.flushed + s.dropped_merge_panic, 3, "{s:?}");
    drop(agg.shutdown(Duration::from_secs(10)));
}

/// Defect 5: `Duration::MAX` is "forever", never a panic, in the flush
/// period and the shutdown deadline.
#[test]
fn duration_max_never_panics() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .flush_every(Duration::MAX)
        .build()
        .unwrap();
    agg.add(1, 2).unwrap();
    let report = agg.shutdown(Duration::MAX);
    assert_eq!(report.delivered, 1);
    assert_eq!(agg.receiver().try_iter().collect::<Vec<_>>(), [(1, 2)]);
}

/// Retain, deterministically: an output of one and nobody reading.
#[test]
fn retain_path_counts_exactly() {
    let agg = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .per_core(false)
        .output_capacity(1)
        .build()
        .unwrap();
    for k in 0..3 {
        agg.add(k, 10).unwrap();
    }
    assert_eq!(agg.flush(), 1);
    let s = agg.stats();
    assert_eq!((s.flushed, s.retained, s.entries, s.queued), (1, 2, 2, 1));
    // Added since the flush: merged after the retained value.
    agg.add(0, 1).unwrap();
    agg.add(1, 1).unwrap();
    agg.add(2, 1).unwrap();
    let report = agg.shutdown(Duration::from_millis(1));
    let received: Vec<(u64, u64)> = agg.receiver().try_iter().collect();
    let mut all: Vec<(u64, u64)> = received.into_iter().chain(report.undelivered).collect();
    all.sort_unstable();
    // One key was delivered at 10 and got 1 more after: two entries for it.
    assert_eq!(all.iter().map(|(_, v)| v).sum::<u64>(), 33);
    assert_eq!(all.len(), 4);
}

/// A closure declared commutative gets per-core combining and gives
/// exactly the totals of the built-in `Sum`, adds spread over threads.
#[test]
fn declared_commutative_closure_matches_built_in_sum_exactly() {
    let threads = 4u64;
    let per_thread = scaled(20_000);
    let keys = 37u64;
    let closure = Aggregator::<u64, u64>::builder()
        .merge_commutative(|held, added| *held += added)
        .build()
        .unwrap();
    let built_in = Aggregator::<u64, u64>::builder()
        .merge_with(Sum)
        .build()
        .unwrap();
    assert_eq!(closure.partial_tables(), built_in.partial_tables());
    let order_sensitive = Aggregator::<u64, u64>::builder()
        .merge(|held, added| *held += added)
        .build()
        .unwrap();
    assert_eq!(order_sensitive.partial_tables(), 1);
    let barrier = Barrier::new(threads as usize);
    thread::scope(|s| {
        for t in 0..threads {
            let (closure, built_in, barrier) = (&closure, &built_in, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let key = (i * 7 + t) % keys;
                    let value = i % 5 + t;
                    closure.add(key, value).unwrap();
                    built_in.add(key, value).unwrap();
                }
            });
        }
    });
    let mut from_closure = closure.snapshot();
    let mut from_sum = built_in.snapshot();
    from_closure.sort_unstable();
    from_sum.sort_unstable();
    assert_eq!(from_closure.len() as u64, keys);
    assert_eq!(from_closure, from_sum);
    for key in 0..keys {
        assert_eq!(closure.get(&key), built_in.get(&key));
    }
    let expected: u64 = (0..threads)
        .map(|t| (0..per_thread).map(|i| i % 5 + t).sum::<u64>())
        .sum();
    assert_eq!(sum_of(&from_closure), expected);
    // And at flush: the same pairs reach the output.
    assert_eq!(closure.flush(), keys as usize);
    assert_eq!(built_in.flush(), keys as usize);
    let mut flushed_closure: Vec<_> = closure.receiver().try_iter().collect();
    let mut flushed_sum: Vec<_> = built_in.receiver().try_iter().collect();
    flushed_closure.sort_unstable();
    flushed_sum.sort_unstable();
    assert_eq!(flushed_closure, flushed_sum);
    assert_eq!(flushed_closure, from_sum);
    assert_eq!(closure.stats().added, threads * per_thread);
}

#[test]
fn add_ref_clones_a_key_only_when_it_is_new() {
    use std::sync::atomic::AtomicUsize;
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct Key(u64);
    impl Clone for Key {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::Relaxed);
            Key(self.0)
        }
    }
    let agg = Aggregator::<Key, u64>::builder()
        .merge(|held, added| *held += added)
        .max_keys(2)
        .build()
        .unwrap();
    let (a, b, c) = (Key(1), Key(2), Key(3));
    assert_eq!(agg.add_ref(&a, 1).unwrap(), Upsert::Inserted);
    assert_eq!(CLONES.load(Ordering::Relaxed), 1);
    for _ in 0..100 {
        assert_eq!(agg.add_ref(&a, 1).unwrap(), Upsert::Merged);
    }
    assert_eq!(CLONES.load(Ordering::Relaxed), 1);
    agg.add_ref(&b, 5).unwrap();
    // At the cap the key is refused and handed back (as a clone).
    match agg.add_ref(&c, 7) {
        Err(AddError::Full(k, v)) => assert_eq!((k, v), (Key(3), 7)),
        other => panic!("{other:?}"),
    }
    assert_eq!(agg.get(&a), Some(101));
    assert_eq!(agg.stats().added, 102);
    assert_eq!(agg.stats().refused_full, 1);
    let report = agg.shutdown(Duration::from_secs(1));
    assert_eq!(report.delivered, 2);
    match agg.add_ref(&a, 1) {
        Err(AddError::Closed(k, 1)) => assert_eq!(k, Key(1)),
        other => panic!("{other:?}"),
    }
    // `String` keys added by `&str`, per-core combining.
    let by_str = Aggregator::<String, u64>::builder()
        .merge_commutative(|held, added| *held += added)
        .build()
        .unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..scaled(10_000) {
                    by_str.add_ref(["x", "y"][(i % 2) as usize], 1).unwrap();
                }
            });
        }
    });
    assert_eq!(by_str.get("x"), Some(scaled(10_000)));
    assert_eq!(by_str.get("y"), Some(scaled(10_000)));
}
