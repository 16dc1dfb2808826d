//! Replays an arbitrary sequence of add (owned or by reference) / flush /
//! recv / get / shutdown against a model of per-key totals, with the
//! built-in `Sum`, a closure declared commutative, or an order-kept closure.
//!
//! With `OnFull::Retain` nothing may be lost: at every step, for every key,
//! what was added equals what the consumer received + what is queued in the
//! output + what the table holds (`get`). With the drop policies, received +
//! held never exceeds added, and every drop is counted.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sheaf::merge::Sum;
use sheaf::{AddError, Aggregator, OnFull};

#[derive(Arbitrary, Debug)]
enum Op {
    Add(u8, u16),
    /// `add_ref`: the borrowed-key add.
    AddRef(u8, u16),
    Flush,
    Recv(u8),
    Get(u8),
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    output_capacity: u8,
    policy: u8,
    /// 0: `merge_with(Sum)`, 1: `merge_commutative` closure, 2: `merge` closure.
    merge: u8,
    max_keys: Option<u8>,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let policy =
        [OnFull::Retain, OnFull::DropNewest, OnFull::DropOldest][input.policy as usize % 3];
    let builder = Aggregator::<u8, u64>::builder();
    let builder = match input.merge % 3 {
        0 => builder.merge_with(Sum),
        1 => builder.merge_commutative(|held, added| *held += added),
        _ => builder.merge(|held, added| *held += added),
    };
    let mut builder = builder
        .per_core(false)
        .shards(2)
        .output_capacity(usize::from(input.output_capacity % 8) + 1)
        .on_full(policy);
    let cap = input.max_keys.map(|m| usize::from(m % 16) + 1);
    if let Some(cap) = cap {
        builder = builder.max_keys(cap);
    }
    let agg = builder.build().unwrap();
    let rx = agg.receiver();
    let mut added: HashMap<u8, u64> = HashMap::new();
    let mut received: HashMap<u8, u64> = HashMap::new();
    let mut closed = false;
    let mut returned: Vec<(u8, u64)> = Vec::new();

    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Add(k, v) | Op::AddRef(k, v) => {
                let by_ref = matches!(op, Op::AddRef(..));
                let v = u64::from(v);
                let held = agg.get(&k).is_some();
                let result = if by_ref {
                    agg.add_ref(&k, v)
                } else {
                    agg.add(k, v)
                };
                match result {
                    Ok(_) => {
                        assert!(!closed);
                        *added.entry(k).or_default() += v;
                    }
                    Err(AddError::Closed(k2, v2)) => {
                        assert!(closed);
                        assert_eq!((k2, v2), (k, v));
                    }
                    Err(AddError::Full(k2, v2)) => {
                        assert_eq!((k2, v2), (k, v));
                        assert!(!held, "a held key always merges");
                        assert_eq!(Some(agg.len()), cap);
                    }
                    Err(AddError::MergePanicked) => unreachable!("Sum does not panic"),
                }
            }
            Op::Flush => {
                let before = agg.stats().flushed;
                let n = agg.flush();
                assert_eq!(agg.stats().flushed - before, n as u64);
            }
            Op::Recv(n) => {
                for _ in 0..n % 8 {
                    match rx.try_recv() {
                        Ok((k, v)) => *received.entry(k).or_default() += v,
                        Err(_) => break,
                    }
                }
            }
            Op::Get(k) => {
                let held = agg.get(&k).unwrap_or(0);
                let got = received.get(&k).copied().unwrap_or(0);
                assert!(held + got <= added.get(&k).copied().unwrap_or(0));
            }
            Op::Shutdown => {
                let report = agg.shutdown(Duration::ZERO);
                if !closed {
                    returned.extend(report.undelivered);
                } else {
                    assert!(report.undelivered.is_empty());
                    assert_eq!(report.delivered, 0);
                }
                closed = true;
            }
        }
        if policy == OnFull::Retain {
            // Conservation at every step: nothing is ever dropped.
            let queued: Vec<(u8, u64)> = rx.try_iter().collect();
            for &(k, v) in &queued {
                *received.entry(k).or_default() += v;
            }
            for (&k, &total) in &added {
                let held = agg.get(&k).unwrap_or(0);
                let back: u64 = returned
                    .iter()
                    .filter(|(rk, _)| *rk == k)
                    .map(|(_, v)| v)
                    .sum();
                assert_eq!(
                    received.get(&k).copied().unwrap_or(0) + held + back,
                    total,
                    "key {k}"
                );
            }
        }
    }
    let report = agg.shutdown(Duration::ZERO);
    returned.extend(report.undelivered);
    for (k, v) in rx.try_iter() {
        *received.entry(k).or_default() += v;
    }
    let stats = agg.stats();
    for (&k, &total) in &added {
        let back: u64 = returned
            .iter()
            .filter(|(rk, _)| *rk == k)
            .map(|(_, v)| v)
            .sum();
        let got = received.get(&k).copied().unwrap_or(0) + back;
        if policy == OnFull::Retain {
            assert_eq!(got, total, "key {k}");
        } else {
            assert!(got <= total, "key {k}");
        }
    }
    if policy == OnFull::Retain {
        assert_eq!(stats.dropped_newest + stats.dropped_oldest, 0);
    }
});
