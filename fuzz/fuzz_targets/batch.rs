//! Differential fuzzing of `sheaf::batch::GroupBatcher` against a
//! `HashMap<key, Vec<item>>` with deadlines.
//!
//! The first bytes choose the settings (grace, max delay, max items, each
//! possibly absent but at least one present); the rest decode into adds,
//! clock advances, flushes and a shutdown, replayed single-threaded on a
//! manual clock in whole milliseconds with the batcher's deadline passes
//! run by hand (`tick`). After every pass the batches received must be
//! exactly the groups the model says are due (or were sealed by size or a
//! flush), with their items in add order and the right trigger; nothing is
//! sealed early, nothing twice, nothing lost; after shutdown every
//! remaining group comes out and adds are refused with their item.
//!
//! Run: `cargo +nightly fuzz run batch -- -max_total_time=20`
#![no_main]

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sheaf::batch::{AddError, Added, GroupBatcher, Trigger};
use sheaf::clock::ManualClock;

#[derive(Arbitrary, Debug)]
enum Op {
    Add(u8),
    Advance(u8),
    Flush(u8),
    FlushAll,
    Shutdown,
}

struct Group {
    items: Vec<u32>,
    opened: u64,
    grace_due: u64,
}

const NONE: u64 = u64::MAX;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(grace), Ok(delay), Ok(max_items)) = (
        u.arbitrary::<u8>(),
        u.arbitrary::<u8>(),
        u.arbitrary::<u8>(),
    ) else {
        return;
    };
    let grace = if grace % 4 == 0 {
        NONE
    } else {
        u64::from(grace % 20) + 1
    };
    let delay = if delay % 3 == 0 {
        NONE
    } else {
        grace.min(20) + u64::from(delay % 40)
    };
    let max_items = if max_items % 3 == 0 {
        usize::MAX
    } else {
        usize::from(max_items % 6) + 1
    };
    if grace == NONE && delay == NONE && max_items == usize::MAX {
        return;
    }
    let Ok(ops) = u.arbitrary::<Vec<Op>>() else {
        return;
    };

    let clock = ManualClock::new();
    let mut builder = GroupBatcher::<u8, u32, Vec<u32>>::builder()
        .clock(clock.clone())
        .manual_ticks()
        .output_capacity(4096)
        .aggregate(|_, items: &mut Vec<u32>| Ok::<_, Infallible>(Some(std::mem::take(items))));
    if grace != NONE {
        builder = builder.grace(Duration::from_millis(grace));
    }
    if delay != NONE {
        builder = builder.max_delay(Duration::from_millis(delay));
    }
    if max_items != usize::MAX {
        builder = builder.max_items(max_items);
    }
    let batcher = builder.build().expect("valid settings");
    let rx = batcher.receiver();

    let mut model: HashMap<u8, Group> = HashMap::new();
    // Sealed by size or flush, waiting for the next pass.
    let mut sealed: Vec<(u8, Vec<u32>, Trigger)> = Vec::new();
    let mut now = 0u64;
    let mut next_item = 0u32;
    let mut closed = false;

    let due = |g: &Group| -> Option<(u64, Trigger)> {
        let delay_due = if delay == NONE {
            NONE
        } else {
            g.opened + delay
        };
        match (g.grace_due, delay_due) {
            (NONE, NONE) => None,
            (gr, d) if gr < d => Some((gr, Trigger::Grace)),
            (_, d) => Some((d, Trigger::MaxDelay)),
        }
    };

    // Runs a pass and compares what came out with the model.
    let check_pass =
        |model: &mut HashMap<u8, Group>, sealed: &mut Vec<(u8, Vec<u32>, Trigger)>, now: u64| {
            batcher.tick();
            let mut expected = std::mem::take(sealed);
            let keys: Vec<u8> = model.keys().copied().collect();
            for k in keys {
                if let Some((at, trigger)) = due(&model[&k]) {
                    if at <= now {
                        let g = model.remove(&k).unwrap();
                        expected.push((k, g.items, trigger));
                    }
                }
            }
            let mut got: Vec<(u8, Vec<u32>, Trigger)> = rx
                .try_iter()
                .map(|b| (b.group, b.output, b.reason))
                .collect();
            expected.sort();
            got.sort();
            assert_eq!(got, expected, "at {now} ms");
        };

    for op in ops {
        if closed {
            break;
        }
        match op {
            Op::Add(k) => {
                let k = k % 8;
                let item = next_item;
                next_item += 1;
                let got = batcher.add(k, item).expect("open");
                let group = model.entry(k).or_insert_with(|| Group {
                    items: Vec::new(),
                    opened: now,
                    grace_due: NONE,
                });
                let opened = group.items.is_empty();
                group.items.push(item);
                if grace != NONE {
                    group.grace_due = now + grace;
                }
                if group.items.len() >= max_items {
                    let g = model.remove(&k).unwrap();
                    sealed.push((k, g.items, Trigger::MaxItems));
                    assert_eq!(got, Added::Sealed);
                } else {
                    assert_eq!(got, if opened { Added::Opened } else { Added::Joined });
                }
            }
            Op::Advance(by) => {
                // Step through every millisecond on the way: each pass must
                // seal exactly what is due by then, never earlier.
                for _ in 0..(by % 16) {
                    now += 1;
                    clock.set(Duration::from_millis(now));
                    check_pass(&mut model, &mut sealed, now);
                }
            }
            Op::Flush(k) => {
                let k = k % 8;
                let existed = model.contains_key(&k);
                assert_eq!(batcher.flush(&k), existed);
                if let Some(g) = model.remove(&k) {
                    sealed.push((k, g.items, Trigger::Manual));
                }
                check_pass(&mut model, &mut sealed, now);
            }
            Op::FlushAll => {
                assert_eq!(batcher.flush_all(), model.len());
                for (k, g) in model.drain() {
                    sealed.push((k, g.items, Trigger::Manual));
                }
                check_pass(&mut model, &mut sealed, now);
            }
            Op::Shutdown => closed = true,
        }
        let stats = batcher.stats();
        assert_eq!(stats.groups_open, model.len());
        for (k, g) in &model {
            assert_eq!(batcher.group(k).map(|i| i.items), Some(g.items.len()));
        }
    }

    let report = batcher.shutdown(Duration::from_secs(5));
    assert!(report.undelivered.is_empty() && report.failed.is_empty());
    let mut expected: Vec<(u8, Vec<u32>, Trigger)> = sealed;
    expected.extend(model.drain().map(|(k, g)| (k, g.items, Trigger::Shutdown)));
    let mut got: Vec<(u8, Vec<u32>, Trigger)> = rx
        .try_iter()
        .map(|b| (b.group, b.output, b.reason))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(matches!(batcher.add(0, 0), Err(AddError::Closed(0, 0))));
    let stats = batcher.stats();
    assert_eq!(stats.added, u64::from(next_item));
    assert_eq!(stats.late_max, Duration::ZERO);
});
