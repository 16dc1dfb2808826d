use std::convert::Infallible;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;

type Batcher = GroupBatcher<u32, u32, Vec<u32>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A builder on a manual clock whose aggregate passes the items through.
fn builder(clock: &ManualClock) -> GroupBatcherBuilder<u32, u32, Vec<u32>> {
    Batcher::builder()
        .clock(clock.clone())
        .aggregate(|_, items: &mut Vec<u32>| Ok::<_, Infallible>(Some(std::mem::take(items))))
}

/// Sets the clock to `at` and waits until the driver has acted on it.
fn at(clock: &ManualClock, batcher: &Batcher, at: u64) {
    clock.set(ms(at));
    batcher.settle();
}

fn drain(batcher: &Batcher) -> Vec<Batch<u32, Vec<u32>>> {
    batcher.receiver().try_iter().collect()
}

#[test]
fn bad_settings_are_errors_that_name_the_setting() {
    let clock = ManualClock::new();
    let setting = |b: GroupBatcherBuilder<u32, u32, Vec<u32>>| b.build().unwrap_err().setting();
    assert_eq!(
        Batcher::builder()
            .grace(ms(1))
            .build()
            .unwrap_err()
            .setting(),
        "aggregate"
    );
    assert_eq!(setting(builder(&clock)), "grace");
    assert_eq!(setting(builder(&clock).grace(Duration::ZERO)), "grace");
    assert_eq!(
        setting(builder(&clock).max_delay(Duration::ZERO)),
        "max_delay"
    );
    assert_eq!(
        setting(builder(&clock).grace(ms(10)).max_delay(ms(5))),
        "max_delay"
    );
    assert_eq!(setting(builder(&clock).max_items(0)), "max_items");
    assert_eq!(
        setting(builder(&clock).max_items(1).max_bytes(0, |_| 1)),
        "max_bytes"
    );
    assert_eq!(
        setting(builder(&clock).max_items(1).output_capacity(0)),
        "output_capacity"
    );
    assert_eq!(setting(builder(&clock).max_items(1).shards(3)), "shards");
    assert_eq!(
        setting(builder(&clock).max_items(1).flush_threads(0)),
        "flush_threads"
    );
    assert_eq!(
        setting(builder(&clock).max_items(1).shards(2).flush_threads(3)),
        "flush_threads"
    );
    assert_eq!(
        setting(builder(&clock).max_items(1).max_groups(0)),
        "max_groups"
    );
    // Every combination of the triggers is valid, "forever" included.
    for (g, d, n) in [
        (true, false, false),
        (false, true, false),
        (false, false, true),
        (true, true, true),
    ] {
        let mut b = builder(&clock);
        if g {
            b = b.grace(Duration::MAX);
        }
        if d {
            b = b.max_delay(Duration::MAX);
        }
        if n {
            b = b.max_items(5);
        }
        b.build().unwrap().shutdown(ms(100));
    }
}

#[test]
fn grace_fires_at_its_exact_tick_and_resets_on_every_item() {
    let clock = ManualClock::new();
    let b = builder(&clock).grace(ms(10)).build().unwrap();
    assert_eq!(b.add(1, 10), Ok(Added::Opened));
    at(&clock, &b, 9);
    assert!(drain(&b).is_empty());
    assert_eq!(b.add(1, 11), Ok(Added::Joined)); // grace now ends at 19
    let info = b.group(&1).unwrap();
    assert_eq!((info.items, info.trigger), (2, Some(Trigger::Grace)));
    assert_eq!(info.next_deadline, Some(clock.origin() + ms(19)));
    at(&clock, &b, 10); // the first deadline passes: re-armed, not sealed
    at(&clock, &b, 18);
    assert!(drain(&b).is_empty());
    at(&clock, &b, 19);
    let out = drain(&b);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].group, &out[0].output, out[0].reason),
        (1, &vec![10, 11], Trigger::Grace)
    );
    assert_eq!(out[0].opened_at, clock.origin());
    let stats = b.stats();
    assert_eq!(
        (stats.sealed.grace, stats.late_count, stats.late_max),
        (1, 1, Duration::ZERO)
    );
    assert_eq!(stats.groups_open, 0);
}

#[test]
fn max_delay_wins_over_a_steady_trickle() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .grace(ms(10))
        .max_delay(ms(50))
        .build()
        .unwrap();
    for t in (0..50).step_by(5) {
        at(&clock, &b, t);
        b.add(3, t as u32).unwrap();
    }
    at(&clock, &b, 49);
    assert!(drain(&b).is_empty());
    at(&clock, &b, 50);
    let out = drain(&b);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].reason, Trigger::MaxDelay);
    assert_eq!(out[0].output, (0..50).step_by(5).collect::<Vec<u32>>());
    // The next item opens a fresh group.
    assert_eq!(b.add(3, 50), Ok(Added::Opened));
    assert_eq!(b.stats().sealed.max_delay, 1);
}

#[test]
fn max_delay_alone_fires_at_its_exact_tick() {
    let clock = ManualClock::new();
    let b = builder(&clock).max_delay(ms(7)).build().unwrap();
    // Deadline 9.55 ms: in the 100 µs tick that ends at 9.6 ms.
    clock.set(Duration::from_micros(2_550));
    b.add(1, 1).unwrap();
    at(&clock, &b, 9);
    clock.set(Duration::from_micros(9_549));
    b.settle();
    assert!(drain(&b).is_empty());
    clock.set(Duration::from_micros(9_550));
    b.settle();
    assert!(drain(&b).is_empty(), "the wheel ticks in 100 µs steps");
    clock.set(Duration::from_micros(9_600));
    b.settle();
    let out = drain(&b);
    assert_eq!(out[0].reason, Trigger::MaxDelay);
    // Manual clock: the seal came at 9.6 ms for a 9.55 ms deadline, exactly.
    assert_eq!(b.stats().late_max, Duration::from_micros(50));
}

#[test]
fn max_items_and_max_bytes_seal_at_once() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .grace(ms(100))
        .max_items(3)
        .max_bytes(100, |v: &u32| *v as usize)
        .build()
        .unwrap();
    assert_eq!(b.add(1, 1), Ok(Added::Opened));
    assert_eq!(b.add(1, 2), Ok(Added::Joined));
    assert_eq!(b.add(1, 3), Ok(Added::Sealed));
    assert_eq!(b.add(1, 4), Ok(Added::Opened));
    assert_eq!(b.add(2, 60), Ok(Added::Opened));
    assert_eq!(b.add(2, 40), Ok(Added::Sealed));
    assert_eq!(b.add(5, 500), Ok(Added::Sealed)); // heavier than the cap: alone
    b.settle(); // time has not moved: only the sealed groups are delivered
    let mut out = drain(&b);
    out.sort_by_key(|batch| batch.id);
    let got: Vec<_> = out
        .iter()
        .map(|b| (b.group, b.output.clone(), b.reason))
        .collect();
    assert_eq!(
        got,
        [
            (1, vec![1, 2, 3], Trigger::MaxItems),
            (2, vec![60, 40], Trigger::MaxBytes),
            (5, vec![500], Trigger::MaxBytes)
        ]
    );
    assert_eq!(b.group(&1).unwrap().items, 1);
}

#[test]
fn per_group_overrides_are_decided_when_a_group_opens() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .grace(ms(10))
        .group_config(|k: &u32| match k {
            7 => Some(GroupConfig::new().grace(ms(3)).max_items(2)),
            8 => Some(GroupConfig::new().max_delay(ms(4))),
            9 => panic!("config for 9"),
            _ => None,
        })
        .build()
        .unwrap();
    for k in [1, 7, 8, 9] {
        b.add(k, k).unwrap();
    }
    at(&clock, &b, 2);
    assert!(drain(&b).is_empty());
    at(&clock, &b, 3);
    assert_eq!(drain(&b).iter().map(|b| b.group).collect::<Vec<_>>(), [7]);
    at(&clock, &b, 4);
    let out = drain(&b);
    assert_eq!(
        (out.len(), out[0].group, out[0].reason),
        (1, 8, Trigger::MaxDelay)
    );
    at(&clock, &b, 10);
    let mut keys: Vec<u32> = drain(&b).iter().map(|b| b.group).collect();
    keys.sort_unstable();
    assert_eq!(keys, [1, 9]); // 9's config panicked: defaults, counted
    assert_eq!(b.stats().panics, 1);
    b.add(7, 1).unwrap();
    assert_eq!(b.add(7, 2), Ok(Added::Sealed));
}

#[test]
fn empty_results_failures_and_panics_account_for_every_item() {
    let clock = ManualClock::new();
    let b = GroupBatcher::<u32, u32, u32>::builder()
        .clock(clock.clone())
        .max_items(3)
        .aggregate(|k: &u32, items: &mut Vec<u32>| match k % 4 {
            0 => Ok(Some(items.iter().sum())),
            1 => Ok(None),
            2 => Err(format!("group {k} refused")),
            _ => {
                items.pop(); // took one before failing: that one is the function's
                panic!("group {k} blew up")
            }
        })
        .build()
        .unwrap();
    for k in 0..8 {
        for i in 0..3 {
            b.add(k, i).unwrap();
        }
    }
    b.settle();
    let stats = b.stats();
    assert_eq!((stats.added, stats.sealed.max_items), (24, 8));
    assert_eq!(
        (stats.emitted, stats.empty, stats.failures, stats.panics),
        (2, 2, 2, 2)
    );
    assert_eq!(stats.dead_letters, 4);
    let outputs: Vec<u32> = b.receiver().try_iter().map(|b| b.output).collect();
    assert_eq!(outputs, [3, 3]);
    let mut dead: Vec<(u32, Vec<u32>, String)> = b
        .dead_letters()
        .try_iter()
        .map(|f| (f.group, f.items, f.error))
        .collect();
    dead.sort();
    assert_eq!(dead[0], (2, vec![0, 1, 2], "group 2 refused".to_string()));
    assert_eq!(
        dead[1],
        (3, vec![0, 1], "panicked: group 3 blew up".to_string())
    );
    assert_eq!(dead[3].0, 7);
    assert!(b.last_panic().unwrap().contains("blew up"));
}

#[test]
fn flush_flush_all_and_inspection() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .grace(ms(10))
        .max_delay(ms(20))
        .build()
        .unwrap();
    for k in 0..5 {
        b.add(k, k).unwrap();
    }
    clock.set(ms(4));
    b.add(0, 100).unwrap();
    let info = b.group(&0).unwrap();
    assert_eq!((info.items, info.age), (2, ms(4)));
    assert_eq!(info.next_deadline, Some(clock.origin() + ms(14)));
    assert_eq!(b.groups().len(), 5);
    assert!(b.flush(&0));
    assert!(!b.flush(&0));
    b.settle();
    let out = drain(&b);
    assert_eq!(
        (out[0].output.clone(), out[0].reason),
        (vec![0, 100], Trigger::Manual)
    );
    assert_eq!(b.flush_all(), 4);
    b.settle();
    assert_eq!(drain(&b).len(), 4);
    assert!(b.groups().is_empty());
    assert_eq!(b.stats().sealed.manual, 5);
}

#[test]
fn max_groups_hands_new_groups_back() {
    let clock = ManualClock::new();
    let b = builder(&clock).grace(ms(5)).max_groups(2).build().unwrap();
    b.add(1, 1).unwrap();
    b.add(2, 2).unwrap();
    assert_eq!(b.add(3, 3), Err(AddError::Full(3, 3)));
    assert_eq!(b.add(1, 4), Ok(Added::Joined));
    at(&clock, &b, 5);
    assert_eq!(b.add(3, 3), Ok(Added::Opened));
    assert_eq!(b.stats().refused_full, 1);
}

#[test]
fn shutdown_delivers_or_hands_back_everything_and_is_idempotent() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .grace(ms(10))
        .output_capacity(2)
        .build()
        .unwrap();
    for k in 0..5 {
        b.add(k, k).unwrap();
        b.add(k, k + 10).unwrap();
    }
    // Nobody reads: two fit, three come back after the deadline.
    let report = b.shutdown(ms(20));
    assert_eq!(report.delivered, 2);
    assert_eq!(report.undelivered.len(), 3);
    assert!(report.timed_out);
    let mut items: Vec<u32> = report
        .undelivered
        .iter()
        .flat_map(|b| b.output.clone())
        .collect();
    items.extend(b.receiver().try_iter().flat_map(|b| b.output));
    items.sort_unstable();
    assert_eq!(items, [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
    assert_eq!(b.stats().sealed.shutdown, 5);
    assert_eq!(b.add(9, 9), Err(AddError::Closed(9, 9)));
    let again = b.shutdown(ms(20));
    assert_eq!((again.delivered, again.undelivered.len()), (0, 0));
    assert!(b.receiver().recv().is_err()); // the output has ended
}

#[test]
fn a_blocked_driver_hands_its_batch_to_shutdown() {
    let clock = ManualClock::new();
    let b = builder(&clock)
        .max_items(1)
        .output_capacity(1)
        .build()
        .unwrap();
    b.add(1, 1).unwrap();
    b.add(2, 2).unwrap(); // the driver blocks on the full output
    let report = b.shutdown(ms(10));
    let mut seen: Vec<u32> = b.receiver().try_iter().flat_map(|b| b.output).collect();
    seen.extend(report.undelivered.iter().flat_map(|b| b.output.clone()));
    seen.sort_unstable();
    assert_eq!(seen, [1, 2]);
}

#[test]
fn dropping_the_last_handle_delivers() {
    let clock = ManualClock::new();
    let b = builder(&clock).grace(ms(10)).build().unwrap();
    let rx = b.receiver();
    let other = b.clone();
    b.add(1, 1).unwrap();
    drop(b);
    other.add(1, 2).unwrap();
    drop(other);
    let out: Vec<_> = rx.iter().collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].output.clone(), out[0].reason),
        (vec![1, 2], Trigger::Shutdown)
    );
}

#[test]
fn manual_ticks_seal_only_when_ticked() {
    let clock = ManualClock::new();
    let b = builder(&clock).grace(ms(1)).manual_ticks().build().unwrap();
    b.add(1, 1).unwrap();
    clock.set(ms(5));
    assert!(drain(&b).is_empty());
    b.tick();
    assert_eq!(drain(&b).len(), 1);
}

/// 8 threads × 100k items over 10k groups on the real clock: every item in
/// exactly one batch, counts exact.
#[test]
fn threads_lose_nothing_and_duplicate_nothing() {
    let (threads, per_thread, groups) = if cfg!(miri) {
        (2, 200, 16)
    } else {
        (8, 100_000, 10_000)
    };
    let b = GroupBatcher::<u32, u32, Vec<u32>>::builder()
        .grace(ms(1))
        .max_delay(ms(5))
        .max_items(100)
        .flush_threads(2)
        .aggregate(|_, items: &mut Vec<u32>| Ok::<_, Infallible>(Some(std::mem::take(items))))
        .build()
        .unwrap();
    let rx = b.receiver();
    let consumer = std::thread::spawn(move || {
        let mut seen = vec![false; threads * per_thread];
        let (mut batches, mut items) = (0u64, 0usize);
        for batch in rx.iter() {
            batches += 1;
            assert_eq!(batch.items, batch.output.len());
            assert!(batch.output.len() <= 100);
            for item in batch.output {
                assert!(
                    !std::mem::replace(&mut seen[item as usize], true),
                    "item {item} twice"
                );
                items += 1;
            }
        }
        (batches, items, seen.iter().all(|&s| s))
    });
    let producers: Vec<_> = (0..threads)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut x = t as u64 + 1;
                for i in 0..per_thread {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let item = (t * per_thread + i) as u32;
                    b.add((x % groups as u64) as u32, item).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let report = b.shutdown(Duration::MAX);
    assert!(report.undelivered.is_empty() && report.failed.is_empty());
    let (batches, items, all) = consumer.join().unwrap();
    assert_eq!(items, threads * per_thread);
    assert!(all);
    let stats = b.stats();
    assert_eq!(stats.added, (threads * per_thread) as u64);
    assert_eq!(stats.sealed.total(), batches);
    assert_eq!((stats.emitted, report.delivered), (batches, batches));
}

mod spilling {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::codec::{Codec, CodecError, LittleEndian};
    use crate::spill::{Fsync, SpillConfig};

    /// `Vec<u32>` as its little-endian words.
    struct Words;

    impl Codec<Vec<u32>> for Words {
        fn encode(&self, value: &Vec<u32>, out: &mut Vec<u8>) -> Result<(), CodecError> {
            value
                .iter()
                .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
            Ok(())
        }

        fn decode(&self, bytes: &[u8]) -> Result<Vec<u32>, CodecError> {
            let words = bytes.chunks_exact(4);
            if !words.remainder().is_empty() {
                return Err(CodecError::new("not a whole number of words"));
            }
            Ok(words
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect())
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sheaf-batch-spill-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn config(dir: &Path, segment: u64, max: u64, when_full: Overflow) -> SpillConfig {
        SpillConfig::builder(dir)
            .segment_bytes(segment)
            .max_bytes(max)
            .when_full(when_full)
            .fsync(Fsync::Never)
            .build()
            .unwrap()
    }

    /// One shard (so delivery order is seal order), groups of 2 items,
    /// one batch in memory, the rest to `config`.
    fn spilling(clock: &ManualClock, config: SpillConfig) -> Batcher {
        builder(clock)
            .max_items(2)
            .shards(1)
            .output_capacity(1)
            .on_full(Overflow::Spill(config))
            .spill_codecs(LittleEndian, Words)
            .build()
            .unwrap()
    }

    fn summary(out: &[Batch<u32, Vec<u32>>]) -> Vec<(u64, u32, Vec<u32>, Trigger)> {
        out.iter()
            .map(|b| (b.id.0, b.group, b.output.clone(), b.reason))
            .collect()
    }

    #[test]
    fn every_batch_comes_once_in_seal_order_across_memory_and_disk() {
        let dir = temp_dir("order");
        let clock = ManualClock::new();
        let b = spilling(&clock, config(&dir, 256, 1 << 20, Overflow::Block));
        const GROUPS: u32 = 50;
        for k in 0..GROUPS {
            assert_eq!(b.add(k, k * 10), Ok(Added::Opened));
            assert_eq!(b.add(k, k * 10 + 1), Ok(Added::Sealed));
        }
        b.settle(); // nobody reads: 1 batch in memory, 49 on disk
        let s = b.stats();
        assert_eq!(
            (s.emitted, s.queued, s.spilled, s.on_disk, s.unspilled),
            (50, 1, 49, 49, 0)
        );
        let out = drain(&b);
        let want: Vec<_> = (0..GROUPS)
            .map(|k| {
                (
                    u64::from(k) + 1,
                    k,
                    vec![k * 10, k * 10 + 1],
                    Trigger::MaxItems,
                )
            })
            .collect();
        assert_eq!(summary(&out), want);
        // Read back from disk, `opened_at` is rebuilt from the wall time;
        // on the manual clock wall and monotonic time agree, so it is exact.
        assert!(out
            .iter()
            .all(|b| b.items == 2 && b.opened_at == clock.origin() && b.late == ms(0)));
        let s = b.stats();
        assert_eq!(
            (s.unspilled, s.on_disk, s.queued, s.spill_lost),
            (49, 0, 0, 0)
        );
        let report = b.shutdown(ms(100));
        assert_eq!((report.delivered, report.undelivered.len()), (50, 0));
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn batches_left_on_disk_come_back_first_in_the_next_batcher() {
        let dir = temp_dir("restart");
        let conf = || config(&dir, 256, 1 << 20, Overflow::Block);
        {
            let clock = ManualClock::new();
            let b = spilling(&clock, conf());
            for k in 1..=6 {
                b.add(k, k * 10).unwrap();
                b.add(k, k * 10 + 1).unwrap();
            }
            b.add(7, 70).unwrap(); // still open: shutdown seals it to disk
            b.settle();
            let rx = b.receiver();
            assert_eq!(rx.try_recv().unwrap().id, BatchId(1)); // from memory
            assert_eq!(rx.try_recv().unwrap().id, BatchId(2)); // from disk
            let report = b.shutdown(ms(100));
            assert_eq!((report.delivered, report.undelivered.len()), (7, 0));
            let s = b.stats();
            assert_eq!((s.queued, s.on_disk, s.sealed.shutdown), (0, 5, 1));
        } // the batcher and its receivers are gone; the log stays
        let clock = ManualClock::new();
        let b = spilling(&clock, conf());
        let rx = b.receiver();
        assert_eq!(rx.spill_recovery().unwrap().records_recovered, 5);
        assert_eq!(b.stats().on_disk, 5);
        b.add(100, 1).unwrap();
        b.add(100, 2).unwrap(); // sealed: queued behind what is on disk
        b.settle();
        let out = drain(&b);
        let mut want: Vec<_> = (3..=6u32)
            .map(|k| (u64::from(k), k, vec![k * 10, k * 10 + 1], Trigger::MaxItems))
            .collect();
        want.push((7, 7, vec![70], Trigger::Shutdown));
        want.push((1, 100, vec![1, 2], Trigger::MaxItems));
        assert_eq!(summary(&out), want);
        b.shutdown(ms(100));
        drop((b, rx));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_follows_its_policy_and_is_counted() {
        // A batch of 2 words is a 58-byte record: one fits in 128 bytes
        // with the segment header, two do not.
        let dir = temp_dir("reject");
        let clock = ManualClock::new();
        let b = spilling(&clock, config(&dir, 128, 128, Overflow::Reject));
        for k in 0..5 {
            b.add(k, k).unwrap();
            b.add(k, k).unwrap();
        }
        b.settle();
        let s = b.stats();
        assert_eq!((s.emitted, s.queued, s.on_disk, s.rejected), (2, 1, 1, 3));
        let report = b.shutdown(ms(100));
        assert_eq!((report.delivered, report.dropped), (2, 3));
        let ids: Vec<u64> = b.receiver().iter().map(|b| b.id.0).collect();
        assert_eq!(ids, [1, 2]);
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_the_log_cannot_take_is_counted_and_handed_back() {
        // 64-byte segments hold no 58-byte record after their header.
        let dir = temp_dir("toolarge");
        let clock = ManualClock::new();
        let b = spilling(&clock, config(&dir, 64, 1 << 20, Overflow::Block));
        for k in 0..2 {
            b.add(k, k).unwrap();
            b.add(k, k).unwrap();
        }
        b.settle();
        assert_eq!((b.stats().emitted, b.stats().spill_failed), (1, 1));
        let report = b.shutdown(ms(100));
        assert_eq!(b.stats().spill_failed, 2); // tried once more
        assert_eq!(
            summary(&report.undelivered),
            [(2, 1, vec![1, 1], Trigger::MaxItems)]
        );
        assert_eq!(b.receiver().iter().count(), 1);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_blocked_driver_at_the_disk_bound_hands_its_batch_to_shutdown() {
        let dir = temp_dir("block");
        let clock = ManualClock::new();
        let b = spilling(&clock, config(&dir, 128, 128, Overflow::Block));
        for k in 0..3 {
            b.add(k, k).unwrap();
            b.add(k, k).unwrap();
        }
        // The third batch finds the disk full: the driver waits in slices
        // until shutdown takes the batch over.
        let report = b.shutdown(ms(10));
        assert!(report.timed_out);
        assert_eq!(
            summary(&report.undelivered),
            [(3, 2, vec![2, 2], Trigger::MaxItems)]
        );
        let s = b.stats();
        assert_eq!((s.emitted, s.timed_out, s.rejected), (2, 0, 0));
        assert_eq!(b.receiver().iter().count(), 2);
        drop(b);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn spill_settings_are_checked() {
        let clock = ManualClock::new();
        let dir = temp_dir("never-opened");
        let spill = Overflow::Spill(config(&dir, 256, 1 << 20, Overflow::Block));
        let err = builder(&clock)
            .max_items(2)
            .on_full(spill.clone())
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "on_full");
        assert!(err.to_string().contains(".spill_codecs("), "{err}");
        assert!(!dir.exists(), "nothing touches the disk on a bad config");
        let err = builder(&clock)
            .max_items(2)
            .spill_codecs(LittleEndian, Words)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "spill_codecs");
        // A directory that cannot be opened: a file stands where it would be.
        std::fs::write(&dir, b"not a directory").unwrap();
        let err = builder(&clock)
            .max_items(2)
            .on_full(spill)
            .spill_codecs(LittleEndian, Words)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "on_full");
        assert!(err.to_string().contains("spill log"), "{err}");
        std::fs::remove_file(&dir).unwrap();
    }
}
