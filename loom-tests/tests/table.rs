//! Loom models of `ShardedTable`'s shard locking and its swap-out drain.
//!
//! Modelled: two threads against one table of one or two shards, with one to
//! three keys:
//! - upsert / upsert on the same key (merges are never lost);
//! - upsert / drain (every value is yielded by the drain or left in the table);
//! - upsert / remove (removed + remaining == added, for every order);
//! - drain / drain (each pair is yielded by exactly one drain);
//! - get / upsert (a reader sees the old or the new value, nothing else);
//! - clear / upsert (what the upsert added is either cleared or present whole);
//! - retain / upsert (the predicate sees the value before or after the merge).
//!
//! Every lock, atomic and thread comes from loom (`--cfg sheaf_loom`). Bound:
//! `LOOM_MAX_PREEMPTIONS` (2 is the suite's setting; 2 is also the default
//! used when the variable is unset).
//!
//! Run: `RUSTFLAGS="--cfg sheaf_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests`
#![cfg(sheaf_loom)]

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use loom::sync::Arc;
use loom::thread;
use loom_tests::model;
use sheaf::hash::FastBuildHasher;
use sheaf::{ShardedTable, Upsert};

type Table = ShardedTable<u64, u64>;

fn table(shards: usize) -> Arc<Table> {
    Arc::new(
        ShardedTable::builder()
            .shards(shards)
            .build()
            .expect("a power of two"),
    )
}

fn sum(acc: &mut u64, value: u64) {
    *acc += value;
}

/// The shard a key lands in: the top `log2(shards)` bits of its hash (see the
/// `sheaf::table` module docs).
fn shard_of(key: u64, shards: usize) -> usize {
    let bits = shards.trailing_zeros();
    if bits == 0 {
        0
    } else {
        (FastBuildHasher.hash_one(key) >> (64 - bits)) as usize
    }
}

/// The smallest key at or above `from` that lands in `shard` of `shards`.
fn key_in_shard(shard: usize, shards: usize, from: u64) -> u64 {
    (from..)
        .find(|&k| shard_of(k, shards) == shard)
        .expect("some key lands in every shard")
}

/// Adds every `(key, value)` into per-key sums.
fn sums(pairs: impl IntoIterator<Item = (u64, u64)>) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (key, value) in pairs {
        *out.entry(key).or_insert(0) += value;
    }
    out
}

#[test]
fn upsert_upsert_same_key_merges_both() {
    model(|| {
        let t = table(1);
        let t2 = Arc::clone(&t);
        let other = thread::spawn(move || t2.upsert(7, 1, sum));
        let mine = t.upsert(7, 2, sum);
        let theirs = other.join().unwrap();
        // Exactly one of the two found the key absent.
        assert!(
            matches!(
                (mine, theirs),
                (Upsert::Inserted, Upsert::Merged) | (Upsert::Merged, Upsert::Inserted)
            ),
            "{mine:?} / {theirs:?}"
        );
        assert_eq!(t.get(&7), Some(3));
        assert_eq!(t.len(), 1);
    });
}

#[test]
fn upsert_against_drain_loses_nothing() {
    model(|| {
        // Two shards, one key in each, so the drain swaps both out while the
        // writer goes back and forth between them.
        let t = table(2);
        let a = key_in_shard(0, 2, 0);
        let b = key_in_shard(1, 2, 0);
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || {
            t2.upsert(a, 1, sum);
            t2.upsert(b, 2, sum);
            t2.upsert(a, 4, sum);
        });
        let drained: Vec<(u64, u64)> = t.drain().collect();
        writer.join().unwrap();
        // A key appears at most once in one drain.
        let mut keys: Vec<u64> = drained.iter().map(|&(k, _)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys.len(),
            drained.len(),
            "a key yielded twice by one drain: {drained:?}"
        );
        let rest: Vec<(u64, u64)> = t.drain().collect();
        assert!(t.is_empty());
        let total = sums(drained.iter().copied().chain(rest.iter().copied()));
        assert_eq!(
            total,
            BTreeMap::from([(a, 5), (b, 2)]),
            "drained {drained:?}, left {rest:?}"
        );
    });
}

#[test]
fn upsert_against_remove_conserves_the_total() {
    model(|| {
        let t = table(1);
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || {
            let first = t2.upsert(3, 1, sum);
            let second = t2.upsert(3, 2, sum);
            (first, second)
        });
        let removed = t.remove(&3);
        let (first, second) = writer.join().unwrap();
        let left = t.get(&3);
        // The remove ran before both upserts, between them, or after both.
        match (removed, left) {
            (None, Some(3)) => assert_eq!((first, second), (Upsert::Inserted, Upsert::Merged)),
            (Some(1), Some(2)) => assert_eq!((first, second), (Upsert::Inserted, Upsert::Inserted)),
            (Some(3), None) => assert_eq!((first, second), (Upsert::Inserted, Upsert::Merged)),
            other => panic!("removed/left {other:?} after upserts {first:?}, {second:?}"),
        }
        assert_eq!(t.len(), usize::from(left.is_some()));
    });
}

#[test]
fn drain_against_drain_yields_each_pair_once() {
    model(|| {
        let t = table(2);
        let a = key_in_shard(0, 2, 0);
        let b = key_in_shard(1, 2, 0);
        let c = key_in_shard(1, 2, b + 1);
        for (k, v) in [(a, 10), (b, 20), (c, 30)] {
            assert_eq!(t.upsert(k, v, sum), Upsert::Inserted);
        }
        let t2 = Arc::clone(&t);
        let other = thread::spawn(move || t2.drain().collect::<Vec<_>>());
        let mine: Vec<(u64, u64)> = t.drain().collect();
        let theirs = other.join().unwrap();
        let mut all: Vec<(u64, u64)> = mine.iter().chain(theirs.iter()).copied().collect();
        all.sort_unstable();
        let mut want = vec![(a, 10), (b, 20), (c, 30)];
        want.sort_unstable();
        assert_eq!(all, want, "mine {mine:?}, theirs {theirs:?}");
        // A shard is swapped out whole: b and c (one shard) go to the same drain.
        assert_eq!(
            mine.iter().any(|&(k, _)| k == b),
            mine.iter().any(|&(k, _)| k == c)
        );
        assert!(t.is_empty());
        assert_eq!(t.drain().count(), 0);
    });
}

#[test]
fn get_against_upsert_sees_old_or_new() {
    model(|| {
        let t = table(1);
        t.upsert(1, 1, sum);
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || {
            assert_eq!(t2.upsert(1, 2, sum), Upsert::Merged);
            assert_eq!(t2.upsert(2, 5, sum), Upsert::Inserted);
        });
        // Read in the reverse of the writer's order: once key 2 is seen, the
        // merge into key 1 (made before it, under the same lock) must be too.
        let absent = t.get(&2);
        let present = t.get(&1);
        writer.join().unwrap();
        assert!(matches!(present, Some(1) | Some(3)), "{present:?}");
        assert!(matches!(absent, None | Some(5)), "{absent:?}");
        if absent.is_some() {
            assert_eq!(present, Some(3), "saw the second upsert but not the first");
        }
        assert_eq!((t.get(&1), t.get(&2)), (Some(3), Some(5)));
    });
}

#[test]
fn clear_against_upsert_is_all_or_nothing_per_value() {
    model(|| {
        let t = table(1);
        t.upsert(4, 1, sum);
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || t2.upsert(4, 2, sum));
        t.clear();
        let outcome = writer.join().unwrap();
        match (outcome, t.get(&4)) {
            // Upsert first, then the clear took both.
            (Upsert::Merged, None) => {}
            // Clear first, then the upsert inserted afresh.
            (Upsert::Inserted, Some(2)) => {}
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn retain_against_upsert_decides_each_value_once() {
    model(|| {
        let t = table(1);
        t.upsert(1, 2, sum); // even: kept
        t.upsert(2, 3, sum); // odd: dropped
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || t2.upsert(2, 1, sum));
        t.retain(|_, v| *v % 2 == 0);
        let outcome = writer.join().unwrap();
        assert_eq!(t.get(&1), Some(2));
        match (outcome, t.get(&2)) {
            // Merged first (3 + 1 = 4, even): retain keeps it.
            (Upsert::Merged, Some(4)) => {}
            // Retain first dropped 3; the upsert inserted 1 afresh.
            (Upsert::Inserted, Some(1)) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// The entry API and `upsert_ref` take the same shard lock as `upsert`: an
/// `entry(..).or_insert` racing an `upsert_ref` and an `insert` on the same
/// key never loses an update, and exactly one of them inserts.
#[test]
fn entry_and_upsert_ref_race_without_losing_updates() {
    model(|| {
        let t = table(1);
        let t2 = Arc::clone(&t);
        let other = thread::spawn(move || t2.upsert_ref(&7, 1, sum));
        *t.entry(7).or_insert(0) += 2;
        let theirs = other.join().unwrap();
        assert_eq!(t.get(&7), Some(3), "{theirs:?}");
        assert_eq!(t.len(), 1);
    });
}

/// `for_each` visits shard by shard under each shard's lock: racing an
/// upsert that moves value between two shards' keys, it sees each key's
/// value before or after the upsert, never a torn one.
#[test]
fn for_each_sees_whole_values_per_shard() {
    model(|| {
        let t = table(2);
        let a = key_in_shard(0, 2, 0);
        let b = key_in_shard(1, 2, 0);
        t.insert(a, 10);
        t.insert(b, 20);
        let t2 = Arc::clone(&t);
        let writer = thread::spawn(move || {
            t2.upsert(a, 1, sum);
            t2.upsert(b, 1, sum);
        });
        let mut seen = BTreeMap::new();
        t.for_each(|&k, &v| {
            seen.insert(k, v);
        });
        writer.join().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(matches!(seen[&a], 10 | 11), "{seen:?}");
        assert!(matches!(seen[&b], 20 | 21), "{seen:?}");
        assert_eq!((t.get(&a), t.get(&b)), (Some(11), Some(21)));
    });
}
