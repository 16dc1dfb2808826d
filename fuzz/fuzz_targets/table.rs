//! Differential fuzzing of `ShardedTable<u8, u64>` against `HashMap<u8, u64>`.
//!
//! Input: the first byte picks the shard count (`1 << (byte % 4)`: 1, 2, 4
//! or 8 shards); the rest decodes (with `arbitrary`) into a list of [`Op`]s,
//! replayed on both. Every op's result is checked exactly, and after every op
//! the table's length, its sorted snapshot and (under `cfg(fuzzing)`) each
//! shard's internal invariants are checked against the model. A final sweep
//! drains the table and compares.
//!
//! `DrainPartial(n)` takes `n` pairs and drops the `Drain`, which (like
//! `Vec::drain`) drops the rest of the shard being read and leaves later
//! shards alone. The model mirrors that exactly by computing each key's shard
//! the way the table does — the top `log2(shards)` bits of the key's
//! `FastBuildHasher` hash (documented in `sheaf::table`) — and removing every
//! key whose shard is at most the last yielded pair's shard. Full drains also
//! check that pairs come out shard by shard, which keeps that mapping honest.
//!
//! Run: `cargo +nightly fuzz run table -- -max_total_time=20`
#![no_main]

use std::collections::HashMap;
use std::hash::BuildHasher;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::hash::FastBuildHasher;
use sheaf::table::Entry;
use sheaf::{ShardedTable, Upsert};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Insert, or merge with a wrapping sum.
    Upsert {
        key: u8,
        value: u16,
    },
    Get(u8),
    Remove(u8),
    /// Take everything.
    Drain,
    /// Take up to `n` pairs, then drop the iterator.
    DrainPartial(u8),
    /// Keep pairs with `(key + value) % (modulus + 1) != 0`, bumping each kept value.
    Retain(u8),
    Clear,
    Snapshot,
    /// `upsert_ref`: the borrowed-key upsert.
    UpsertRef {
        key: u8,
        value: u16,
    },
    /// `insert`: replaces, returning the old value.
    Insert {
        key: u8,
        value: u16,
    },
    /// `entry(key).and_modify(+value).or_insert(value)`.
    EntryAdd {
        key: u8,
        value: u16,
    },
    /// `entry(key)`: remove when occupied, insert `value` when vacant.
    EntryToggle {
        key: u8,
        value: u16,
    },
    /// `for_each` and `iter` see every pair once.
    Visit,
    /// `for_each_mut` adds 1 to every value.
    BumpAll,
}

fn merge(acc: &mut u64, value: u64) {
    *acc = acc.wrapping_add(value);
}

fn keep(modulus: u8, key: u8, value: &mut u64) -> bool {
    let kept = (u64::from(key).wrapping_add(*value)) % (u64::from(modulus) + 1) != 0;
    if kept {
        *value = value.wrapping_add(1);
    }
    kept
}

/// The shard the table puts `key` in (see the module docs).
fn shard_of(key: u8, shards: usize) -> usize {
    let bits = shards.trailing_zeros();
    if bits == 0 {
        0
    } else {
        (FastBuildHasher.hash_one(key) >> (64 - bits)) as usize
    }
}

fn sorted_model(model: &HashMap<u8, u64>) -> Vec<(u8, u64)> {
    let mut pairs: Vec<(u8, u64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    pairs.sort_unstable();
    pairs
}

fn sorted(mut pairs: Vec<(u8, u64)>) -> Vec<(u8, u64)> {
    pairs.sort_unstable();
    pairs
}

// `cfg(fuzzing)` is set by cargo-fuzz (and enables `check_invariants`).
#[allow(unexpected_cfgs)]
fn check_consistent(table: &ShardedTable<u8, u64>, model: &HashMap<u8, u64>) {
    assert_eq!(table.len(), model.len());
    assert_eq!(table.is_empty(), model.is_empty());
    assert_eq!(sorted(table.snapshot()), sorted_model(model));
    #[cfg(fuzzing)]
    table.check_invariants();
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let shards = 1usize << (first % 4);
    let Ok(ops) = Unstructured::new(rest).arbitrary::<Vec<Op>>() else {
        return;
    };
    let table: ShardedTable<u8, u64> = ShardedTable::builder()
        .shards(shards)
        .build()
        .expect("valid shard count");
    assert_eq!(table.shards(), shards);
    let mut model: HashMap<u8, u64> = HashMap::new();

    for op in ops {
        match op {
            Op::Upsert { key, value } => {
                let value = u64::from(value);
                let expected = match model.get_mut(&key) {
                    Some(present) => {
                        merge(present, value);
                        Upsert::Merged
                    }
                    None => {
                        model.insert(key, value);
                        Upsert::Inserted
                    }
                };
                assert_eq!(table.upsert(key, value, merge), expected, "upsert {key}");
            }
            Op::Get(key) => {
                assert_eq!(table.get(&key), model.get(&key).copied(), "get {key}");
                assert_eq!(table.contains_key(&key), model.contains_key(&key));
            }
            Op::Remove(key) => {
                assert_eq!(table.remove(&key), model.remove(&key), "remove {key}");
            }
            Op::Drain => {
                let drained: Vec<(u8, u64)> = table.drain().collect();
                // Shard by shard, in shard order.
                let order: Vec<usize> = drained.iter().map(|&(k, _)| shard_of(k, shards)).collect();
                assert!(
                    order.windows(2).all(|w| w[0] <= w[1]),
                    "drain order by shard {order:?}"
                );
                assert_eq!(sorted(drained), sorted_model(&model));
                model.clear();
            }
            Op::DrainPartial(n) => {
                let n = usize::from(n);
                let mut drain = table.drain();
                let taken: Vec<(u8, u64)> = drain.by_ref().take(n).collect();
                drop(drain);
                for &(k, v) in &taken {
                    assert_eq!(model.get(&k), Some(&v), "partial drain yielded {k} => {v}");
                }
                let order: Vec<usize> = taken.iter().map(|&(k, _)| shard_of(k, shards)).collect();
                assert!(
                    order.windows(2).all(|w| w[0] <= w[1]),
                    "drain order by shard {order:?}"
                );
                match order.last() {
                    // Nothing taken: either n == 0 (no shard reached) or the
                    // table was empty.
                    None => assert!(n == 0 || model.is_empty()),
                    Some(&last) => {
                        // Every shard before the last one read is taken whole;
                        // the rest of the last one is dropped.
                        for (&k, _) in model.iter().filter(|(&k, _)| shard_of(k, shards) < last) {
                            assert!(
                                taken.iter().any(|&(t, _)| t == k),
                                "key {k} of an earlier shard not yielded"
                            );
                        }
                        model.retain(|&k, _| shard_of(k, shards) > last);
                    }
                }
            }
            Op::Retain(modulus) => {
                table.retain(|&k, v| keep(modulus, k, v));
                model.retain(|&k, v| keep(modulus, k, v));
            }
            Op::Clear => {
                table.clear();
                model.clear();
            }
            Op::Snapshot => {
                assert_eq!(sorted(table.snapshot()), sorted_model(&model));
            }
            Op::UpsertRef { key, value } => {
                let value = u64::from(value);
                let expected = match model.get_mut(&key) {
                    Some(present) => {
                        merge(present, value);
                        Upsert::Merged
                    }
                    None => {
                        model.insert(key, value);
                        Upsert::Inserted
                    }
                };
                assert_eq!(
                    table.upsert_ref(&key, value, merge),
                    expected,
                    "upsert_ref {key}"
                );
            }
            Op::Insert { key, value } => {
                let value = u64::from(value);
                assert_eq!(
                    table.insert(key, value),
                    model.insert(key, value),
                    "insert {key}"
                );
            }
            Op::EntryAdd { key, value } => {
                let value = u64::from(value);
                let got = *table
                    .entry(key)
                    .and_modify(|v| merge(v, value))
                    .or_insert(value);
                let want = *model
                    .entry(key)
                    .and_modify(|v| merge(v, value))
                    .or_insert(value);
                assert_eq!(got, want, "entry {key}");
            }
            Op::EntryToggle { key, value } => {
                let value = u64::from(value);
                match table.entry(key) {
                    Entry::Occupied(e) => {
                        assert_eq!(*e.key(), key);
                        assert_eq!(Some(e.remove()), model.remove(&key), "entry remove {key}");
                    }
                    Entry::Vacant(e) => {
                        assert!(!model.contains_key(&key), "vacant {key} is in the model");
                        assert_eq!(*e.insert(value), value);
                        model.insert(key, value);
                    }
                }
            }
            Op::Visit => {
                let mut seen = Vec::new();
                table.for_each(|&k, &v| seen.push((k, v)));
                assert_eq!(sorted(seen), sorted_model(&model));
                let mut by_shard = Vec::new();
                for (index, shard) in table.iter().enumerate() {
                    for (&k, &v) in &shard {
                        assert_eq!(shard_of(k, shards), index, "iter: {k} in shard {index}");
                        by_shard.push((k, v));
                    }
                }
                assert_eq!(sorted(by_shard), sorted_model(&model));
            }
            Op::BumpAll => {
                table.for_each_mut(|_, v| *v = v.wrapping_add(1));
                for v in model.values_mut() {
                    *v = v.wrapping_add(1);
                }
            }
        }
        check_consistent(&table, &model);
    }

    // Final sweep.
    assert_eq!(table.len(), model.len());
    let mut snapshot = table.snapshot();
    snapshot.sort_unstable();
    assert_eq!(snapshot, sorted_model(&model));
    assert_eq!(sorted(table.drain().collect()), sorted_model(&model));
    assert!(table.is_empty());
    assert_eq!(table.len(), 0);
});
